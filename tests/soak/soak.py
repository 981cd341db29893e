"""Soak with faults: several workers through one proxy on MinIO run a mix of workflows while
MinIO, the proxy and the Temporal server are killed and restarted, the store turns slow and
the threshold changes under the running proxy. It passes when every workflow got back exactly
the bytes it sent, the proxy stayed within its memory budget, held no more sockets or threads
after the load than before, and failed calls only with the statuses the README documents.

    python tests/soak/soak.py [--duration SECONDS] [--seed N] [--report FILE] [--workdir DIR]

It prints its seed first (rerun with --seed or $SOAK_SEED to replay the same cases and fault
plan) and its report as a table last; --report (or $SOAK_REPORT) also writes it as JSON. Exit
status 1 when it found problems. It stops by itself: whatever hangs, it gives up `duration`
plus a case's timeout plus a few minutes after it began. `make soak` runs 9 minutes of load;
tests/e2e/test_soak.py less than one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1] / "e2e")]

import harness  # noqa: E402
from faults import THRESHOLDS, Injector, schedule  # noqa: E402
from load import Load  # noqa: E402
from observe import ProxyWatch, Resources  # noqa: E402
from report import Memory, Report  # noqa: E402
from retries import retries  # noqa: E402
from stack import Limits, Stack  # noqa: E402
from test_codec_load import OVERHEAD  # noqa: E402
from worker import PATIENT, connect_through_proxy  # noqa: E402


@dataclass
class Options:
    duration: float = 540  # seconds of load: with the rest, `make soak` ends within 15 minutes
    seed: int | None = None
    workers: int = 3
    concurrency: int = 6  # workflows in flight
    case_timeout: float = 180  # seconds a workflow may take, faults and all
    settle: float = 30  # seconds the proxy has to get back to its baseline after the load
    workdir: Path | None = None

    @property
    def deadline(self) -> float:
        """Seconds after which the soak gives up: the load, its last cases, and the minutes
        to start the servers, let the proxy settle and read every workflow's history."""
        return self.duration + self.case_timeout + 180


async def wait_for_workers(stack: Stack, timeout: float = 60) -> None:
    """Until every worker polls (its log says so)."""
    deadline = time.monotonic() + timeout
    while not all("polling" in p.log_text() for p in stack.workers.processes):
        for process in stack.workers.processes:
            process.check_running()
        if time.monotonic() > deadline:
            raise TimeoutError("the soak's workers did not start polling")
        await asyncio.sleep(0.2)


async def guard_workers(stack: Stack, deaths: list[str]) -> None:
    """A worker that dies is a finding; it is started again so the soak goes on."""
    while True:
        await asyncio.sleep(2)
        for death in stack.workers.revive():
            print(f"[soak] {death}", flush=True)
            deaths.append(death)


async def soak(options: Options) -> Report:
    return await asyncio.wait_for(_soak(options), options.deadline)


async def _soak(options: Options) -> Report:
    seed = options.seed if options.seed is not None else random.randrange(1 << 32)
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="claimcheck-soak-"))
    print(f"[soak] seed {seed} (rerun with --seed {seed}); logs in {workdir}", flush=True)
    rng = random.Random(seed)
    limits = Limits()
    stack = await Stack.up(workdir, limits, THRESHOLDS[0], options.workers)
    background: list[asyncio.Task] = []
    try:
        client = await connect_through_proxy(stack.proxy.address, PATIENT)
        direct = await harness.connect(stack.temporal.address, retry_config=PATIENT)
        await wait_for_workers(stack)
        await asyncio.sleep(2)  # the workers' first polls settle
        watch = ProxyWatch(stack.proxy)
        baseline = Resources.of(stack.proxy)
        deaths: list[str] = []
        background = [asyncio.create_task(watch.run()), asyncio.create_task(guard_workers(stack, deaths))]

        began = time.time()
        injector = Injector(stack, watch, rng)
        load = Load(client, seed, harness.unique("soak"), options.concurrency, options.case_timeout)
        await asyncio.gather(injector.run(schedule(rng, options.duration), began), load.run(began + options.duration))
        load_seconds = time.time() - began
        print(f"[soak] load over after {load_seconds:.0f} s; {len(load.outcomes)} workflows", flush=True)

        end = await watch.settled(baseline, options.settle)
        watch.sample()
        found = Counter()
        for outcome in load.outcomes:
            if outcome.first_run_id:
                found += await retries(direct, outcome.case.workflow_id, outcome.first_run_id)
        return Report(
            seed=seed,
            load_seconds=load_seconds,
            outcomes=load.outcomes,
            faults=injector.faults,
            retries=found,
            counters=watch.totals(),
            memory=Memory(watch.peak_rss, limits.inflight_bytes, limits.cache_bytes, OVERHEAD),
            baseline=baseline,
            end=end,
            proxy_logs=stack.proxy.logs,
            worker_deaths=deaths,
            fault_problems=injector.problems,
            logs={name: str(path) for name, path in stack.logs.items()},
        )
    finally:
        for task in background:
            task.cancel()
        await stack.down()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=Options.duration, help="seconds of load (default %(default)s)")
    parser.add_argument("--seed", type=int, default=os.environ.get("SOAK_SEED"),
                        help="replays a run: its cases and its fault plan (default $SOAK_SEED, else random)")
    parser.add_argument("--report", type=Path, default=os.environ.get("SOAK_REPORT"),
                        help="writes the report as JSON here too (default $SOAK_REPORT)")
    parser.add_argument("--workdir", type=Path, help="logs and data (default: a new temporary directory)")
    args = parser.parse_args()
    report = asyncio.run(soak(Options(duration=args.duration, seed=args.seed, workdir=args.workdir)))
    print(report.table())
    if args.report:
        report.write(args.report)
        print(f"[soak] report written to {args.report}")
    return 0 if report.as_dict()["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
