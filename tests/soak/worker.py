"""A soak worker, run as a process of its own: it polls the soak's task queue through the proxy
until SIGTERM, and rides out the faults the soak injects on the SDK's own retries.

    python worker.py ADDRESS TASK_QUEUE
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1] / "e2e")]

from temporalio.client import Client  # noqa: E402
from temporalio.service import GrpcCompression, RetryConfig  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

import harness  # noqa: E402
import soak_workflows  # noqa: E402

# The driver's calls retry for longer than the longest outage the soak injects, so that a
# workflow it starts, signals or waits for never fails for want of patience. The workers keep
# the SDK's defaults, as users run them: a completion they give up on is an activity attempt
# that times out and is retried, which the soak counts.
PATIENT = RetryConfig(max_interval_millis=2000, max_elapsed_time_millis=120_000, max_retries=1000)


async def connect_through_proxy(address: str, retry_config: RetryConfig | None = None) -> Client:
    """A client of the proxy as the README says to make one: no gzip on the loopback hop."""
    return await harness.connect(
        address, grpc_compression=GrpcCompression.NONE, retry_config=retry_config
    )


async def main(address: str, task_queue: str) -> None:
    client = await connect_through_proxy(address)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    # disable_payload_error_limit: the proxy, not the SDK, decides what is too large (see
    # harness.worker).
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=soak_workflows.WORKFLOWS,
        activities=soak_workflows.ACTIVITIES,
        disable_payload_error_limit=True,
    ):
        print("polling", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
