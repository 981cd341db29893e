"""What the soak watches in the proxy, across the incarnations a SIGKILL separates: its
counters summed over them, its peak memory, its sockets and threads, and its log's errors."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from stack import Proxy
from test_codec_load import rss

COUNTER = re.compile(r"^(claimcheck_\w+_total)(?:\{([^}]*)\})?\s+(\S+)", re.MULTILINE)


def read_counters(metrics_url: str) -> Counter:
    """Every claimcheck counter, keyed by name and labels (`claimcheck_errors_total{code="Unavailable"}`)."""
    with urllib.request.urlopen(f"{metrics_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return Counter(
        {f"{name}{{{labels}}}" if labels else name: float(value) for name, labels, value in COUNTER.findall(text)}
    )


def socket_count(pid: int) -> int:
    """Open sockets: listeners, the workers' connections, the upstream's, the store's."""
    fds = Path(f"/proc/{pid}/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            count += fd.readlink().name.startswith("socket:")
        except FileNotFoundError:  # closed while listed
            pass
    return count


def thread_count(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Threads:\s+(\d+)", status, re.MULTILINE).group(1))


def task_count(metrics_url: str) -> int:
    """The proxy's live tokio tasks, from its `claimcheck_tasks` gauge."""
    with urllib.request.urlopen(f"{metrics_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return int(re.search(r"^claimcheck_tasks (\d+)", text, re.MULTILINE).group(1))


@dataclass
class Resources:
    sockets: int
    threads: int
    tasks: int

    @classmethod
    def of(cls, proxy: Proxy) -> Resources:
        return cls(socket_count(proxy.pid), thread_count(proxy.pid), task_count(proxy.metrics_url))

    def within(self, baseline: Resources) -> bool:
        return all(now <= before for now, before in zip(vars(self).values(), vars(baseline).values()))


class ProxyWatch:
    """Samples the proxy while the soak runs; a proxy about to be killed is read one last time."""

    SAMPLE_EVERY = 0.5  # seconds
    SCRAPE_EVERY = 4  # samples

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.counters_of_the_dead = Counter()
        self.counters = Counter()  # of the running incarnation, at its last scrape
        self.peak_rss = 0  # VmHWM: the kernel's own peak, not just what the samples caught

    def totals(self) -> Counter:
        return self.counters_of_the_dead + self.counters

    def sample(self, scrape: bool = True) -> None:
        pid = self.proxy.pid
        if pid is None:
            return
        try:
            self.peak_rss = max(self.peak_rss, rss(pid, "VmHWM"))
            if scrape:
                self.counters = read_counters(self.proxy.metrics_url)
        except (OSError, urllib.error.URLError, AssertionError):
            pass  # it is being killed or restarted: the next sample reads the next one

    def before_kill(self) -> None:
        self.sample()
        self.counters_of_the_dead += self.counters
        self.counters = Counter()

    async def run(self) -> None:
        tick = 0
        while True:
            self.sample(scrape=tick % self.SCRAPE_EVERY == 0)
            tick += 1
            await asyncio.sleep(self.SAMPLE_EVERY)

    async def settled(self, baseline: Resources, timeout: float) -> Resources:
        """The proxy's resources once they are back within `baseline`, or after `timeout`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            now = Resources.of(self.proxy)
            if now.within(baseline) or loop.time() > deadline:
                return now
            await asyncio.sleep(1)


@dataclass
class LogEvent:
    time: float  # seconds since the epoch
    level: str
    fields: dict[str, list[str]]  # every value of each field
    log: Path

    def text(self) -> str:
        return " ".join(f"{key}={' | '.join(values)}" for key, values in self.fields.items())


def read_events(log: Path) -> tuple[list[LogEvent], list[str]]:
    """The JSON events of a proxy's log, and the lines that are not JSON (a panic's message)."""
    events, others = [], []
    for line in log.read_text(errors="replace").splitlines():
        try:
            pairs = json.loads(line, object_pairs_hook=list)
        except json.JSONDecodeError:
            if line.strip():
                others.append(line)
            continue
        event = dict(pairs)
        fields: dict[str, list[str]] = {}
        for key, value in event.get("fields", []):
            fields.setdefault(key, []).append(str(value))
        stamp = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
        events.append(LogEvent(stamp, event["level"], fields, log))
    return events, others
