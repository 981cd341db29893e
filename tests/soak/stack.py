"""The soak's processes, each of which a fault can take down and bring back where it was:

- a Temporal dev server with its state in a file, restarted on the same port and file;
- MinIO (tests/env/cluster.sh), killed and restarted on the same port and data;
- the slow link between the proxy and MinIO (slowlink.py);
- the proxy, configured by a file it re-reads, killed and restarted on the same ports;
- the workers, processes of their own that poll through the proxy.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import harness
from harness import DevServer, Process, claimcheck_bin, free_port, http_ok, wait_until_ready
from slowlink import SlowLink
from stores import Cluster, S3Store

WORKER_SCRIPT = Path(__file__).resolve().parent / "worker.py"
TASK_QUEUE = "soak"
MiB = harness.MiB
# A relay of a 50 MiB payload holds three in its history (start, activity input, result): a
# worker that replays it whole, after a restart, receives 150 MiB once they are put back. The
# soak raises both sides' limits above Core's 128 MiB default, as the proxy's refusal says to.
CLIENT_MAX_MESSAGE_BYTES = 256 * MiB


@dataclass(frozen=True)
class Limits:
    """The proxy's memory limits, as its configuration states them."""

    inflight_bytes: int = 512 * MiB
    cache_bytes: int = 64 * MiB


@dataclass
class Temporal:
    """A dev server whose restarts keep its port and its workflows."""

    workdir: Path
    port: int = field(default_factory=free_port)
    server: DevServer | None = None
    starts: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def logs(self) -> list[Path]:
        return sorted(self.workdir.glob("temporal-*/temporal-server.log"))

    def start(self) -> None:
        self.starts += 1
        log_dir = self.workdir / f"temporal-{self.starts}"
        log_dir.mkdir()
        self.server = DevServer.start(
            log_dir, port=self.port, db_filename=self.workdir / "temporal.db"
        )

    def stop(self) -> None:
        if self.server:
            self.server.process.stop()
            self.server = None


@dataclass
class Proxy:
    """`claimcheck proxy -c FILE` on fixed ports: a restarted proxy is where workers left it,
    and the file is where a changed threshold reaches the running one."""

    workdir: Path
    upstream: str
    store: S3Store
    store_endpoint: str  # the slow link, in front of the store
    limits: Limits
    threshold: int
    port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    process: Process | None = None
    starts: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.workdir / "proxy.json"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    @property
    def pid(self) -> int | None:
        if self.process and self.process.popen.poll() is None:
            return self.process.popen.pid
        return None

    @property
    def logs(self) -> list[Path]:
        return sorted(self.workdir.glob("proxy-*.log"), key=lambda p: int(p.stem.split("-")[1]))

    def write_config(self, threshold: int) -> None:
        """Replaces the configuration file whole, so the proxy never reads half of it."""
        self.threshold = threshold
        config = {
            "listen": self.address,
            "upstream": {"address": f"http://{self.upstream}"},
            "thresholdBytes": threshold,
            # With reqwest's default of 90 s, the idle store connections of the last burst
            # would still be open when the soak counts the proxy's sockets after the load.
            "drivers": [{"url": self.store.url, "options": {"pool_idle_timeout": "5s"}}],
            "limits": {
                "inflightBytes": self.limits.inflight_bytes,
                "clientMaxMessageBytes": CLIENT_MAX_MESSAGE_BYTES,
            },
            "cache": {"maxBytes": self.limits.cache_bytes},
            "metricsListen": f"127.0.0.1:{self.metrics_port}",
        }
        staged = self.config_file.with_suffix(".staged")
        staged.write_text(json.dumps(config, indent=2))
        staged.replace(self.config_file)

    def start(self) -> None:
        self.starts += 1
        argv = [str(claimcheck_bin()), "proxy", "-c", str(self.config_file), "--log-format", "json"]
        env = {**self.store.env, "AWS_ENDPOINT": self.store_endpoint}
        log = self.workdir / f"proxy-{self.starts}.log"
        self.process = Process.start("claimcheck proxy", argv, log, env)
        wait_until_ready(self.process, lambda: http_ok(f"{self.metrics_url}/readyz"), "claimcheck proxy")

    def kill(self) -> None:
        """SIGKILL: nothing is drained, nothing flushed, as when a pod's container is killed."""
        assert self.process
        os.kill(self.process.popen.pid, signal.SIGKILL)
        self.process.popen.wait()

    def stop(self) -> None:
        if self.process:
            self.process.stop()


@dataclass
class Workers:
    """Worker processes, all on the soak's task queue, all through the proxy."""

    workdir: Path
    address: str
    count: int
    processes: list[Process] = field(default_factory=list)
    restarts: int = 0  # workers that died and were started again

    @property
    def logs(self) -> list[Path]:
        return sorted(self.workdir.glob("worker-*.log"))

    def start(self) -> None:
        for index in range(self.count):
            self.processes.append(self._start(index))

    def _start(self, index: int) -> Process:
        argv = [sys.executable, str(WORKER_SCRIPT), self.address, TASK_QUEUE]
        log = self.workdir / f"worker-{index}.log"
        if log.exists():
            log.rename(log.with_suffix(f".{self.restarts}.log"))
        env = {"TEMPORAL_MAX_INCOMING_GRPC_BYTES": str(CLIENT_MAX_MESSAGE_BYTES)}
        return Process.start(f"worker {index}", argv, log, env)

    def revive(self) -> list[str]:
        """Starts again any worker that died; returns how each died (its log's end)."""
        deaths = []
        for index, process in enumerate(self.processes):
            if process.popen.poll() is not None:
                deaths.append(f"{process.name} exited {process.popen.returncode}: "
                              f"{process.log_text()[-2000:]}")
                self.restarts += 1
                self.processes[index] = self._start(index)
        return deaths

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


@dataclass
class Stack:
    temporal: Temporal
    cluster: Cluster
    link: SlowLink
    proxy: Proxy
    workers: Workers
    stops: contextlib.AsyncExitStack  # what up started, stopped in reverse

    @classmethod
    async def up(cls, workdir: Path, limits: Limits, threshold: int, workers: int) -> Stack:
        async with contextlib.AsyncExitStack() as stops:  # unwinds what started, should a step fail
            temporal = Temporal(workdir)
            stops.callback(temporal.stop)
            temporal.start()
            cluster = Cluster.up(workdir / "cluster", ("s3",))
            stops.callback(cluster.down)
            link = SlowLink(int(cluster.env["S3_ENDPOINT"].rsplit(":", 1)[1]))
            await link.start()
            stops.push_async_callback(link.stop)
            store = cluster.store("s3", harness.unique("soak") + "/")
            proxy = Proxy(workdir, temporal.address, store, f"http://127.0.0.1:{link.port}", limits, threshold)
            proxy.write_config(threshold)
            stops.callback(proxy.stop)
            proxy.start()
            pool = Workers(workdir, proxy.address, workers)
            stops.callback(pool.stop)
            pool.start()
            return cls(temporal, cluster, link, proxy, pool, stops.pop_all())

    async def down(self) -> None:
        await self.stops.aclose()

    @property
    def logs(self) -> dict[str, Path]:
        """Every log, by a name a person can read."""
        named = {f"claimcheck {p.stem}": p for p in self.proxy.logs}
        named.update({f"temporal {p.parent.name}": p for p in self.temporal.logs})
        named.update({p.stem: p for p in self.workers.logs})
        named["minio"] = self.cluster.dir / "minio.log"
        return named
