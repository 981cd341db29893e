"""`temporal workflow show --codec-endpoint` prints the original payloads of a workflow whose
input and result the proxy offloaded, through the proxy's codec server, and fails on a token
the codec refuses.

The CLI calls /decode without preserveStorageRefs (docs/codec-server.md §6), so the codec must
resolve every reference, whatever its size.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import Client

from claims import REFERENCE_TYPE, checked_run_references
from harness import MiB, Codec, DevServer, Proxy, ProxyFactory, connect, unique, worker
from stores import Store
from workflows import EchoReversed, blob, digest

TOKEN = secrets.token_urlsafe(16)
SIZE = MiB // 2  # over the proxy's threshold: input and result are both offloaded
# The CLI retries a codec error as a gRPC UNKNOWN until its deadline: a refused call takes it.
COMMAND_TIMEOUT = "5s"
REQUESTS = "claimcheck_codec_requests_total"


@dataclass
class CliRun:
    server: DevServer
    codec: Codec
    proxy: Proxy
    workflow_id: str
    data: bytes  # the workflow's input; its result is the same reversed


@pytest.fixture
async def cli_run(
    dev_server: DevServer, proxy_factory: ProxyFactory, store: Store, direct_client: Client
) -> CliRun:
    codec = Codec(tokens={"cli-test": TOKEN}, decode_max_bytes=MiB)
    proxy: Proxy = proxy_factory(store, codec=codec)
    workflow_id = unique("codec-cli")
    data = blob(31, SIZE)
    client = await connect(proxy.address)
    async with worker(client, workflow_id):
        await client.execute_workflow(
            EchoReversed.run, data, id=workflow_id, task_queue=workflow_id
        )
    # As stored on the server, both are references: without the codec the CLI prints those.
    refs = await checked_run_references(direct_client, workflow_id, None, store)
    assert sorted(r.event for r in refs) == [
        "WORKFLOW_EXECUTION_COMPLETED",
        "WORKFLOW_EXECUTION_STARTED",
    ], refs
    return CliRun(dev_server, codec, proxy, workflow_id, data)


def workflow_show(run: CliRun, authorization: str) -> subprocess.CompletedProcess[str]:
    temporal = Path(sys.executable).parent / "temporal"
    argv = [
        str(temporal), "workflow", "show",
        "--workflow-id", run.workflow_id,
        "--address", run.server.address,
        "--codec-endpoint", run.codec.url,
        "--codec-auth", authorization,
        "--output", "json",
        "--command-timeout", COMMAND_TIMEOUT,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def shown_payload(history: dict, attributes: str, field: str) -> dict:
    """The one payload in `field` of the one event with `attributes`, as the CLI printed it."""
    (payload,) = [
        payload
        for event in history["events"]
        if attributes in event
        for payload in event[attributes][field]["payloads"]
    ]
    return payload


def sha256_of_data(payload: dict) -> str:
    return hashlib.sha256(base64.b64decode(payload["data"])).hexdigest()


def test_workflow_show_prints_the_original_payloads(cli_run: CliRun):
    shown = workflow_show(cli_run, f"Bearer {TOKEN}")
    assert shown.returncode == 0, shown.stderr
    history = json.loads(shown.stdout)
    given = shown_payload(history, "workflowExecutionStartedEventAttributes", "input")
    result = shown_payload(history, "workflowExecutionCompletedEventAttributes", "result")
    for payload in (given, result):
        metadata = {k: base64.b64decode(v) for k, v in payload["metadata"].items()}
        assert metadata.get("encoding") == b"binary/plain", metadata
        assert metadata.get("messageType") != REFERENCE_TYPE
        assert "externalPayloads" not in payload
    assert sha256_of_data(given) == digest(cli_run.data)
    assert sha256_of_data(result) == digest(cli_run.data[::-1])


def test_workflow_show_with_a_wrong_token_fails(cli_run: CliRun):
    shown = workflow_show(cli_run, f"Bearer not-{TOKEN}")
    assert shown.returncode != 0, shown.stdout[-2000:]
    assert shown.stderr.startswith("Error:") and "payloads" not in shown.stdout, shown
    # The CLI cannot say why: the SDK takes the codec's error for a gRPC UNKNOWN and retries it
    # until the command's deadline, so stderr reads "context deadline exceeded". The codec's
    # side shows that each of those calls got a 401 and none was answered.
    refused = cli_run.proxy.metric(REQUESTS, operation="decode", outcome="unauthenticated")
    assert refused >= 1
    assert cli_run.proxy.metric(REQUESTS, outcome="ok") == 0
