"""The proxy fails closed: a payload it cannot vouch for is never handed on.

- a stored object whose bytes changed -> DATA_LOSS naming the object, until it is restored;
- the store gone (directory renamed away) -> UNAVAILABLE for writes and reads, until it is back;
- a reference pointing outside the store or into another namespace -> PERMISSION_DENIED.

The workflow under test (VerifiedInput) checks the SHA-256 of its input and fails the run if it
is wrong, so a proxy that handed over wrong bytes would show as a failed workflow, not a pass.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import NamedTuple
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload, Payloads, WorkflowExecution, WorkflowType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    GetWorkflowExecutionHistoryRequest,
    StartWorkflowExecutionRequest,
)
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from claims import checked_run_references, describe, history_references, reference_payload
from harness import NAMESPACE, THRESHOLD, MiB, Proxy, connect, unique, worker
from workflows import ActivityOnOtherQueue, VerifiedInput, blob, digest

SIZE = 3 * MiB
# A short workflow task timeout: a task whose poll response the proxy refused is handed out
# again after it, so the test sees the retries (and the recovery) within seconds.
TASK_TIMEOUT = timedelta(seconds=2)
WAIT = 60  # seconds
OTHER_NAMESPACE = "claimcheck-other"


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
    """StartWorkflowExecution with hand-made input payloads and no client-side retry."""
    request = StartWorkflowExecutionRequest(
        namespace=NAMESPACE,
        workflow_id=workflow_id,
        workflow_type=WorkflowType(name="VerifiedInput"),
        task_queue=TaskQueue(name=workflow_id),
        input=Payloads(payloads=payloads),
        request_id=str(uuid.uuid4()),
    )
    return client.workflow_service.start_workflow_execution(request, retry=False)


async def producer_and_consumer(
    proxy_factory: Callable[[Path], Proxy], store: Path
) -> tuple[Client, Client]:
    """Two proxies on one store, as two worker pods have. The consumer has never seen the
    objects the producer wrote, so nothing it could cache hides what happens to the store."""
    producer, consumer = proxy_factory(store), proxy_factory(store)
    return await connect(producer.address), await connect(consumer.address)


async def start_verified(client: Client, seed: int):
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


def flip_a_byte(data: bytes) -> bytes:
    """Same size, one byte changed in the middle: only the hash can tell."""
    changed = bytearray(data)
    changed[len(changed) // 2] ^= 0xFF
    return bytes(changed)


async def test_corrupted_object_is_data_loss_until_restored(
    proxy_factory: Callable[[Path], Proxy], tmp_path: Path, direct_client: Client
) -> None:
    store = tmp_path / "store"
    producer_client, consumer_client = await producer_and_consumer(proxy_factory, store)
    handle, expected = await start_verified(producer_client, seed=21)
    (ref,) = await checked_run_references(direct_client, handle.id, None, store)
    stored = store / ref.key
    original = stored.read_bytes()
    stored.write_bytes(flip_a_byte(original))

    err = await rpc_error(read_history(consumer_client, handle.id))
    assert err.status == RPCStatusCode.DATA_LOSS, err
    assert ref.key in err.message

    async with worker(consumer_client, handle.id):
        # The proxy refused the worker's task and failed it on the server, naming the object.
        await wait_for_task_failure(direct_client, handle.id, "DataLoss", "integrity", ref.key)
        stored.write_bytes(original)
        assert await asyncio.wait_for(handle.result(), WAIT) == expected


async def test_missing_store_is_unavailable_until_back(
    proxy_factory: Callable[[Path], Proxy], tmp_path: Path, direct_client: Client
) -> None:
    store = tmp_path / "store"
    producer_client, consumer_client = await producer_and_consumer(proxy_factory, store)
    handle, expected = await start_verified(producer_client, seed=22)
    (ref,) = await checked_run_references(direct_client, handle.id, None, store)
    away = store.rename(tmp_path / "store-away")

    # Writing fails closed: no reference to an object that was never stored reaches the server.
    unstored = unique("unstored")
    data = blob(23, SIZE)
    payloads = await consumer_client.data_converter.encode([data, digest(data)])
    err = await rpc_error(start_raw(consumer_client, unstored, payloads))
    assert err.status == RPCStatusCode.UNAVAILABLE, err
    err = await rpc_error(describe(direct_client, unstored))
    assert err.status == RPCStatusCode.NOT_FOUND, err

    err = await rpc_error(read_history(consumer_client, handle.id))
    assert err.status == RPCStatusCode.UNAVAILABLE, err

    async with worker(consumer_client, handle.id):
        await wait_for_task_failure(direct_client, handle.id, "Unavailable", ref.key)
        away.rename(store)
        assert await asyncio.wait_for(handle.result(), WAIT) == expected


async def test_corrupted_activity_input_fails_the_activity_attempt(
    proxy_factory: Callable[[Path], Proxy], tmp_path: Path, direct_client: Client
) -> None:
    """The activity's own attempt fails, naming the object, and succeeds once it is restored."""
    store = tmp_path / "store"
    producer_client, consumer_client = await producer_and_consumer(proxy_factory, store)
    workflow_id = unique("activity-input")
    activity_queue = f"{workflow_id}-activities"
    data = blob(41, SIZE)
    async with worker(producer_client, workflow_id):
        handle = await producer_client.start_workflow(
            ActivityOnOtherQueue.run,
            args=[41, SIZE, activity_queue],
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
    stored = store / ref.key
    original = stored.read_bytes()
    stored.write_bytes(flip_a_byte(original))

    async with worker(consumer_client, activity_queue), worker(consumer_client, workflow_id):
        async with asyncio.timeout(WAIT):
            while True:
                pending = (await describe(direct_client, workflow_id)).pending_activities
                message = pending[0].last_failure.message if pending else ""
                if "DataLoss" in message and ref.key in message:
                    break
                await asyncio.sleep(0.2)
        stored.write_bytes(original)
        assert await asyncio.wait_for(handle.result(), WAIT) == digest(data)


def plant(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# Keys a forged reference may carry, given the store and the planted object's hash. Each
# names a real, intact object with the right hash and size, so only the proxy's check of
# where the key points can refuse it.
FORGED_KEYS: dict[str, Callable[[Path, str], str]] = {
    "other-namespace": lambda store, h: f"v0/ns/{OTHER_NAMESPACE}/d/sha256/{h}",
    "dot-dot-into-other-namespace": lambda store, h: (
        f"v0/ns/{NAMESPACE}/../{OTHER_NAMESPACE}/d/sha256/{h}"
    ),
    "dot-dot-out-of-the-store": lambda store, h: f"../outside/{h}",
    "absolute-path": lambda store, h: str(store.parent / "outside" / h),
}


class Planted(NamedTuple):
    original: Payload
    data: bytes  # the stored object: the serialized original
    hash_value: str

    def reference(self, key: str) -> Payload:
        return reference_payload(key, self.hash_value, len(self.data))


@pytest.fixture
def planted(proxy: Proxy) -> Planted:
    """A valid stored object, planted in another namespace and outside the store."""
    original = Payload(metadata={"encoding": b"binary/plain"}, data=blob(31, THRESHOLD))
    data = original.SerializeToString()
    hash_value = hashlib.sha256(data).hexdigest()
    plant(proxy.store / f"v0/ns/{OTHER_NAMESPACE}/d/sha256/{hash_value}", data)
    plant(proxy.store.parent / "outside" / hash_value, data)
    return Planted(original, data, hash_value)


@pytest.mark.parametrize("forged", FORGED_KEYS)
async def test_forged_reference_is_permission_denied(
    forged: str, planted: Planted, proxy: Proxy, proxy_client: Client, direct_client: Client
) -> None:
    key = FORGED_KEYS[forged](proxy.store, planted.hash_value)
    workflow_id = unique(forged)
    # Written straight to the server, as a compromised or buggy client could.
    await start_raw(direct_client, workflow_id, [planted.reference(key)])

    err = await rpc_error(read_history(proxy_client, workflow_id))
    assert err.status == RPCStatusCode.PERMISSION_DENIED, err
    assert key in err.message


async def test_well_formed_reference_is_rehydrated(
    planted: Planted, proxy: Proxy, proxy_client: Client, direct_client: Client
) -> None:
    """The control for the forged ones: the same object under this namespace is served."""
    key = f"v0/ns/{NAMESPACE}/d/sha256/{planted.hash_value}"
    plant(proxy.store / key, planted.data)
    workflow_id = unique("well-formed")
    await start_raw(direct_client, workflow_id, [planted.reference(key)])

    history = await read_history(proxy_client, workflow_id)
    started = history.history.events[0].workflow_execution_started_event_attributes
    assert list(started.input.payloads) == [planted.original]
