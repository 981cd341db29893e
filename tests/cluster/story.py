"""The operator's story on the node, step by step, as plain functions: the cluster test asserts on
them, `make demo-cluster` prints them. Everything runs inside the node's network namespace
(run.sh enters it): 127.0.0.1 is the namespace's loopback, where the API server, the registry
and MinIO listen; pods reach this namespace's servers at the node IP.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from harness import Process, free_port, wait_until_ready  # noqa: E402
from stores import S3Store, read_env  # noqa: E402

CHART = ROOT / "charts" / "claimcheck"
OPERATOR_NAMESPACE = "claimcheck-system"
OPERATOR_SELECTOR = "app.kubernetes.io/name=claimcheck,app.kubernetes.io/component=controller"
TEAM = "team"
POLICY = "payloads"
WORKER = "worker"
TASK_QUEUE = "cluster-test"
MiB = 1 << 20


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

    def apply(self, manifest: dict) -> None:
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(manifest))


def node_env() -> dict[str, str]:
    return read_env(Path(os.environ["CLUSTER_DIR"]) / "env")


def quietly(argv: list[str], env: dict[str, str] | None = None) -> str:
    """Runs argv, its output shown only if it fails; returns its stdout."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def push_images(node: dict[str, str]) -> dict[str, str]:
    """The operator's image (make image) and the Go worker's, pushed to the node's registry."""
    registry = node["REGISTRY"]
    operator = f"{registry}/claimcheck:test"
    with tempfile.TemporaryDirectory() as layout:  # not make image's: that one may be in use
        quietly([str(ROOT / "image" / "build.sh")], env={**os.environ, "IMAGE": operator, "IMAGE_DIR": layout})
    tools = quietly([str(ROOT / "tests" / "env" / "install.sh"), "crane"])
    crane = next(line.split("=", 1)[1] for line in tools.splitlines() if line.startswith("CRANE_BIN="))
    worker = f"{registry}/worker:test"
    quietly([crane, "push", os.environ["WORKER_IMAGE_DIR"], worker])
    return {"operator": operator, "worker": worker}


def port_open_at(ip: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((ip, port)) == 0


@contextmanager
def temporal_server(node: dict[str, str], log_dir: Path) -> Iterator[str]:
    """A dev server that pods dial at the node IP, this process too. It listens on every address
    of the node's namespace (nothing leads out of it): with --ip NODE_IP its own services would
    still dial each other at 127.0.0.1 and find nothing there."""
    temporal_cli = Path(sys.executable).parent / "temporal"
    port = free_port()
    argv = [str(temporal_cli), "server", "start-dev", "--ip", "0.0.0.0", "--port", str(port), "--headless",
            "--log-level", "warn"]
    process = Process.start("temporal dev server", argv, log_dir / "temporal-server.log")
    try:
        wait_until_ready(process, lambda: port_open_at(node["NODE_IP"], port), "temporal dev server")
        yield f"{node['NODE_IP']}:{port}"
    finally:
        process.stop()


def team_store(node: dict[str, str]) -> S3Store:
    """The team's prefix on the node's MinIO, read from this process over loopback."""
    return S3Store(node, node["S3_BUCKET"], f"{TEAM}/")


def operator_values(images: dict[str, str]) -> list[str]:
    repository, tag = images["operator"].rsplit(":", 1)
    return ["--set", f"image.repository={repository}", "--set", f"image.tag={tag}"]


def ready_pods(kube: Kube, namespace: str, selector: str) -> list[dict]:
    pods = kube.get("pods", "-n", namespace, "-l", selector)["items"]
    return [
        p
        for p in pods
        if p["metadata"].get("deletionTimestamp") is None
        and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    ]


def install_operator(kube: Kube, images: dict[str, str]) -> list[dict]:
    """helm install into a namespace under the restricted Pod Security level; the Ready replicas."""
    kube.apply({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": OPERATOR_NAMESPACE, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
    })
    kube.helm("install", "claimcheck", str(CHART), "-n", OPERATOR_NAMESPACE, *operator_values(images),
              "--wait", "--timeout", "5m")

    def both_ready() -> list[dict] | None:
        pods = ready_pods(kube, OPERATOR_NAMESPACE, OPERATOR_SELECTOR)
        return pods if len(pods) == 2 else None

    return wait_for("two Ready operator replicas", both_ready)


def lease_holder(kube: Kube) -> str:
    return wait_for("the Lease held", lambda: kube.get("lease", "claimcheck-controller", "-n", OPERATOR_NAMESPACE)
                    ["spec"].get("holderIdentity"))


def condition(obj: dict, type_: str) -> dict | None:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), None)


def policy_ready(kube: Kube) -> dict | None:
    """The policy, once Ready for its current generation."""
    policy = kube.get("payloadstoragepolicy", POLICY, "-n", TEAM)
    ready = condition(policy, "Ready")
    current = ready and ready["status"] == "True" and ready.get("observedGeneration") == policy["metadata"]["generation"]
    return policy if current else None


def apply_policy(kube: Kube, node: dict[str, str], temporal: str, threshold: int) -> dict:
    """The team's Secret and policy on MinIO (which pods reach at the node IP); the Ready policy."""
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": TEAM}})
    minio_port = node["S3_ENDPOINT"].rsplit(":", 1)[1]
    kube.apply({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "minio", "namespace": TEAM},
        "stringData": {
            "AWS_ENDPOINT": f"http://{node['NODE_IP']}:{minio_port}",
            "AWS_REGION": node["S3_REGION"],
            "AWS_ACCESS_KEY_ID": node["S3_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": node["S3_SECRET_ACCESS_KEY"],
            "AWS_ALLOW_HTTP": "true",
        },
    })
    kube.apply({
        "apiVersion": "claimcheck.dev/v1alpha1", "kind": "PayloadStoragePolicy",
        "metadata": {"name": POLICY, "namespace": TEAM},
        "spec": {
            "temporal": {"address": temporal, "namespace": "default"},
            "thresholdBytes": threshold,
            "drivers": [{"name": "minio", "url": f"s3://{node['S3_BUCKET']}/{TEAM}/",
                         "credentialsSecretRef": {"name": "minio"}}],
            "lifecycle": {"maxWorkflowRunTimeout": "1d", "retention": "auto", "grace": "1d", "manage": True},
            "probe": {"interval": "30s"},
        },
    })
    return wait_for("the policy Ready", lambda: policy_ready(kube))


def deploy_worker(kube: Kube, image: str) -> dict:
    """The Go worker as a Deployment labelled for the policy; its Ready pod."""
    kube.apply({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": WORKER, "namespace": TEAM},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": WORKER}},
            "template": {
                "metadata": {"labels": {"app": WORKER, "claimcheck.dev/policy": POLICY}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{
                        "name": WORKER, "image": image, "args": ["worker"],
                        "env": [{"name": "TEMPORAL_TASK_QUEUE", "value": TASK_QUEUE}],
                        # A request as a real worker has: without one the container gets the
                        # kernel's least CPU share on this busy 2-core node.
                        "resources": {"requests": {"cpu": "500m", "memory": "128Mi"}},
                        "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                                            "capabilities": {"drop": ["ALL"]},
                                            "seccompProfile": {"type": "RuntimeDefault"}},
                    }],
                },
            },
        },
    })
    return worker_pod(kube)


def worker_pod(kube: Kube) -> dict:
    return wait_for("the worker pod Ready", lambda: next(iter(ready_pods(kube, TEAM, f"app={WORKER}")), None),
                    timeout=180)


def started_at(status: dict) -> datetime:
    return datetime.fromisoformat(status["state"]["running"]["startedAt"].replace("Z", "+00:00"))


def run_workflow(kube: Kube, pod: dict, workflow_id: str, size: int) -> dict:
    """The Go checker, run in the worker's container: through the sidecar, as the worker. Its
    verdict: the result's SHA-256 against the one computed locally."""
    done = kube.kubectl("exec", "-n", TEAM, pod["metadata"]["name"], "-c", WORKER, "--",
                        "/worker", "run", "-task-queue", TASK_QUEUE, "-workflow-id", workflow_id,
                        "-size", str(size), check=False)
    verdict = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    assert done.returncode == 0 and verdict.get("ok"), (done.stdout, done.stderr)
    return verdict
