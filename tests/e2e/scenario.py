"""Runs the 3 MiB activity-result scenario through a proxy that something else started:
the controller's rendered configuration, or the webhook's sidecar materialised locally.

    python tests/e2e/scenario.py --proxy 127.0.0.1:PORT --server 127.0.0.1:PORT [--size BYTES] [--expect inline]

Exits 0 only when the workflow's result carries the right SHA-256 and the history, read
straight from the server, holds a reference instead of the payload (or, with
`--expect inline`, the payload itself and no reference: the proxy's threshold is above it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import timedelta

from claims import is_reference, iter_payloads
from harness import MiB, THRESHOLD, connect, unique, worker
from workflows import ActivityRoundTrip, blob, digest

SEED = 3


async def run(proxy: str, server: str, size: int, expect: str) -> str | None:
    """None when the scenario passed, else what went wrong."""
    through_proxy, direct = await connect(proxy), await connect(server)
    workflow_id = unique("scenario")
    async with worker(through_proxy, workflow_id):
        result = await through_proxy.execute_workflow(
            ActivityRoundTrip.run, args=[SEED, size], id=workflow_id, task_queue=workflow_id,
            execution_timeout=timedelta(seconds=60),
        )
    if result != digest(blob(SEED, size)[::-1]):
        return f"wrong result {result}"
    history = await direct.get_workflow_handle(workflow_id).fetch_history()
    payloads = [p for event in history.events for _, p in iter_payloads(event)]
    if expect == "inline":
        if any(is_reference(p) for p in payloads):
            return "a payload was offloaded below the threshold"
        if not any(p.ByteSize() >= size for p in payloads):
            return "the payload is not inline in the history"
        return None
    if any(p.ByteSize() >= THRESHOLD for p in payloads):
        return "a large payload is inline in the history"
    if not any(is_reference(p) for p in payloads):
        return "no reference in the history"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxy", required=True)
    parser.add_argument("--server", required=True)
    parser.add_argument("--size", type=int, default=3 * MiB)
    parser.add_argument("--expect", choices=["offloaded", "inline"], default="offloaded")
    args = parser.parse_args()
    failure = asyncio.run(run(args.proxy, args.server, args.size, args.expect))
    print(failure or "passed")
    return 1 if failure else 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The SDK's native threads can race the interpreter's finalization and abort it
    # ("PyGILState_Release ... finalizing") after the verdict is printed: leave without it.
    os._exit(code)
