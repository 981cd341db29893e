"""The proxy fails closed: a payload it cannot vouch for is never handed on.

- a stored object whose bytes changed, or that is gone -> DATA_LOSS naming the object, until it
  is restored (on every kind of store);
- the store gone (directory renamed away) -> UNAVAILABLE for writes and reads, until it is back;
- a reference pointing outside the store or into another namespace -> PERMISSION_DENIED.

The faults of cloud stores (credentials, bucket, server) are in test_store_faults.py.

The workflow under test (VerifiedInput) checks the SHA-256 of its input and fails the run if it
is wrong, so a proxy that handed over wrong bytes would show as a failed workflow, not a pass.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import NamedTuple

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.service import RPCStatusCode

from claims import checked_run_references, describe, reference_payload
from failures import (
    WAIT,
    producer_and_consumer,
    read_history,
    rpc_error,
    schedule_activity,
    start_raw,
    start_verified,
    verified_input,
    wait_for_activity_failure,
    wait_for_task_failure,
)
from harness import NAMESPACE, THRESHOLD, ProxyFactory, connect, unique, worker
from stores import CLOUD_KINDS, FileStore, Store
from workflows import blob

OTHER_NAMESPACE = "claimcheck-other"
ALL_KINDS = ("file", *CLOUD_KINDS)


def flip_a_byte(data: bytes) -> bytes:
    """Same size, one byte changed in the middle: only the hash can tell."""
    changed = bytearray(data)
    changed[len(changed) // 2] ^= 0xFF
    return bytes(changed)


@pytest.mark.parametrize("store", ALL_KINDS, indirect=True)
async def test_corrupted_object_is_data_loss_until_restored(
    store: Store, proxy_factory: ProxyFactory, direct_client: Client
) -> None:
    producer_client, consumer_client = await producer_and_consumer(proxy_factory, store)
    handle, expected = await start_verified(producer_client, seed=21)
    (ref,) = await checked_run_references(direct_client, handle.id, None, store)
    original = store.read(ref.key)
    store.write(ref.key, flip_a_byte(original))

    err = await rpc_error(read_history(consumer_client, handle.id))
    assert err.status == RPCStatusCode.DATA_LOSS, err
    assert store.object_name(ref.key) in err.message

    async with worker(consumer_client, handle.id):
        # The proxy refused the worker's task and failed it on the server, naming the object.
        await wait_for_task_failure(
            direct_client, handle.id, "DataLoss", "integrity", store.object_name(ref.key)
        )
        store.write(ref.key, original)
        assert await asyncio.wait_for(handle.result(), WAIT) == expected


@pytest.mark.parametrize("store", ALL_KINDS, indirect=True)
async def test_missing_object_is_data_loss_until_restored(
    store: Store, proxy_factory: ProxyFactory, direct_client: Client
) -> None:
    producer_client, consumer_client = await producer_and_consumer(proxy_factory, store)
    handle, _ = await start_verified(producer_client, seed=24)
    (ref,) = await checked_run_references(direct_client, handle.id, None, store)
    original = store.read(ref.key)
    store.delete(ref.key)

    err = await rpc_error(read_history(consumer_client, handle.id))
    assert err.status == RPCStatusCode.DATA_LOSS, err
    assert f"{store.object_name(ref.key)} does not exist" in err.message

    store.write(ref.key, original)
    history = await read_history(consumer_client, handle.id)
    started = history.history.events[0].workflow_execution_started_event_attributes
    assert started.input.payloads[0] == Payload.FromString(original)


async def test_missing_store_is_unavailable_until_back(
    store: FileStore, proxy_factory: ProxyFactory, direct_client: Client
) -> None:
    producer_client, consumer_client = await producer_and_consumer(proxy_factory, store)
    handle, expected = await start_verified(producer_client, seed=22)
    (ref,) = await checked_run_references(direct_client, handle.id, None, store)
    away = store.root.rename(store.root.with_name("store-away"))

    # Writing fails closed: no reference to an object that was never stored reaches the server.
    unstored = unique("unstored")
    payloads = await verified_input(consumer_client, seed=23)
    err = await rpc_error(start_raw(consumer_client, unstored, payloads))
    assert err.status == RPCStatusCode.UNAVAILABLE, err
    err = await rpc_error(describe(direct_client, unstored))
    assert err.status == RPCStatusCode.NOT_FOUND, err

    err = await rpc_error(read_history(consumer_client, handle.id))
    assert err.status == RPCStatusCode.UNAVAILABLE, err

    async with worker(consumer_client, handle.id):
        await wait_for_task_failure(direct_client, handle.id, "Unavailable", ref.key)
        away.rename(store.root)
        assert await asyncio.wait_for(handle.result(), WAIT) == expected


async def test_corrupted_activity_input_fails_the_activity_attempt(
    store: Store, proxy_factory: ProxyFactory, direct_client: Client
) -> None:
    """The activity's own attempt fails, naming the object, and succeeds once it is restored."""
    producer_client, consumer_client = await producer_and_consumer(proxy_factory, store)
    scheduled = await schedule_activity(producer_client, direct_client, store, seed=41)
    key = scheduled.ref.key
    original = store.read(key)
    store.write(key, flip_a_byte(original))

    workflow_id = scheduled.handle.id
    async with worker(consumer_client, scheduled.activity_queue), worker(consumer_client, workflow_id):
        await wait_for_activity_failure(direct_client, workflow_id, "DataLoss", key)
        store.write(key, original)
        assert await asyncio.wait_for(scheduled.handle.result(), WAIT) == scheduled.expected


# Keys a forged reference may carry, given the store and the planted object's hash. Each
# names a real, intact object with the right hash and size (planted there by the test), so
# only the proxy's check of where the key points can refuse it. One per key layout the SDKs
# write (docs/interop.md), pointed at another namespace or at none.
FORGED_KEYS: dict[str, Callable[[FileStore, str], str]] = {
    "other-namespace": lambda store, h: f"v0/ns/{OTHER_NAMESPACE}/d/sha256/{h}",
    "other-namespace-run-scoped": lambda store, h: (
        f"v0/ns/{OTHER_NAMESPACE}/wt/Order/wi/order-1/ri/null/d/sha256/{h}"
    ),
    "other-namespace-activity-scoped": lambda store, h: (
        f"v0/ns/{OTHER_NAMESPACE}/at/Charge/ai/1/ri/null/d/sha256/{h}"
    ),
    "namespace-sharing-a-prefix": lambda store, h: f"v0/ns/{NAMESPACE}x/d/sha256/{h}",
    "no-namespace-segment": lambda store, h: f"v0/d/sha256/{h}",
    "dot-dot-into-other-namespace": lambda store, h: (
        f"v0/ns/{NAMESPACE}/../{OTHER_NAMESPACE}/d/sha256/{h}"
    ),
    "dot-dot-out-of-the-store": lambda store, h: f"../outside/{h}",
    "absolute-path": lambda store, h: str(store.root.parent / "outside" / h),
}

# Keys of this namespace, in each layout, that a reference may carry: served.
WELL_FORMED_KEYS: dict[str, Callable[[str], str]] = {
    "namespace-scoped": lambda h: f"v0/ns/{NAMESPACE}/d/sha256/{h}",
    "run-scoped": lambda h: f"v0/ns/{NAMESPACE}/wt/Order%20Flow/wi/order%2F1/ri/null/d/sha256/{h}",
    "activity-scoped": lambda h: f"v0/ns/{NAMESPACE}/at/Charge/ai/1/ri/null/d/sha256/{h}",
    # As the TypeScript SDK writes a completion by task token.
    "run-scoped-all-null": lambda h: f"v0/ns/{NAMESPACE}/wt/null/wi/null/ri/null/d/sha256/{h}",
}


class Planted(NamedTuple):
    original: Payload
    data: bytes  # the stored object: the serialized original
    hash_value: str

    def reference(self, store: Store, key: str) -> Payload:
        return reference_payload(store, key, self.hash_value, len(self.data))


@pytest.fixture
def planted(store: FileStore) -> Planted:
    """A valid stored object, planted in another namespace and outside the store."""
    original = Payload(metadata={"encoding": b"binary/plain"}, data=blob(31, THRESHOLD))
    data = original.SerializeToString()
    hash_value = hashlib.sha256(data).hexdigest()
    store.write(f"v0/ns/{OTHER_NAMESPACE}/d/sha256/{hash_value}", data)
    FileStore(store.root.parent / "outside").write(hash_value, data)
    return Planted(original, data, hash_value)


@pytest.mark.parametrize("forged", FORGED_KEYS)
async def test_forged_reference_is_permission_denied(
    forged: str, planted: Planted, store: FileStore, proxy_client: Client, direct_client: Client
) -> None:
    key = FORGED_KEYS[forged](store, planted.hash_value)
    if not key.startswith(("/", "..")):
        store.write(key, planted.data)
    workflow_id = unique(forged)
    # Written straight to the server, as a compromised or buggy client could.
    await start_raw(direct_client, workflow_id, [planted.reference(store, key)])

    err = await rpc_error(read_history(proxy_client, workflow_id))
    assert err.status == RPCStatusCode.PERMISSION_DENIED, err
    assert key in err.message


@pytest.mark.parametrize("layout", WELL_FORMED_KEYS)
async def test_well_formed_reference_is_rehydrated(
    layout: str, planted: Planted, store: FileStore, proxy_client: Client, direct_client: Client
) -> None:
    """The control for the forged ones: the same object under this namespace is served."""
    key = WELL_FORMED_KEYS[layout](planted.hash_value)
    await assert_served(planted, store, proxy_client, direct_client, key)


async def test_a_key_without_namespace_is_served_where_the_store_accepts_it(
    planted: Planted, store: FileStore, proxy_factory: ProxyFactory, direct_client: Client
) -> None:
    """`v0/d/sha256/{hex}` (an SDK's payload of no namespace) is served by a proxy whose store
    accepts unscoped keys, and only when the key is the claim's own hash."""
    accepting = proxy_factory(store, args=("--accept-unscoped-keys",))
    client = await connect(accepting.address)
    await assert_served(planted, store, client, direct_client, f"v0/d/sha256/{planted.hash_value}")

    other = hashlib.sha256(b"another object").hexdigest()
    store.write(f"v0/d/sha256/{other}", planted.data)
    workflow_id = unique("unscoped-other-hash")
    await start_raw(direct_client, workflow_id, [planted.reference(store, f"v0/d/sha256/{other}")])
    err = await rpc_error(read_history(client, workflow_id))
    assert err.status == RPCStatusCode.PERMISSION_DENIED, err


async def assert_served(
    planted: Planted, store: FileStore, client: Client, direct_client: Client, key: str
) -> None:
    store.write(key, planted.data)
    workflow_id = unique("well-formed")
    await start_raw(direct_client, workflow_id, [planted.reference(store, key)])

    history = await read_history(client, workflow_id)
    started = history.history.events[0].workflow_execution_started_event_attributes
    assert list(started.input.payloads) == [planted.original]
