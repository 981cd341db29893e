"""What the fail-closed tests share: raw calls with no client-side retry (so the first answer
is the one checked), workflows set up to fail fast, and waits for the failures the proxy
reports in the server's history."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from temporalio.api.common.v1 import Payload, Payloads, WorkflowExecution, WorkflowType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    GetWorkflowExecutionHistoryRequest,
    StartWorkflowExecutionRequest,
)
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError

from claims import Reference, describe, history_references
from harness import NAMESPACE, MiB, Proxy, ProxyFactory, connect, unique, worker
from stores import Store
from workflows import ActivityOnOtherQueue, VerifiedInput, blob, digest

SIZE = 3 * MiB
# A short workflow task timeout: a task whose poll response the proxy refused is handed out
# again after it, so the test sees the retries (and the recovery) within seconds.
TASK_TIMEOUT = timedelta(seconds=2)
WAIT = 60  # seconds


async def rpc_error(call: Awaitable) -> RPCError:
    with pytest.raises(RPCError) as err:
        await call
    return err.value


def read_history(client: Client, workflow_id: str) -> Awaitable:
    """GetWorkflowExecutionHistory with no client-side retry: the first answer is checked."""
    request = GetWorkflowExecutionHistoryRequest(
        namespace=NAMESPACE, execution=WorkflowExecution(workflow_id=workflow_id)
    )
    return client.workflow_service.get_workflow_execution_history(request, retry=False)


def start_raw(client: Client, workflow_id: str, payloads: list[Payload]) -> Awaitable:
    """StartWorkflowExecution of VerifiedInput with hand-made input payloads, no client retry."""
    request = StartWorkflowExecutionRequest(
        namespace=NAMESPACE,
        workflow_id=workflow_id,
        workflow_type=WorkflowType(name="VerifiedInput"),
        task_queue=TaskQueue(name=workflow_id),
        input=Payloads(payloads=payloads),
        request_id=str(uuid.uuid4()),
    )
    return client.workflow_service.start_workflow_execution(request, retry=False)


async def verified_input(client: Client, seed: int) -> list[Payload]:
    """VerifiedInput's arguments, encoded: a large input and its digest."""
    data = blob(seed, SIZE)
    return await client.data_converter.encode([data, digest(data)])


async def producer_and_consumer(
    proxy_factory: ProxyFactory, store: Store
) -> tuple[Client, Client]:
    """Two proxies on one store, as two worker pods have. The consumer has never seen the
    objects the producer wrote, so nothing it could cache hides what happens to the store."""
    producer, consumer = proxy_factory(store), proxy_factory(store)
    return await connect(producer.address), await connect(consumer.address)


async def start_verified(client: Client, seed: int) -> tuple[WorkflowHandle, str]:
    """Starts VerifiedInput with a large input; returns its handle and the expected digest."""
    data = blob(seed, SIZE)
    workflow_id = unique(f"verified-{seed}")
    handle = await client.start_workflow(
        VerifiedInput.run,
        args=[data, digest(data)],
        id=workflow_id,
        task_queue=workflow_id,
        task_timeout=TASK_TIMEOUT,
        execution_timeout=timedelta(seconds=2 * WAIT),
    )
    return handle, digest(data)


@dataclass
class ScheduledActivity:
    """A workflow waiting on an activity whose large input is stored, on a queue no worker
    polls yet: a test can act on the stored object between scheduling and delivery."""

    handle: WorkflowHandle
    activity_queue: str
    ref: Reference  # the activity input's
    expected: str  # the workflow's result once the activity got its input intact


async def schedule_activity(
    producer_client: Client, direct_client: Client, store: Store, seed: int
) -> ScheduledActivity:
    workflow_id = unique(f"activity-input-{seed}")
    activity_queue = f"{workflow_id}-activities"
    async with worker(producer_client, workflow_id):
        handle = await producer_client.start_workflow(
            ActivityOnOtherQueue.run,
            args=[seed, SIZE, activity_queue],
            id=workflow_id,
            task_queue=workflow_id,
            execution_timeout=timedelta(seconds=2 * WAIT),
        )
        stored_history = direct_client.get_workflow_handle(workflow_id)
        async with asyncio.timeout(WAIT):
            while not (refs := history_references((await stored_history.fetch_history()).events, store)):
                await asyncio.sleep(0.2)
    (ref,) = refs
    assert ref.event == "ACTIVITY_TASK_SCHEDULED"
    return ScheduledActivity(handle, activity_queue, ref, digest(blob(seed, SIZE)))


async def wait_for_task_failure(direct_client: Client, workflow_id: str, *terms: str) -> str:
    """Waits until the server's history shows the workflow task failed by the proxy with a
    message holding every term (the status and the object), and returns that message. The
    run must still be running: the task is retried, not the run failed on a wrong input."""
    handle = direct_client.get_workflow_handle(workflow_id)
    async with asyncio.timeout(WAIT):
        while True:
            async for event in handle.fetch_history_events():
                if event.HasField("workflow_task_failed_event_attributes"):
                    failure = event.workflow_task_failed_event_attributes.failure
                    if all(term in failure.message for term in terms):
                        description = await describe(direct_client, workflow_id)
                        status = description.workflow_execution_info.status
                        assert status == WorkflowExecutionStatus.RUNNING.value
                        return failure.message
            await asyncio.sleep(0.2)


async def wait_for_activity_failure(direct_client: Client, workflow_id: str, *terms: str) -> str:
    """Waits until the workflow's pending activity shows a last failure with every term (the
    proxy failed the attempt, naming the object), and returns its message."""
    async with asyncio.timeout(WAIT):
        while True:
            pending = (await describe(direct_client, workflow_id)).pending_activities
            message = pending[0].last_failure.message if pending else ""
            if all(term in message for term in terms):
                return message
            await asyncio.sleep(0.2)


def logged(proxy: Proxy, *terms: str) -> str:
    """The first line of the proxy's log holding every term."""
    lines = [line for line in proxy.process.log_text().splitlines() if all(t in line for t in terms)]
    assert lines, f"no line of the proxy log holds {terms}"
    return lines[0]
