"""claimcheck demo: a 10 MiB payload through two activities, with a small history.

Starts a Temporal dev server, the claimcheck proxy on a filesystem store in a temporary
directory, and a worker connected through the proxy; runs one workflow; shows what the server
stored and where the payloads went; stops everything. Needs CLAIMCHECK_BIN (or the default
build path) and the venv from tests/env/python-venv.sh.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from claims import checked_run_references, describe
from harness import MiB, DevServer, Proxy, connect, worker
from stores import FileStore
from workflows import TwoActivities, blob, digest

SIZE = 10 * MiB
SEED = 2024


def human(size: int) -> str:
    return f"{size / MiB:.1f} MiB" if size >= MiB else f"{size / 1024:.1f} KiB"


async def run(work: Path) -> None:
    server = DevServer.start(work)
    try:
        store = FileStore(work / "store")
        proxy = Proxy.start(server.address, store, work / "proxy.log")
        try:
            print(f"Temporal dev server   {server.address} (in memory)")
            print(f"claimcheck proxy      {proxy.address} -> {store.root}")
            await demo(server, proxy)
        finally:
            proxy.process.stop()
    finally:
        server.process.stop()


async def demo(server: DevServer, proxy: Proxy) -> None:
    client = await connect(proxy.address)
    workflow_id = "claimcheck-demo"
    async with worker(client, workflow_id):
        result = await client.execute_workflow(
            TwoActivities.run, args=[SEED, SIZE], id=workflow_id, task_queue=workflow_id
        )
    assert result == digest(blob(SEED, SIZE)[::-1]), "the workflow saw different bytes"
    print(f"workflow              {human(SIZE)} made by one activity, reversed by another: "
          f"result verified (sha256 {result[:12]}...)")

    # Read straight from the server, not through the proxy: what Temporal actually keeps.
    direct = await connect(server.address)
    refs = await checked_run_references(direct, workflow_id, None, proxy.store)
    info = (await describe(direct, workflow_id)).workflow_execution_info
    print(f"history on server     {info.history_length} events, {human(info.history_size_bytes)}")
    objects = {ref.key for ref in refs}
    print(f"offloaded             {info.external_payload_count} references to "
          f"{human(info.external_payload_size_bytes)} (the server's count), "
          f"{len(objects)} objects in the store:")
    for ref in refs:
        print(f"  {ref.event:<24} {human(ref.size_bytes):>9}  {proxy.store.object_name(ref.key)}")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="claimcheck-demo-") as work:
        asyncio.run(run(Path(work)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
