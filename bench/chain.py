"""`make bench`: a workflow passing 10 MiB through 10 activities (each returns its input
reversed), run three ways on the same store, alternating, in one run:

- sdk:        the Python SDK's own External Storage, in process (its S3 driver on MinIO; on the
              filesystem, tests/e2e/sdk_drivers.py's driver, since the SDK ships none);
- proxy:      a plain worker and client through a claimcheck proxy, with the SDK's default
              gRPC gzip: the worker compresses every large request it sends the proxy;
- proxy/none: the same with `grpc_compression=GrpcCompression.NONE`, as the README tells
              workers behind the loopback sidecar to connect.

Each proxied side has a proxy and a store prefix of its own, configured as the operator
configures a sidecar (refreshAfterSeconds from the TTL's margin), and every run passes bytes
no other run passed. The figure is the median of the pairs' ratios proxied / sdk (target
<= 1.0), with each side's largest history (target <= 64 KiB). Needs CLAIMCHECK_BIN and the
test venv; CHAIN_PAIRS sets the number of pairs, CHAIN_WORK keeps the logs in a directory.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))

from temporalio.client import Client  # noqa: E402
from temporalio.service import GrpcCompression  # noqa: E402

from harness import MiB, DevServer, Proxy, connect, unique, worker  # noqa: E402
from sdk_drivers import sdk_data_converter  # noqa: E402
from stores import Cluster, FileStore, Store  # noqa: E402
from workflows import Chain, blob  # noqa: E402

SIZE = 10 * MiB
HOPS = 10
PAIRS = int(os.environ.get("CHAIN_PAIRS", "7"))
HISTORY_LIMIT = 64 * 1024
REFRESH_AFTER = "3600"  # what the operator sets for a TTL with an hour or more of margin
SEEDS = itertools.count(1)


@dataclass
class Side:
    name: str
    client: Client  # the workflow's client, and its worker's
    direct: Client  # straight to the server: the history as stored
    seconds: list[float] = field(default_factory=list)
    history_bytes: int = 0

    async def run(self) -> None:
        data = blob(next(SEEDS), SIZE)
        workflow_id = unique(f"chain-{self.name}")
        started = time.perf_counter()
        result = await self.client.execute_workflow(
            Chain.run, args=[data, HOPS], id=workflow_id, task_queue=self.client.identity
        )
        self.seconds.append(time.perf_counter() - started)
        assert result == (data if HOPS % 2 == 0 else data[::-1]), f"{self.name}: wrong result"
        described = await self.direct.get_workflow_handle(workflow_id).describe()
        size = described.raw_description.workflow_execution_info.history_size_bytes
        assert size <= HISTORY_LIMIT, f"{self.name}: history of {size} bytes"
        self.history_bytes = max(self.history_bytes, size)


async def start_side(stack: AsyncExitStack, name: str, client: Client, direct: Client) -> Side:
    await stack.enter_async_context(worker(client, client.identity))  # its own task queue
    return Side(name, client, direct)


async def compare(label: str, server: DevServer, store: Callable[[str], Store], work: Path) -> list[str]:
    direct = await connect(server.address)
    async with AsyncExitStack() as stack:
        converter = await stack.enter_async_context(sdk_data_converter(store("sdk")))
        sides = [await start_side(stack, "sdk", await connect(
            server.address, data_converter=converter, identity=unique("sdk")), direct)]
        for name, compression in (("proxy", GrpcCompression.GZIP), ("proxy/none", GrpcCompression.NONE)):
            proxy = Proxy.start(server.address, store(name), work / f"{label}-{name.replace('/', '-')}.log",
                                args=("--refresh-after-seconds", REFRESH_AFTER))
            stack.callback(proxy.process.stop)
            client = await connect(proxy.address, identity=unique(name.replace("/", "-")),
                                   grpc_compression=compression)
            sides.append(await start_side(stack, name, client, direct))
        for one in sides:  # connections, worker caches, the stores' first writes
            await one.run()
            one.seconds.clear()
        for pair in range(PAIRS):
            for one in sides if pair % 2 else sides[::-1]:
                await one.run()
    sdk, *proxied = sides
    lines = [f"  {label:<11} sdk        {statistics.median(sdk.seconds):5.2f} s   history {sdk.history_bytes / 1024:4.1f} KiB"]
    for side in proxied:
        ratios = sorted(p / s for s, p in zip(sdk.seconds, side.seconds))
        lines.append(
            f"  {label:<11} {side.name:<10} {statistics.median(side.seconds):5.2f} s   history {side.history_bytes / 1024:4.1f} KiB"
            f"   ratio {statistics.median(ratios):.2f} [{ratios[0]:.2f}-{ratios[-1]:.2f}] (target <= 1.0)"
        )
    return lines


async def main(work: Path) -> None:
    cluster = Cluster.up(work / "cluster", ("s3",))
    server = DevServer.start(work)
    try:
        print(f"chain: {SIZE // MiB} MiB through {HOPS} activities; median of {PAIRS} alternating pairs, "
              f"ratio = proxied / sdk in-process; history <= 64 KiB")
        s3 = await compare("s3 (MinIO)", server, lambda name: cluster.store("s3", unique(name.replace("/", "-")) + "/"), work)
        files = await compare("filesystem", server, lambda name: FileStore(work / unique(name.replace("/", "-"))), work)
        print("\n".join(s3 + files))
    finally:
        server.process.stop()
        cluster.down()


if __name__ == "__main__":
    if keep := os.environ.get("CHAIN_WORK"):
        asyncio.run(main(Path(keep)))
    else:
        with tempfile.TemporaryDirectory(prefix="claimcheck-chain-") as tmp:
            asyncio.run(main(Path(tmp)))
