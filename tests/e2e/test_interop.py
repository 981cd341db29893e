"""The proxy and an SDK using External Storage with the same driver read each other's references.

So a team can move between the SDK's own offloading and the proxy, in either direction, with
workflows in flight. On S3 and GCS the SDK side is the SDK's own driver (aws.s3driver,
gcp.gcsdriver); on the filesystem, a driver of the same layout written for the tests. The SDK
writes its keys at the bucket's root (`v0/...`), so the proxy's prefix is empty here.
"""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import Client

from claims import checked_run_references
from harness import DevServer, MiB, Proxy, connect, unique, worker
from sdk_drivers import sdk_data_converter
from stores import Store, StoreFactory
from workflows import MadeOnOtherQueue, VerifiedInput, blob, digest

SIZE = 5 * MiB
WAIT = 60  # seconds
SDK_KINDS = ("file", "s3", "gcs")


@pytest.fixture(params=SDK_KINDS)
def store(request: pytest.FixtureRequest, store_factory: StoreFactory) -> Store:
    return store_factory(request.param, prefix="")


async def test_sdk_reads_what_the_proxy_offloaded(
    store: Store, proxy_client: Client, direct_client: Client, dev_server: DevServer
) -> None:
    """An activity behind the proxy returns a large result; the workflow runs in a worker with
    no proxy, whose SDK driver reads the proxy's reference."""
    workflow_id = unique("proxy-to-sdk")
    activity_queue = f"{workflow_id}-activities"
    async with sdk_data_converter(store) as converter:
        sdk_client = await connect(dev_server.address, data_converter=converter)
        async with worker(proxy_client, activity_queue), worker(sdk_client, workflow_id):
            result = await asyncio.wait_for(
                sdk_client.execute_workflow(
                    MadeOnOtherQueue.run,
                    args=[43, SIZE, activity_queue],
                    id=workflow_id,
                    task_queue=workflow_id,
                ),
                WAIT,
            )
    assert result == digest(blob(43, SIZE))
    (ref,) = await checked_run_references(direct_client, workflow_id, None, store)
    assert ref.event == "ACTIVITY_TASK_COMPLETED"


async def test_proxy_rehydrates_what_the_sdk_offloaded(
    store: Store, proxy: Proxy, proxy_client: Client, direct_client: Client, dev_server: DevServer
) -> None:
    """A client with the SDK driver and no proxy starts a workflow with a large input; a worker
    without external storage, behind the proxy, gets the original input (VerifiedInput checks
    its SHA-256)."""
    data = blob(42, SIZE)
    workflow_id = unique("sdk-to-proxy")
    async with sdk_data_converter(store) as converter:
        sdk_client = await connect(dev_server.address, data_converter=converter)
        await sdk_client.start_workflow(
            VerifiedInput.run, args=[data, digest(data)], id=workflow_id, task_queue=workflow_id
        )
    # The SDK wrote the input's reference (the same checks as for the proxy's own).
    (ref,) = await checked_run_references(direct_client, workflow_id, None, store)
    assert ref.event == "WORKFLOW_EXECUTION_STARTED"

    async with worker(proxy_client, workflow_id):
        handle = proxy_client.get_workflow_handle(workflow_id)
        assert await asyncio.wait_for(handle.result(), WAIT) == digest(data)
    assert proxy.metric("claimcheck_payloads_fetched_total") >= 1
