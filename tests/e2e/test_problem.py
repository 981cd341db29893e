"""The problem claimcheck solves, shown against the real server with no proxy in between.

A workflow that sends 3 MiB to an activity never completes: the SDK refuses the payload and
retries the workflow task forever, or, with the SDK's limit turned off, the server refuses it
and terminates the workflow. A client cannot even start a workflow with a 3 MiB input.
"""

from __future__ import annotations

import asyncio

import pytest
from temporalio.api.enums.v1 import WorkflowTaskFailedCause as Cause
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import TerminatedError
from temporalio.service import RPCError, RPCStatusCode

from claims import describe
from harness import MiB, unique, worker
from workflows import ActivityRoundTrip, EchoReversed, blob

SIZE = 3 * MiB
WAIT = 20  # seconds; each failure below shows within a few


async def first_workflow_task_failure(client: Client, workflow_id: str):
    """The first WorkflowTaskFailed event's attributes, waiting for it to be written."""
    handle = client.get_workflow_handle(workflow_id)
    async with asyncio.timeout(WAIT):
        while True:
            async for event in handle.fetch_history_events():
                if event.HasField("workflow_task_failed_event_attributes"):
                    return event.workflow_task_failed_event_attributes
            await asyncio.sleep(0.2)


async def test_server_refuses_large_workflow_input(direct_client: Client) -> None:
    # The Python client sends it (it only warns); the server answers with its blob size limit.
    with pytest.raises(RPCError) as err:
        await direct_client.start_workflow(
            EchoReversed.run, blob(1, SIZE), id=unique("input"), task_queue=unique("tq")
        )
    assert err.value.status == RPCStatusCode.INVALID_ARGUMENT
    assert "size exceeds limit" in err.value.message


async def test_sdk_limit_fails_the_workflow_task_forever(direct_client: Client) -> None:
    workflow_id = task_queue = unique("sdk-limit")
    async with worker(direct_client, task_queue, disable_payload_error_limit=False):
        handle = await direct_client.start_workflow(
            ActivityRoundTrip.run, args=[1, SIZE], id=workflow_id, task_queue=task_queue
        )
        failure = await first_workflow_task_failure(direct_client, workflow_id)
        assert failure.cause == Cause.WORKFLOW_TASK_FAILED_CAUSE_PAYLOADS_TOO_LARGE
        assert "TMPRL1103" in failure.failure.message
        # The task is retried, and fails the same way each time: the run never moves on.
        async with asyncio.timeout(WAIT):
            while (await describe(direct_client, workflow_id)).pending_workflow_task.attempt < 3:
                await asyncio.sleep(0.2)
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        await handle.terminate("test done")


async def test_server_terminates_the_workflow_when_the_sdk_limit_is_off(
    direct_client: Client,
) -> None:
    workflow_id = task_queue = unique("server-limit")
    async with worker(direct_client, task_queue, disable_payload_error_limit=True):
        handle = await direct_client.start_workflow(
            ActivityRoundTrip.run, args=[1, SIZE], id=workflow_id, task_queue=task_queue
        )
        with pytest.raises(WorkflowFailureError) as err:
            await asyncio.wait_for(handle.result(), WAIT)
    assert isinstance(err.value.cause, TerminatedError)
    assert "exceeds size limit" in str(err.value.cause)
    failure = await first_workflow_task_failure(direct_client, workflow_id)
    assert failure.cause == Cause.WORKFLOW_TASK_FAILED_CAUSE_BAD_SCHEDULE_ACTIVITY_ATTRIBUTES
