"""The Go SDK worker of the cluster test (tests/worker-go), on this machine: a second SDK
language through the proxy.

Through the proxy, a 10 MiB payload passes through three activities of a Go worker and comes
out intact (the Go checker compares SHA-256s), and the history read straight from the server
holds only references, which the server accounts for; a small payload stays inline. Straight to
the server, the same workflow never completes: the server refuses the activity's result.
Also checks the worker's OCI image as the cluster test gets it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from temporalio.client import Client

from claims import checked_run_references, event_name, is_reference, iter_payloads
from harness import MiB, DevServer, Process, Proxy, ProxyFactory, unique
from sdk_scenarios import SCENARIOS, check_scenario, checker_verdict
from stores import StoreFactory

BUILD_SH = Path(__file__).resolve().parents[1] / "worker-go" / "build.sh"
# seconds; with empty Go caches the build took 144 s on 2 busy cores, module downloads included
BUILD_TIMEOUT = 480
RUN_TIMEOUT = 60  # seconds, the workflow's execution timeout through the proxy
DIRECT_TIMEOUT = 10  # seconds; without the proxy the server refuses the result within one
# Produce, then two Reverse activities: three results, and two of them passed on as inputs.
CARRIERS = Counter({"ACTIVITY_TASK_COMPLETED": 3, "ACTIVITY_TASK_SCHEDULED": 2})

# The first test also waits for the build, beyond the suite's 300 s last resort.
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT + 120)

GoRun = Callable[[str, int, int], tuple[dict, Process]]


def build(*args: str) -> Path:
    """Runs build.sh (a no-op once built) and returns the path it prints."""
    done = subprocess.run(
        [str(BUILD_SH), *args], check=True, stdout=subprocess.PIPE, text=True, timeout=BUILD_TIMEOUT
    )
    return Path(done.stdout.splitlines()[-1])


@pytest.fixture(scope="session")
def go_worker_bin() -> Path:
    return build()


@pytest.fixture
def go_run(go_worker_bin: Path, logs: dict[str, Path], tmp_path: Path) -> GoRun:
    """run(address, size, timeout): one PassThrough workflow of SIZE bytes on a task queue of its
    own, the Go worker (configured from the environment as in a pod) and the Go checker both
    talking to ADDRESS. Returns the checker's verdict and the worker, stopped with SIGTERM."""

    def run(address: str, size: int, timeout: int) -> tuple[dict, Process]:
        workflow_id = unique("go-worker")
        logs["go worker"] = tmp_path / "go-worker.log"
        logs["go run"] = tmp_path / "go-run.log"
        env = {"TEMPORAL_ADDRESS": address, "TEMPORAL_TASK_QUEUE": workflow_id}
        worker = Process.start("go worker", [str(go_worker_bin), "worker"], logs["go worker"], env)
        try:
            verdict = run_workflow(go_worker_bin, address, workflow_id, size, timeout, logs["go run"])
            worker.check_running()
        finally:
            worker.stop()
        return verdict, worker

    return run


def run_workflow(
    binary: Path, address: str, workflow_id: str, size: int, timeout: int, log: Path
) -> dict:
    """The Go checker's verdict on one PassThrough workflow (its task queue is its id)."""
    argv = [
        str(binary), "run",
        "-task-queue", workflow_id,
        "-workflow-id", workflow_id,
        "-size", str(size),
        "-timeout", f"{timeout}s",
    ]
    return checker_verdict(argv, address, timeout, log)


async def history(client: Client, workflow_id: str, run_id: str):
    return (await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()).events


@pytest.mark.parametrize(
    ("size", "offloaded"),
    [pytest.param(10 * MiB, True, id="10mib"), pytest.param(1024, False, id="1kib-inline")],
)
async def test_go_worker_through_proxy(
    size: int,
    offloaded: bool,
    go_run: GoRun,
    proxy: Proxy,
    direct_client: Client,
) -> None:
    verdict, worker = go_run(proxy.address, size, RUN_TIMEOUT)
    workflow_id = verdict["workflowId"]
    assert verdict["ok"], verdict
    assert verdict["got"]["Size"] == size
    assert worker.popen.returncode == 0, "the worker must stop cleanly on SIGTERM"

    # Read straight from the server: each place that carried the bytes holds a reference (or,
    # below the threshold, the bytes themselves), and the server counts the references.
    refs = await checked_run_references(direct_client, workflow_id, verdict["runId"], proxy.store)
    assert Counter(ref.event for ref in refs) == (CARRIERS if offloaded else Counter()), refs
    assert all(ref.size_bytes > size for ref in refs), refs
    inline = Counter(
        event_name(event)
        for event in await history(direct_client, workflow_id, verdict["runId"])
        for _, payload in iter_payloads(event)
        if not is_reference(payload) and len(payload.data) >= size
    )
    assert inline == (Counter() if offloaded else CARRIERS), inline
    # One object per distinct payload: the produced bytes and their reverse.
    assert len(proxy.store.keys()) == (2 if offloaded else 0), proxy.store.keys()


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_go_sdk_scenario_through_proxy(
    scenario: str,
    go_worker_bin: Path,
    proxy: Proxy,
    direct_client: Client,
    logs: dict[str, Path],
    tmp_path: Path,
) -> None:
    await check_scenario("go", [str(go_worker_bin)], scenario, proxy, direct_client, logs, tmp_path)


async def test_the_go_sdk_s3_driver_and_the_proxy_read_each_other(
    go_worker_bin: Path,
    store_factory: StoreFactory,
    proxy_factory: ProxyFactory,
    dev_server: DevServer,
    direct_client: Client,
    logs: dict[str, Path],
    tmp_path: Path,
) -> None:
    """A client with the Go SDK's own S3 driver (third_party/s3driver) and no proxy starts a
    workflow with a large input, which its driver stores; a plain Go worker behind the proxy gets
    it put back, and its reversed result is stored by the proxy; the client's driver reads the
    proxy's reference, and the checker compares SHA-256s."""
    store = store_factory("s3", prefix="")  # the SDK's keys start at the bucket's root
    proxy = proxy_factory(store)
    workflow_id = unique("go-sdk-driver")
    logs["go worker"] = tmp_path / "go-worker.log"
    env = {"TEMPORAL_ADDRESS": proxy.address, "TEMPORAL_TASK_QUEUE": workflow_id}
    worker = Process.start("go worker", [str(go_worker_bin), "worker"], logs["go worker"], env)
    try:
        verdict = checker_verdict(
            [
                str(go_worker_bin), "scenario", "-name", "workflow-input-and-result",
                "-task-queue", workflow_id, "-workflow-id", workflow_id, "-timeout", f"{RUN_TIMEOUT}s",
            ],
            dev_server.address, RUN_TIMEOUT, tmp_path / "go-scenario.log",
            env={**store.env, "SDK_STORAGE_S3_BUCKET": store.bucket},
        )
        worker.check_running()
    finally:
        worker.stop()
    assert verdict["ok"], verdict

    refs = await checked_run_references(direct_client, workflow_id, verdict["runId"], store)
    keys = {ref.event: ref.key for ref in refs}
    # The SDK's driver wrote the input (before the run had an id); the proxy wrote the result.
    assert "/ri/null/" in keys["WORKFLOW_EXECUTION_STARTED"], keys
    assert f"/ri/{verdict['runId']}/" in keys["WORKFLOW_EXECUTION_COMPLETED"], keys
    assert proxy.metric("claimcheck_payloads_fetched_total") >= 1


async def test_go_worker_without_proxy_never_completes(
    go_run: GoRun,
    dev_server: DevServer,
    direct_client: Client,
) -> None:
    verdict, worker = go_run(dev_server.address, 10 * MiB, DIRECT_TIMEOUT)
    workflow_id = verdict["workflowId"]
    assert not verdict["ok"] and "timeout" in verdict["error"].lower(), verdict
    # Why: the server refused the 10 MiB activity result the worker sent (its SDK limit is off,
    # as behind the proxy), so the activity never completed.
    assert "received message larger than max" in worker.log_text()
    events = [event_name(e) for e in await history(direct_client, workflow_id, verdict["runId"])]
    assert "ACTIVITY_TASK_COMPLETED" not in events, events
    assert events[-1] == "WORKFLOW_EXECUTION_TIMED_OUT", events


def test_go_worker_image(go_worker_bin: Path) -> None:
    """The OCI layout the cluster test pushes: the static binary alone, as /worker, run as
    65532:65532."""
    layout = build("image")

    def blob(descriptor: dict) -> bytes:
        algorithm, digest = descriptor["digest"].split(":")
        data = (layout / "blobs" / algorithm / digest).read_bytes()
        assert hashlib.new(algorithm, data).hexdigest() == digest, descriptor
        return data

    (manifest,) = json.loads((layout / "index.json").read_text())["manifests"]
    manifest = json.loads(blob(manifest))
    config = json.loads(blob(manifest["config"]))
    assert (config["os"], config["architecture"]) == ("linux", "amd64"), config
    assert config["config"]["Entrypoint"] == ["/worker"], config
    assert config["config"]["User"] == "65532:65532", config

    (layer,) = manifest["layers"]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(layer)))) as tar:
        (member,) = tar.getmembers()
        assert (member.name, member.mode, member.uid, member.gid) == ("worker", 0o755, 0, 0)
        assert tar.extractfile(member).read() == go_worker_bin.read_bytes()
