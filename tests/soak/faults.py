"""The faults the soak injects, at times drawn from its seed, one after another.

Each fault records the window during which something was down, slow or changing; the report
compares the workflows that overlapped a window with those that did not, and an UNAVAILABLE
from the proxy is expected only within one.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Awaitable
from dataclasses import dataclass

from observe import ProxyWatch
from stack import Stack

MINIO_KILL = "minio-kill"
PROXY_KILL = "proxy-kill"
TEMPORAL_RESTART = "temporal-restart"
SLOW_STORE = "slow-store"
THRESHOLD_RELOAD = "threshold-reload"
KINDS = (MINIO_KILL, PROXY_KILL, TEMPORAL_RESTART, SLOW_STORE, THRESHOLD_RELOAD)

# The proxy's thresholds, one replacing the other at each reload: the soak's payloads "just
# over the threshold" sit around both, so a reload moves some of them across it.
THRESHOLDS = (256 * 1024, 128 * 1024)
RELOAD_WAIT = 15  # seconds: the proxy re-reads its file every 2 s (src/run.rs RELOAD_EVERY)


@dataclass
class Fault:
    kind: str
    start: float  # seconds since the epoch
    end: float
    detail: str

    def overlaps(self, start: float, end: float, grace: float = 0.0) -> bool:
        return start < self.end + grace and end > self.start


def schedule(rng: random.Random, duration: float) -> list[tuple[float, str]]:
    """When (seconds into the load) and what: every kind once, in a random order, then random
    kinds, about one every 45 s, each at a random point of its slot."""
    count = max(len(KINDS), int(duration // 45))
    kinds = rng.sample(KINDS, len(KINDS)) + [rng.choice(KINDS) for _ in range(count - len(KINDS))]
    slot = duration / (count + 1)
    return [(slot * (i + 1) + rng.uniform(-slot / 4, slot / 4), kind) for i, kind in enumerate(kinds)]


class Injector:
    def __init__(self, stack: Stack, watch: ProxyWatch, rng: random.Random) -> None:
        self.stack = stack
        self.watch = watch
        self.rng = rng
        self.faults: list[Fault] = []
        self.problems: list[str] = []  # faults that did not take effect as they should

    async def run(self, plan: list[tuple[float, str]], began: float) -> None:
        """Injects each fault of `plan` at its time, or when the one before it is over."""
        for at, kind in plan:
            await asyncio.sleep(max(0.0, began + at - time.time()))
            start = time.time()
            detail = await self._inject(kind)
            self.faults.append(Fault(kind, start, time.time(), detail))
            print(f"[soak] +{start - began:5.1f}s {kind}: {detail} ({time.time() - start:.1f} s)", flush=True)

    def _inject(self, kind: str) -> Awaitable[str]:
        """Injects a fault, over when the awaitable is; it returns what was done."""
        return {
            MINIO_KILL: self.minio_kill,
            PROXY_KILL: self.proxy_kill,
            TEMPORAL_RESTART: self.temporal_restart,
            SLOW_STORE: self.slow_store,
            THRESHOLD_RELOAD: self.threshold_reload,
        }[kind]()

    async def minio_kill(self) -> str:
        down = self.rng.uniform(2, 6)
        os.kill(int(self.stack.cluster.env["MINIO_PID"]), signal.SIGKILL)
        await asyncio.sleep(down)
        await asyncio.to_thread(self.stack.cluster.restart, "minio")
        return f"SIGKILL, down {down:.1f} s"

    async def proxy_kill(self) -> str:
        down = self.rng.uniform(0.2, 2)
        self.watch.before_kill()
        self.stack.proxy.kill()
        await asyncio.sleep(down)
        await asyncio.to_thread(self.stack.proxy.start)
        return f"SIGKILL, down {down:.1f} s, back on {self.stack.proxy.address}"

    async def temporal_restart(self) -> str:
        down = self.rng.uniform(0.5, 3)
        temporal = self.stack.temporal
        await asyncio.to_thread(temporal.stop)
        await asyncio.sleep(down)
        await asyncio.to_thread(temporal.start)
        return f"stopped, down {down:.1f} s, back on {temporal.address} with its database"

    async def slow_store(self) -> str:
        delay, length = self.rng.uniform(0.2, 0.8), self.rng.uniform(5, 15)
        self.stack.link.delay = delay
        try:
            await asyncio.sleep(length)
        finally:
            self.stack.link.delay = 0.0
        return f"{delay * 1000:.0f} ms per chunk each way for {length:.1f} s"

    async def threshold_reload(self) -> str:
        proxy = self.stack.proxy
        threshold = THRESHOLDS[(THRESHOLDS.index(proxy.threshold) + 1) % len(THRESHOLDS)]
        reloads = self._reloads()
        proxy.write_config(threshold)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RELOAD_WAIT
        while self._reloads() == reloads:
            if loop.time() > deadline:
                self.problems.append(f"the proxy did not reload a threshold of {threshold} within {RELOAD_WAIT} s")
                break
            await asyncio.sleep(0.2)
        return f"thresholdBytes {threshold} in {proxy.config_file.name}"

    def _reloads(self) -> float:
        self.watch.sample()
        return self.watch.counters["claimcheck_config_reloads_total"]
