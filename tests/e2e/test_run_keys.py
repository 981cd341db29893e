"""The proxy stores a workflow's payloads under the SDKs' run-scoped keys, so that one
workflow's objects can be found and deleted: `claimcheck objects` lists exactly them and, with
--delete --yes, deletes exactly them.

A start's input is stored before the run has an id (`ri/null`, as the SDKs write it); what the
run's tasks send is stored under its run id, which the proxy learns from the task it handed out.
"""

from __future__ import annotations

import asyncio
import os
import subprocess

import pytest
from temporalio.client import Client

from claims import checked_run_references
from harness import MiB, Proxy, claimcheck_bin, unique, worker
from stores import Store
from workflows import ActivityRoundTrip, EchoReversed, blob, digest

NAMESPACE = "default"
SIZE = 3 * MiB
WAIT = 60  # seconds


def objects(store: Store, workflow_id: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(claimcheck_bin()), "objects", "--store", store.url,
            "--namespace", NAMESPACE, "--workflow-id", workflow_id, *args,
        ],
        env={**os.environ, **store.env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def listed(store: Store, done: subprocess.CompletedProcess) -> set[str]:
    """The keys `claimcheck objects` printed (one object per line: name, size, time)."""
    assert done.returncode == 0, done.stderr
    names = [line.split("\t")[0] for line in done.stdout.splitlines() if "\t" in line]
    keys = set()
    for name in names:
        assert name.startswith(store.object_name(store.prefix)), name
        keys.add(name.removeprefix(store.object_name("")))
    return keys


@pytest.mark.parametrize("store", ["file", "s3"], indirect=True)
async def test_a_workflow_s_objects_are_under_its_run_and_are_deleted_with_it(
    store: Store, proxy: Proxy, proxy_client: Client, direct_client: Client
) -> None:
    echo_id, activity_id = unique("echo"), unique("activity")
    queue = unique("run-keys")
    data = blob(61, SIZE)
    async with worker(proxy_client, queue):
        echo = await proxy_client.start_workflow(EchoReversed.run, data, id=echo_id, task_queue=queue)
        activity = await proxy_client.start_workflow(
            ActivityRoundTrip.run, args=[62, SIZE], id=activity_id, task_queue=queue
        )
        assert await asyncio.wait_for(echo.result(), WAIT) == data[::-1]
        assert await asyncio.wait_for(activity.result(), WAIT) == digest(blob(62, SIZE)[::-1])

    scope = f"{store.prefix}v0/ns/{NAMESPACE}/"
    echo_refs = await checked_run_references(direct_client, echo_id, None, store)
    by_event = {ref.event: ref.key for ref in echo_refs}
    assert by_event["WORKFLOW_EXECUTION_STARTED"].startswith(
        f"{scope}wt/EchoReversed/wi/{echo_id}/ri/null/d/sha256/"
    ), by_event
    assert by_event["WORKFLOW_EXECUTION_COMPLETED"].startswith(
        f"{scope}wt/EchoReversed/wi/{echo_id}/ri/{echo.result_run_id}/d/sha256/"
    ), by_event
    activity_refs = await checked_run_references(direct_client, activity_id, None, store)
    assert {ref.event for ref in activity_refs} == {"ACTIVITY_TASK_SCHEDULED", "ACTIVITY_TASK_COMPLETED"}
    for ref in activity_refs:
        # The activity's result too: its task token was handed out through this proxy.
        assert ref.key.startswith(
            f"{scope}wt/ActivityRoundTrip/wi/{activity_id}/ri/{activity.result_run_id}/d/sha256/"
        ), ref

    echo_keys = {ref.key for ref in echo_refs}
    assert listed(store, objects(store, echo_id)) == echo_keys
    run_only = listed(store, objects(store, echo_id, "--run-id", echo.result_run_id or ""))
    assert run_only == {by_event["WORKFLOW_EXECUTION_COMPLETED"]}

    refused = objects(store, echo_id, "--delete", stdin="y\n")
    assert refused.returncode != 0 and "--yes" in refused.stderr, refused
    assert echo_keys <= store.keys(), "nothing is deleted without confirmation"

    deleted = objects(store, echo_id, "--delete", "--yes")
    assert listed(store, deleted) == echo_keys
    assert f"deleted {len(echo_keys)} objects" in deleted.stdout
    remaining = store.keys()
    assert not echo_keys & remaining, "the workflow's objects are gone"
    assert {ref.key for ref in activity_refs} <= remaining, "another workflow's objects stay"
    assert listed(store, objects(store, echo_id)) == set()
