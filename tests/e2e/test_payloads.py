"""Large payloads in every place of the Temporal API travel through the proxy.

Each scenario runs a real workflow, through the proxy, that puts >= 3 MiB in one place (and
only there), and checks by SHA-256 that the bytes arrived intact. The test then reads the
history straight from the server: no payload at or over the threshold is left in it, every
reference has the SDK's format and matches its stored object, and it finds references in
exactly the events the scenario expects. The server's own accounting of external payloads
(DescribeWorkflowExecution) must agree. Read back through the proxy, the same history must be
the stored one with every original payload back in place, byte for byte, and the store holds
exactly one object per distinct large payload.

Every scenario runs on the filesystem store; the activity, signal and failure ones also on S3,
GCS and Azure Blob, with the same checks, reading the stored objects through each store's own
client.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from temporalio.client import Client

from claims import checked_run_references, rehydrated
from harness import MiB, Proxy, unique, worker
from stores import CLOUD_KINDS
from workflows import (
    ActivityFailureDetails,
    ActivityRoundTrip,
    ChildParent,
    ContinueAsNewCarrier,
    EchoReversed,
    HeartbeatResume,
    LocalActivityResult,
    MemoReader,
    QueryServer,
    SignalReceiver,
    TwoActivities,
    UpdateReverser,
    blob,
    digest,
)

SIZE = 3 * MiB
SCENARIO_TIMEOUT = 60  # seconds, for a scenario that hangs instead of failing (20 MiB takes ~3)
RUN = dict(execution_timeout=timedelta(seconds=SCENARIO_TIMEOUT))


@dataclass
class Run:
    """A workflow run to inspect, and how many references each event type should hold."""

    workflow_id: str
    references: dict[str, int]
    run_id: str | None = None  # None: the latest run


@dataclass
class Outcome:
    runs: list[Run]
    # Objects the store holds afterwards: one per distinct large payload and run scope. (An
    # update's argument is stored by the client's call, which names no run, and again under the
    # run when the worker's acceptance echoes it.)
    objects: int


Scenario = Callable[[Client, str], Awaitable[Outcome]]


async def workflow_input_and_result(client: Client, wid: str, size: int = SIZE) -> Outcome:
    data = blob(1, size)
    result = await client.execute_workflow(EchoReversed.run, data, id=wid, task_queue=wid, **RUN)
    assert digest(result) == digest(data[::-1])
    return Outcome(
        [Run(wid, {"WORKFLOW_EXECUTION_STARTED": 1, "WORKFLOW_EXECUTION_COMPLETED": 1})],
        objects=2,
    )


async def workflow_input_and_result_20mib(client: Client, wid: str) -> Outcome:
    return await workflow_input_and_result(client, wid, size=20 * MiB)


async def activity_input_and_result(client: Client, wid: str) -> Outcome:
    result = await client.execute_workflow(
        ActivityRoundTrip.run, args=[2, SIZE], id=wid, task_queue=wid, **RUN
    )
    assert result == digest(blob(2, SIZE)[::-1])
    return Outcome(
        [Run(wid, {"ACTIVITY_TASK_SCHEDULED": 1, "ACTIVITY_TASK_COMPLETED": 1})],
        objects=2,
    )


async def activity_result_passed_on(client: Client, wid: str, size: int = SIZE) -> Outcome:
    result = await client.execute_workflow(
        TwoActivities.run, args=[12, size], id=wid, task_queue=wid, **RUN
    )
    assert result == digest(blob(12, size)[::-1])
    # The first result goes on as the second activity's input: the same object, referenced twice.
    return Outcome(
        [Run(wid, {"ACTIVITY_TASK_COMPLETED": 2, "ACTIVITY_TASK_SCHEDULED": 1})],
        objects=2,
    )


async def activity_result_passed_on_20mib(client: Client, wid: str) -> Outcome:
    return await activity_result_passed_on(client, wid, size=20 * MiB)


async def signal(client: Client, wid: str) -> Outcome:
    data = blob(3, SIZE)
    handle = await client.start_workflow(SignalReceiver.run, id=wid, task_queue=wid, **RUN)
    await handle.signal(SignalReceiver.put, data)
    assert await handle.result() == digest(data)
    return Outcome([Run(wid, {"WORKFLOW_EXECUTION_SIGNALED": 1})], objects=1)


async def query_result(client: Client, wid: str) -> Outcome:
    handle = await client.start_workflow(
        QueryServer.run, args=[4, SIZE], id=wid, task_queue=wid, **RUN
    )
    assert digest(await handle.query(QueryServer.data)) == digest(blob(4, SIZE))
    await handle.signal(QueryServer.finish)
    await handle.result()
    # A query result never reaches the history: only the proxy's counters show the offload.
    return Outcome([Run(wid, {})], objects=1)


async def update_argument_and_result(client: Client, wid: str) -> Outcome:
    data = blob(5, SIZE)
    handle = await client.start_workflow(UpdateReverser.run, id=wid, task_queue=wid, **RUN)
    result = await handle.execute_update(UpdateReverser.transform, data)
    assert digest(result) == digest(data[::-1])
    await handle.result()
    return Outcome(
        [
            Run(
                wid,
                {
                    "WORKFLOW_EXECUTION_UPDATE_ACCEPTED": 1,
                    "WORKFLOW_EXECUTION_UPDATE_COMPLETED": 1,
                },
            )
        ],
        objects=3,
    )


async def child_workflow_input_and_result(client: Client, wid: str) -> Outcome:
    result = await client.execute_workflow(
        ChildParent.run, args=[6, SIZE], id=wid, task_queue=wid, **RUN
    )
    assert result == digest(blob(6, SIZE)[::-1])
    parent = {
        "START_CHILD_WORKFLOW_EXECUTION_INITIATED": 1,
        "CHILD_WORKFLOW_EXECUTION_COMPLETED": 1,
    }
    child = {"WORKFLOW_EXECUTION_STARTED": 1, "WORKFLOW_EXECUTION_COMPLETED": 1}
    return Outcome([Run(wid, parent), Run(f"{wid}-child", child)], objects=2)


async def activity_failure_details(client: Client, wid: str) -> Outcome:
    result = await client.execute_workflow(
        ActivityFailureDetails.run, args=[7, SIZE], id=wid, task_queue=wid, **RUN
    )
    assert result == digest(blob(7, SIZE))
    return Outcome([Run(wid, {"ACTIVITY_TASK_FAILED": 1})], objects=1)


async def heartbeat_details(client: Client, wid: str) -> Outcome:
    result = await client.execute_workflow(
        HeartbeatResume.run, args=[8, SIZE], id=wid, task_queue=wid, **RUN
    )
    assert result == digest(blob(8, SIZE))
    # Heartbeat details live in the pending activity, handed to the retry, never in history.
    return Outcome([Run(wid, {})], objects=1)


async def local_activity_result(client: Client, wid: str) -> Outcome:
    result = await client.execute_workflow(
        LocalActivityResult.run, args=[9, SIZE], id=wid, task_queue=wid, **RUN
    )
    assert result == digest(blob(9, SIZE))
    return Outcome([Run(wid, {"MARKER_RECORDED": 1})], objects=1)


async def continue_as_new_input(client: Client, wid: str) -> Outcome:
    handle = await client.start_workflow(
        ContinueAsNewCarrier.run, args=[10, SIZE], id=wid, task_queue=wid, **RUN
    )
    assert await handle.result() == digest(blob(10, SIZE))
    # The server copies the reference from the first run's last event into the second run.
    return Outcome(
        [
            Run(wid, {"WORKFLOW_EXECUTION_CONTINUED_AS_NEW": 1}, handle.first_execution_run_id),
            Run(wid, {"WORKFLOW_EXECUTION_STARTED": 1}),
        ],
        objects=1,
    )


async def memo(client: Client, wid: str) -> Outcome:
    data = blob(11, SIZE)
    handle = await client.start_workflow(
        MemoReader.run, id=wid, task_queue=wid, memo={"blob": data}, **RUN
    )
    assert await handle.result() == digest(data)
    # DescribeWorkflowExecution through the proxy returns the memo rehydrated too.
    description = await handle.describe()
    assert digest(await description.memo_value("blob", type_hint=bytes)) == digest(data)
    return Outcome([Run(wid, {"WORKFLOW_EXECUTION_STARTED": 1})], objects=1)


SCENARIOS: list[Scenario] = [
    workflow_input_and_result,
    workflow_input_and_result_20mib,
    activity_input_and_result,
    activity_result_passed_on,
    activity_result_passed_on_20mib,
    signal,
    query_result,
    update_argument_and_result,
    child_workflow_input_and_result,
    activity_failure_details,
    heartbeat_details,
    local_activity_result,
    continue_as_new_input,
    memo,
]


# Each scenario on the filesystem; on the cloud stores, those that exercise the store most
# (large and very large objects written and read back, in several places).
CLOUD_SCENARIOS: list[Scenario] = [
    activity_result_passed_on,
    activity_result_passed_on_20mib,
    signal,
    activity_failure_details,
]
CASES = [(scenario, "file") for scenario in SCENARIOS] + [
    (scenario, kind) for kind in CLOUD_KINDS for scenario in CLOUD_SCENARIOS
]


@pytest.mark.parametrize(
    ("scenario", "store"),
    [pytest.param(scenario, kind, id=f"{scenario.__name__}-{kind}") for scenario, kind in CASES],
    indirect=["store"],
)
async def test_large_payload_through_proxy(
    scenario: Scenario, proxy: Proxy, proxy_client: Client, direct_client: Client
) -> None:
    workflow_id = unique(scenario.__name__)  # also the task queue
    async with worker(proxy_client, workflow_id):
        outcome = await asyncio.wait_for(scenario(proxy_client, workflow_id), SCENARIO_TIMEOUT)

    for run in outcome.runs:
        refs = await checked_run_references(direct_client, run.workflow_id, run.run_id, proxy.store)
        assert Counter(ref.event for ref in refs) == Counter(run.references), refs
        # Read through the proxy, the history is the stored one with the originals back in,
        # byte for byte, whatever event they are in.
        stored = direct_client.get_workflow_handle(run.workflow_id, run_id=run.run_id)
        served = proxy_client.get_workflow_handle(run.workflow_id, run_id=run.run_id)
        expected = rehydrated((await stored.fetch_history()).events, proxy.store)
        assert list((await served.fetch_history()).events) == expected

    # The proxy's own count shows offloads that no history keeps (query results, heartbeats);
    # the store (this test's alone) holds the objects expected, and nothing else.
    assert proxy.metric("claimcheck_payloads_offloaded_total") >= outcome.objects
    assert len(proxy.store.keys()) == outcome.objects, proxy.store.keys()
