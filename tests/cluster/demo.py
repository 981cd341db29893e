"""`make demo-cluster`: the operator's story on the embedded node, each step printed. run.sh has
brought the node up and runs this inside its network namespace."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from temporalio.client import Client

import story
from claims import describe, is_reference, iter_payloads


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


async def history_summary(temporal: str, workflow_id: str) -> None:
    client = await Client.connect(temporal)
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    payloads = [p for event in history.events for _, p in iter_payloads(event)]
    references = [p for p in payloads if is_reference(p)]
    size = sum(event.ByteSize() for event in history.events)
    info = (await describe(client, workflow_id)).workflow_execution_info
    print(f"    {len(history.events)} events, {size / 1024:.1f} KiB of history; "
          f"{len(references)} of {len(payloads)} payloads are references")
    print(f"    the server counts {info.external_payload_count} external payloads, "
          f"{info.external_payload_size_bytes / story.MiB:.1f} MiB kept out of history")


def main() -> None:
    node = story.node_env()
    kube = story.Kube(node)
    images = story.push_images(node)
    step(f"images built and pushed to the node's registry\n    {images['operator']}\n    {images['worker']}")

    step("helm install claimcheck charts/claimcheck (namespace under restricted Pod Security)")
    started = time.monotonic()
    pods = story.install_operator(kube, images)
    print(f"    {len(pods)} replicas Ready in {time.monotonic() - started:.1f} s; "
          f"{story.lease_holder(kube)} holds the Lease")

    with tempfile.TemporaryDirectory() as logs, story.temporal_server(node, Path(logs)) as temporal:
        step(f"a PayloadStoragePolicy on MinIO, Temporal at {temporal}")
        policy = story.apply_policy(kube, node, temporal, threshold=256 * 1024)
        status = policy["status"]
        print(f"    Ready (probe passed; effective TTL {status.get('effectiveTTL')}, bucket rule installed)")

        step("a Go worker Deployment labelled claimcheck.dev/policy=payloads")
        pod = story.deploy_worker(kube, images["worker"])
        sidecar = pod["status"]["initContainerStatuses"][0]
        worker = pod["status"]["containerStatuses"][0]
        print(f"    pod {pod['metadata']['name']}: injected {sidecar['name']} started "
              f"{story.started_at(sidecar).time()}, worker started {story.started_at(worker).time()}")

        step("a workflow passing 10 MiB through 3 activities, through the sidecar")
        verdict = story.run_workflow(kube, pod, "demo-ten-mib", 10 * story.MiB)
        print(f"    result SHA-256 matches ({verdict['seconds']:.1f} s)")

        step("the history, read straight from the server")
        asyncio.run(history_summary(temporal, "demo-ten-mib"))
    print("\nDone: the node is torn down now.")


if __name__ == "__main__":
    main()
