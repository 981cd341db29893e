"""The core payload scenarios as the Go and the Java SDK workers run them (tests/worker-go,
tests/worker-java): each worker has a `worker` command and a `scenario -name NAME` checker that
prints a JSON verdict, so one test body serves both languages."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path

from temporalio.client import Client

from claims import checked_run_references
from harness import MiB, Process, Proxy, unique

# Each scenario, and the events that must hold references (read straight from the server). A
# query result never reaches history: the proxy's counter shows its offload.
SCENARIOS: dict[str, Counter] = {
    "workflow-input-and-result": Counter({"WORKFLOW_EXECUTION_STARTED": 1, "WORKFLOW_EXECUTION_COMPLETED": 1}),
    "signal": Counter({"WORKFLOW_EXECUTION_SIGNALED": 1}),
    "update": Counter({"WORKFLOW_EXECUTION_UPDATE_ACCEPTED": 1, "WORKFLOW_EXECUTION_UPDATE_COMPLETED": 1}),
    "query": Counter(),
    "child": Counter({"START_CHILD_WORKFLOW_EXECUTION_INITIATED": 1, "CHILD_WORKFLOW_EXECUTION_COMPLETED": 1}),
    "failure-details": Counter({"ACTIVITY_TASK_FAILED": 1}),
}
SIZE = 3 * MiB
TIMEOUT = 60  # seconds, the workflow's execution timeout


def checker_verdict(
    argv: list[str], address: str, timeout: int, log: Path, env: dict[str, str] | None = None
) -> dict:
    """A checker's verdict: it exits 0 or 1 with a JSON verdict on stdout; anything else is a
    crash, reported with its stderr. `env` is added to its environment."""
    with log.open("w") as stderr:
        done = subprocess.run(
            argv,
            env={**os.environ, **(env or {}), "TEMPORAL_ADDRESS": address},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            timeout=timeout + 30,
        )
    try:
        verdict = json.loads(done.stdout)
    except json.JSONDecodeError:
        verdict = None
    assert isinstance(verdict, dict) and done.returncode == (0 if verdict.get("ok") else 1), (
        f"the checker exited {done.returncode}, stdout {done.stdout!r}; "
        f"its stderr ({log}) ends: {log.read_text()[-2000:]}"
    )
    return verdict


async def check_scenario(
    language: str,
    command: list[str],
    scenario: str,
    proxy: Proxy,
    direct_client: Client,
    logs: dict[str, Path],
    tmp_path: Path,
) -> None:
    """Runs `command worker` behind the proxy and `command scenario` against it: the checker
    gets back what it sent, and the history holds references where the scenario puts them."""
    workflow_id = unique(f"{language}-{scenario}")
    logs[f"{language} worker"] = tmp_path / f"{language}-worker.log"
    logs[f"{language} scenario"] = tmp_path / f"{language}-scenario.log"
    env = {"TEMPORAL_ADDRESS": proxy.address, "TEMPORAL_TASK_QUEUE": workflow_id}
    worker = Process.start(f"{language} worker", [*command, "worker"], logs[f"{language} worker"], env)
    try:
        verdict = checker_verdict(
            [
                *command, "scenario", "-name", scenario, "-task-queue", workflow_id,
                "-workflow-id", workflow_id, "-size", str(SIZE), "-timeout", f"{TIMEOUT}s",
            ],
            proxy.address, TIMEOUT, logs[f"{language} scenario"],
        )
        worker.check_running()
    finally:
        worker.stop()
    assert verdict["ok"], verdict
    assert verdict["got"]["Size"] == SIZE, verdict

    refs = await checked_run_references(direct_client, workflow_id, verdict["runId"], proxy.store)
    assert Counter(ref.event for ref in refs) == SCENARIOS[scenario], refs
    assert proxy.metric("claimcheck_payloads_offloaded_total") >= 1
