"""The codec server under load: 200 concurrent /decode calls of 1 MiB each are all answered
with the right bytes, and the proxy's memory stays within its budget (limits.inflightBytes
plus the verified cache), because resolutions beyond the budget wait for it. The budget is
held until an answer is sent, so callers that are slow to read are what would make memory
grow without it: the second round reads each answer late."""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import json
import os
import socket
import time
from pathlib import Path

from harness import Codec

MIB = 1 << 20
CALLS = 200
INFLIGHT = 64 * MIB
CACHE = 16 * MIB
# Threads, connection buffers and the allocator's own slack, measured at about 20 MiB.
OVERHEAD = 48 * MIB


SLOW_READER = 0.5  # seconds between sending a call and reading its answer
# A small receive window, so that an unread answer stays in the proxy, not in the kernel.
RECEIVE_BUFFER = 64 * 1024


def post(codec: Codec, path: str, payloads: list[dict], read_after: float = 0.0) -> list[dict]:
    body = json.dumps({"payloads": payloads}).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"X-Namespace: default\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.settimeout(120)
        sock.connect(("127.0.0.1", codec.port))
        sock.sendall(head.encode() + body)
        time.sleep(read_after)
        with sock.makefile("rb") as answer:
            status, content = read_response(answer)
    assert status == 200, f"{path}: {status} {content[:200]!r}"
    return json.loads(content)["payloads"]


def read_response(answer) -> tuple[int, bytes]:
    status = int(answer.readline().split()[1])
    headers = {}
    while (line := answer.readline().strip()):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") != "chunked":
        return status, answer.read()
    chunks = []
    while (size := int(answer.readline().strip(), 16)):
        chunks.append(answer.read(size))
        answer.readline()
    return status, b"".join(chunks)


def payload(data: bytes) -> dict:
    return {"metadata": {"encoding": base64.b64encode(b"binary/plain").decode()},
            "data": base64.b64encode(data).decode()}


def rss(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


def test_200_concurrent_decodes_of_1_mib_stay_within_the_memory_budget(proxy_factory, store):
    limits = ("--inflight-bytes", str(INFLIGHT), "--max-message-bytes", str(8 * MIB),
              "--cache-max-bytes", str(CACHE))
    writer = Codec()
    proxy_factory(store, codec=writer, args=limits)
    originals = [os.urandom(MIB) for _ in range(CALLS)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        references = list(pool.map(lambda data: post(writer, "/encode", [payload(data)])[0], originals))
    assert all("externalPayloads" in r for r in references), "every 1 MiB payload is offloaded"

    # A proxy of its own, whose memory no earlier call has touched.
    codec = Codec()
    pid = proxy_factory(store, codec=codec, args=limits).process.popen.pid
    baseline = rss(pid, "VmRSS")
    check(originals, decode_all(codec, references, read_after=SLOW_READER))
    growth = rss(pid, "VmHWM") - baseline
    print(f"\n{CALLS} concurrent /decode of 1 MiB, read {SLOW_READER} s late: RSS {baseline / MIB:.0f} MiB, "
          f"peak +{growth / MIB:.0f} MiB (budget {INFLIGHT / MIB:.0f} MiB in flight + {CACHE / MIB:.0f} MiB cache)")
    assert growth <= INFLIGHT + CACHE + OVERHEAD, \
        f"the proxy grew by {growth / MIB:.0f} MiB serving {CALLS} decodes, over its budget"

    started = time.monotonic()
    decoded = decode_all(codec, references)
    elapsed = time.monotonic() - started
    check(originals, decoded)
    print(f"{CALLS} concurrent /decode of 1 MiB, read at once: {elapsed:.2f} s, {CALLS / elapsed:.0f} calls/s "
          f"({CALLS * MIB / elapsed / MIB:.0f} MiB/s of originals)")


def decode_all(codec: Codec, references: list[dict], read_after: float = 0.0) -> list[dict]:
    with concurrent.futures.ThreadPoolExecutor(len(references)) as pool:
        return list(pool.map(lambda r: post(codec, "/decode", [r], read_after)[0], references))


def check(originals: list[bytes], decoded: list[dict]) -> None:
    for original, answer in zip(originals, decoded, strict=True):
        assert hashlib.sha256(base64.b64decode(answer["data"])).digest() == \
            hashlib.sha256(original).digest(), "a decoded payload differs from its original"
