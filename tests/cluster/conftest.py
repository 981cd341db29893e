"""Fixtures of the cluster test: the node that run.sh brought up (its DIR/env), kubectl and helm
against it, the images in its registry, and a Temporal dev server that pods reach at the node IP.

Everything here runs inside the node's network namespace (run.sh enters it): 127.0.0.1 is the
namespace's loopback, where the API server, the registry and MinIO listen.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from harness import Process, free_port, wait_until_ready  # noqa: E402
from stores import S3Store, read_env  # noqa: E402

OPERATOR_NAMESPACE = "claimcheck-system"


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120, every: float = 0.5) -> Any:
    """Polls check() until it returns a truthy value, which it returns; fails naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@dataclass
class Kube:
    """kubectl and helm with the node's admin kubeconfig."""

    env: dict[str, str]

    def run(self, tool: str, *args: str, input: str | None = None, check: bool = True):
        argv = [self.env[tool.upper()], "--kubeconfig", self.env["KUBECONFIG"], *args]
        done = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=600)
        if check and done.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
        return done

    def kubectl(self, *args: str, input: str | None = None, check: bool = True):
        return self.run("kubectl", *args, input=input, check=check)

    def helm(self, *args: str, check: bool = True):
        return self.run("helm", *args, check=check)

    def get(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", "-o", "json", *args).stdout)

    def apply(self, manifest: dict | str) -> None:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=text)


@pytest.fixture(scope="session")
def node() -> dict[str, str]:
    return read_env(Path(os.environ["CLUSTER_DIR"]) / "env")


@pytest.fixture(scope="session")
def kube(node: dict[str, str]) -> Kube:
    return Kube(node)


def crane(node: dict[str, str], *args: str) -> None:
    tools = subprocess.run(
        [str(ROOT / "tests" / "env" / "install.sh"), "crane"], check=True, capture_output=True, text=True
    ).stdout
    crane_bin = next(line.split("=", 1)[1] for line in tools.splitlines() if line.startswith("CRANE_BIN="))
    subprocess.run([crane_bin, *args], check=True, timeout=300)


@pytest.fixture(scope="session")
def images(node: dict[str, str]) -> dict[str, str]:
    """The operator's image (make image) and the Go worker's, pushed to the node's registry."""
    registry = node["REGISTRY"]
    operator = f"{registry}/claimcheck:test"
    started = time.monotonic()
    subprocess.run(
        [str(ROOT / "image" / "build.sh")],
        check=True,
        timeout=600,
        env={**os.environ, "IMAGE": operator},
    )
    print(f"operator image built and pushed in {time.monotonic() - started:.1f} s")
    worker = f"{registry}/worker:test"
    crane(node, "push", os.environ["WORKER_IMAGE_DIR"], worker)
    return {"operator": operator, "worker": worker}


@pytest.fixture(scope="session")
def temporal(node: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A dev server that pods dial at the node IP, this process too. It listens on every address
    of the node's namespace (nothing leads out of it): with --ip NODE_IP its own services would
    still dial each other at 127.0.0.1 and find nothing there."""
    temporal_cli = Path(sys.executable).parent / "temporal"
    port = free_port()
    ip = node["NODE_IP"]
    argv = [str(temporal_cli), "server", "start-dev", "--ip", "0.0.0.0", "--port", str(port), "--headless",
            "--log-level", "warn"]
    log = tmp_path_factory.mktemp("temporal") / "temporal-server.log"
    process = Process.start("temporal dev server", argv, log)
    try:
        wait_until_ready(process, lambda: port_open_at(ip, port), "temporal dev server")
        yield f"{ip}:{port}"
    finally:
        process.stop()


def port_open_at(ip: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((ip, port)) == 0


@pytest.fixture(scope="session")
def store(node: dict[str, str]) -> S3Store:
    """The team's prefix on the node's MinIO, read from this process over loopback."""
    return S3Store(node, node["S3_BUCKET"], "team/")


@pytest.fixture(scope="session")
def minio_for_pods(node: dict[str, str]) -> str:
    """MinIO as pods reach it: at the node IP (it listens on every address of the namespace)."""
    port = node["S3_ENDPOINT"].rsplit(":", 1)[1]
    return f"http://{node['NODE_IP']}:{port}"

