"""The proxy and an SDK using External Storage with the same driver read each other's references.

So a team can move between the SDK's own offloading and the proxy, in either direction, with
workflows in flight.
"""

from __future__ import annotations

import asyncio

from temporalio.client import Client

from claims import checked_run_references
from harness import DevServer, MiB, Proxy, connect, unique, worker
from sdk_file_driver import data_converter
from workflows import EchoReversed, blob, digest

SIZE = 3 * MiB
WAIT = 60  # seconds


async def test_sdk_reads_what_the_proxy_offloaded(
    proxy: Proxy, proxy_client: Client, direct_client: Client, dev_server: DevServer
) -> None:
    data = blob(41, SIZE)
    workflow_id = unique("proxy-to-sdk")
    async with worker(proxy_client, workflow_id):
        await asyncio.wait_for(
            proxy_client.execute_workflow(
                EchoReversed.run, data, id=workflow_id, task_queue=workflow_id
            ),
            WAIT,
        )
    refs = await checked_run_references(direct_client, workflow_id, None, proxy.store)
    assert sorted(ref.event for ref in refs) == [
        "WORKFLOW_EXECUTION_COMPLETED",
        "WORKFLOW_EXECUTION_STARTED",
    ]
    # Straight to the server, no proxy: the SDK resolves the references with its own driver.
    sdk_client = await connect(dev_server.address, data_converter=data_converter(proxy.store))
    result = await asyncio.wait_for(sdk_client.get_workflow_handle(workflow_id).result(), WAIT)
    assert digest(result) == digest(data[::-1])


async def test_proxy_rehydrates_what_the_sdk_offloaded(
    proxy: Proxy, proxy_client: Client, direct_client: Client, dev_server: DevServer
) -> None:
    sdk_client = await connect(dev_server.address, data_converter=data_converter(proxy.store))
    data = blob(42, SIZE)
    workflow_id = unique("sdk-to-proxy")
    await sdk_client.start_workflow(EchoReversed.run, data, id=workflow_id, task_queue=workflow_id)
    # The SDK wrote the input's reference (the same checks as for the proxy's own).
    (ref,) = await checked_run_references(direct_client, workflow_id, None, proxy.store)
    assert ref.event == "WORKFLOW_EXECUTION_STARTED"

    # A worker without external storage, through the proxy, gets the input rehydrated.
    async with worker(proxy_client, workflow_id):
        handle = proxy_client.get_workflow_handle(workflow_id)
        result = await asyncio.wait_for(handle.result(), WAIT)
    assert digest(result) == digest(data[::-1])
    assert proxy.metric("claimcheck_payloads_fetched_total") >= 1
