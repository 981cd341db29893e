"""A cloud store that fails: the proxy answers UNAVAILABLE naming the object (the bucket and the
key), logs it, never logs a secret, and the workflow completes once the fault is fixed.

- wrong credentials -> a new proxy with the right ones (as a restarted pod) takes over;
- a bucket that does not exist -> it is created;
- the store's server killed mid-run -> it comes back, on the same port and data.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import re
import signal

import pytest
from temporalio.client import Client
from temporalio.service import RPCStatusCode

from claims import checked_run_references, describe
from failures import (
    WAIT,
    logged,
    read_history,
    rpc_error,
    schedule_activity,
    start_raw,
    start_verified,
    verified_input,
    wait_for_activity_failure,
    wait_for_task_failure,
)
from harness import NAMESPACE, ProxyFactory, connect, unique, worker
from stores import Cluster, S3Store, StoreFactory

WRONG_SECRET = "wrong-secret-c0ffee"


@pytest.fixture
def store(store_factory: StoreFactory) -> S3Store:
    return store_factory("s3")


def assert_no_secret(text: str, store: S3Store) -> None:
    for secret in (store.cluster_env["S3_SECRET_ACCESS_KEY"], WRONG_SECRET):
        assert secret not in text, f"a secret was given away: {secret}"


async def refused_start(client: Client, direct_client: Client, store: S3Store) -> str:
    """Starts a workflow with a large input through a proxy that cannot store it: UNAVAILABLE
    naming the object it would have written, and no workflow on the server. Returns the
    object's name."""
    workflow_id = unique("refused")
    payloads = await verified_input(client, seed=51)
    hash_value = hashlib.sha256(payloads[0].SerializeToString()).hexdigest()
    err = await rpc_error(start_raw(client, workflow_id, payloads))
    assert err.status == RPCStatusCode.UNAVAILABLE, err
    namespace_objects = store.object_name(f"{store.prefix}v0/ns/{NAMESPACE}/")
    name = re.search(rf"{re.escape(namespace_objects)}\S*/{hash_value}\b", err.message)
    assert name, err.message
    assert_no_secret(err.message, store)
    err = await rpc_error(describe(direct_client, workflow_id))
    assert err.status == RPCStatusCode.NOT_FOUND, err
    return name.group()


async def test_wrong_credentials_are_unavailable_until_a_proxy_has_the_right_ones(
    store: S3Store, proxy_factory: ProxyFactory, direct_client: Client
) -> None:
    wrong = proxy_factory(store, env={"AWS_SECRET_ACCESS_KEY": WRONG_SECRET})
    wrong_client = await connect(wrong.address)
    name = await refused_start(wrong_client, direct_client, store)
    logged(wrong, "code=Unavailable", name)

    # A workflow whose input another pod stored: the worker's task fails, naming the object.
    other_pod = await connect(proxy_factory(store).address)
    handle, expected = await start_verified(other_pod, seed=52)
    (ref,) = await checked_run_references(direct_client, handle.id, None, store)
    name = store.object_name(ref.key)
    async with worker(wrong_client, handle.id):
        message = await wait_for_task_failure(direct_client, handle.id, "Unavailable", name)
    assert_no_secret(message, store)
    logged(wrong, "code=Unavailable", name)
    assert_no_secret(wrong.process.log_text(), store)

    # The pod restarted with the right credentials.
    fixed_client = await connect(proxy_factory(store).address)
    async with worker(fixed_client, handle.id):
        assert await asyncio.wait_for(handle.result(), WAIT) == expected


async def test_missing_bucket_is_unavailable_until_created(
    store: S3Store, proxy_factory: ProxyFactory, direct_client: Client
) -> None:
    store = dataclasses.replace(store, bucket=unique("missing"))
    proxy = proxy_factory(store)
    client = await connect(proxy.address)
    name = await refused_start(client, direct_client, store)
    assert f"bucket s3://{store.bucket}/ does not exist" in logged(proxy, "code=Unavailable", name)
    assert_no_secret(proxy.process.log_text(), store)

    store.create_bucket()
    handle, expected = await start_verified(client, seed=53)
    async with worker(client, handle.id):
        assert await asyncio.wait_for(handle.result(), WAIT) == expected
    # Its input went to the bucket now there, in the SDK's format.
    assert len(await checked_run_references(direct_client, handle.id, None, store)) == 1


async def test_store_gone_mid_run_is_unavailable_until_back(
    store: S3Store, cluster: Cluster, proxy_factory: ProxyFactory, direct_client: Client
) -> None:
    producer, consumer = proxy_factory(store), proxy_factory(store)
    scheduled = await schedule_activity(
        await connect(producer.address), direct_client, store, seed=54
    )
    name = store.object_name(scheduled.ref.key)
    workflow_id = scheduled.handle.id
    consumer_client = await connect(consumer.address)
    os.kill(int(cluster.env["MINIO_PID"]), signal.SIGKILL)
    async with worker(consumer_client, scheduled.activity_queue), worker(
        consumer_client, workflow_id
    ):
        try:
            err = await rpc_error(read_history(consumer_client, workflow_id))
            assert err.status == RPCStatusCode.UNAVAILABLE, err
            assert name in err.message
            # The activity's attempt fails, naming the object; the retries go on.
            message = await wait_for_activity_failure(
                direct_client, workflow_id, "Unavailable", name
            )
        finally:
            cluster.restart("minio")  # never left down, whatever happened
        assert await asyncio.wait_for(scheduled.handle.result(), WAIT) == scheduled.expected
    assert_no_secret(message, store)
    logged(consumer, "code=Unavailable", name)
    assert_no_secret(consumer.process.log_text(), store)
