"""The codec server under load: 200 concurrent /decode calls of 1 MiB each are all answered
with the right bytes, and the proxy's memory stays within its budget (limits.inflightBytes
plus the verified cache), because resolutions beyond the budget wait for it. The budget is
held until an answer is sent, so callers that are slow to read are what would make memory
grow without it: the second round reads each answer late."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import hashlib
import json
import os
import socket
import time
from pathlib import Path

from google.protobuf.json_format import MessageToDict

from harness import Codec, connect, unique
from workflows import blob

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


SIDE_BY_SIDE = 50


async def test_the_codec_and_the_proxys_rehydration_give_the_same_originals(proxy_factory, store, direct_client):
    """The same 50 offloaded 1 MiB inputs, put back by the proxy (each run's history fetched
    through it) and by the codec (/decode of the references as stored), side by side."""
    codec = Codec()
    proxy = proxy_factory(store, codec=codec)
    client = await connect(proxy.address)
    ids = [unique("side-by-side") for _ in range(SIDE_BY_SIDE)]
    inputs = [blob(i, MIB) for i in range(SIDE_BY_SIDE)]
    # No worker polls the queue: the runs only hold their offloaded inputs.
    await asyncio.gather(*(client.start_workflow("Nobody", data, id=wid, task_queue="nobody")
                           for wid, data in zip(ids, inputs)))

    started = time.monotonic()
    rehydrated = await asyncio.gather(*(first_input(client, wid) for wid in ids))
    proxy_seconds = time.monotonic() - started
    references = [MessageToDict(await first_input(direct_client, wid)) for wid in ids]
    assert all("externalPayloads" in r for r in references), "every input is offloaded"
    started = time.monotonic()
    decoded = decode_all(codec, references)
    codec_seconds = time.monotonic() - started

    for data, by_proxy, by_codec in zip(inputs, rehydrated, decoded, strict=True):
        assert base64.b64decode(by_codec["data"]) == by_proxy.data, "the codec and the proxy disagree"
        assert by_proxy.data == data, "not the input"
    mib = SIDE_BY_SIDE * MIB / MIB
    print(f"\n{SIDE_BY_SIDE} inputs of 1 MiB put back: proxy (history through it) {mib / proxy_seconds:.0f} MiB/s, "
          f"codec (/decode) {mib / codec_seconds:.0f} MiB/s")


async def first_input(client, workflow_id: str):
    """The input payload of a run's first event, as `client` sees it."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return history.events[0].workflow_execution_started_event_attributes.input.payloads[0]
