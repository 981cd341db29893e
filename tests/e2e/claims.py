"""Reading what the proxy left in a workflow history: every Payload, and the claim references.

A reference is the Payload the Temporal SDKs' External Storage writes (metadata
encoding=json/protobuf, messageType=temporal.api.sdk.v1.ExternalStorageReference, data = the
proto-JSON of the reference, external_payloads = [size of the original Payload]). The stored
object is the serialized original Payload; its key is content-addressed by SHA-256. The claim
data depends on the store (stores.Store.claim): the S3 and GCS ones are the SDK drivers' own.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import Client

from harness import NAMESPACE, THRESHOLD
from stores import Store

REFERENCE_ENCODING = b"json/protobuf"
REFERENCE_TYPE = b"temporal.api.sdk.v1.ExternalStorageReference"
# The SDKs' first reference encoding; the proxy reads it but must never write it.
LEGACY_REFERENCE_ENCODING = b"json/external-storage-reference"


def iter_payloads(message: Message, path: str = "") -> Iterator[tuple[str, Payload]]:
    """Every Payload reachable from `message`, found through the protobuf descriptors.

    Walking the descriptors rather than a list of known fields means a payload in a field
    nobody thought of is still checked. (HistoryEvent reaches no google.protobuf.Any.)
    """
    for fd, value in message.ListFields():
        if fd.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        if fd.message_type.GetOptions().map_entry:
            if fd.message_type.fields_by_name["value"].type != FieldDescriptor.TYPE_MESSAGE:
                continue
            children = ((f"{path}.{fd.name}[{key!r}]", item) for key, item in value.items())
        elif fd.is_repeated:
            children = ((f"{path}.{fd.name}[{i}]", item) for i, item in enumerate(value))
        else:
            children = iter([(f"{path}.{fd.name}", value)])
        for child_path, child in children:
            if isinstance(child, Payload):
                yield child_path, child
            else:
                yield from iter_payloads(child, child_path)


def event_name(event: HistoryEvent) -> str:
    return EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")


@dataclass(frozen=True)
class Reference:
    event: str  # type of the history event holding it, e.g. ACTIVITY_TASK_COMPLETED
    path: str  # where in the event, for messages
    key: str
    hash_value: str
    size_bytes: int


def is_reference(payload: Payload) -> bool:
    return payload.metadata.get("messageType") == REFERENCE_TYPE


def parse_reference(payload: Payload, store: Store, event: str = "", path: str = "") -> Reference:
    """Parses a reference to an object of `store`, asserting it has exactly the SDK's shape."""
    assert payload.metadata.get("encoding") == REFERENCE_ENCODING, (path, dict(payload.metadata))
    body = json.loads(payload.data)
    # proto-JSON writes lowerCamelCase; parsers must also accept the original field names.
    driver = body.get("driverName", body.get("driver_name"))
    claim = body.get("claimData", body.get("claim_data"))
    assert driver == store.driver, (path, body)
    key, hash_value = claim.get(store.key_claim), claim.get("hash_value")
    assert claim == store.claim(key, hash_value), (path, body)
    assert len(payload.external_payloads) == 1, (path, payload.external_payloads)
    return Reference(
        event=event,
        path=path,
        key=key,
        hash_value=hash_value,
        size_bytes=payload.external_payloads[0].size_bytes,
    )


def verify_stored(ref: Reference, store: Store, namespace: str = NAMESPACE) -> Payload:
    """Checks the stored object against its reference and returns the original Payload."""
    assert ref.key.startswith(f"{store.prefix}v0/ns/{namespace}/"), ref
    assert ref.key.endswith(f"/d/sha256/{ref.hash_value}"), ref
    assert ".." not in ref.key.split("/"), ref
    data = store.read(ref.key)
    assert len(data) == ref.size_bytes, (ref, len(data))
    assert hashlib.sha256(data).hexdigest() == ref.hash_value, ref
    original = Payload.FromString(data)
    # Only payloads at or over the threshold are offloaded.
    assert original.ByteSize() == ref.size_bytes >= THRESHOLD, ref
    return original


def history_references(
    events: Iterable[HistoryEvent], store: Store, namespace: str = NAMESPACE
) -> list[Reference]:
    """All references in a history, each checked against the store; no large payload is left."""
    refs = []
    for event in events:
        name = event_name(event)
        for path, payload in iter_payloads(event):
            where = f"event {event.event_id} {name}{path}"
            assert payload.ByteSize() < THRESHOLD, f"{where}: {payload.ByteSize()} bytes inline"
            assert payload.metadata.get("encoding") != LEGACY_REFERENCE_ENCODING, where
            if is_reference(payload):
                ref = parse_reference(payload, store, name, path)
                verify_stored(ref, store, namespace)
                refs.append(ref)
    return refs


async def describe(client: Client, workflow_id: str, run_id: str | None = None):
    return await client.workflow_service.describe_workflow_execution(
        DescribeWorkflowExecutionRequest(
            namespace=NAMESPACE,
            execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id or ""),
        )
    )


async def checked_run_references(
    direct_client: Client, workflow_id: str, run_id: str | None, store: Store
) -> list[Reference]:
    """References of one run, read straight from the server, and the server's own accounting.

    The server sums the references' external_payloads into the execution info: an independent
    check that it saw offloaded payloads, not just small ones.
    """
    handle = direct_client.get_workflow_handle(workflow_id, run_id=run_id)
    history = await handle.fetch_history()
    refs = history_references(history.events, store)
    info = (await describe(direct_client, workflow_id, run_id)).workflow_execution_info
    assert info.external_payload_count == len(refs), (info.external_payload_count, refs)
    assert info.external_payload_size_bytes == sum(r.size_bytes for r in refs), refs
    return refs


def rehydrated(events: Iterable[HistoryEvent], store: Store) -> list[HistoryEvent]:
    """The history as the proxy must serve it: every reference replaced by its stored original."""
    copies = []
    for event in events:
        copy = HistoryEvent()
        copy.CopyFrom(event)
        for _, payload in list(iter_payloads(copy)):
            if is_reference(payload):
                stored = store.read(parse_reference(payload, store).key)
                payload.CopyFrom(Payload.FromString(stored))
        copies.append(copy)
    return copies


def reference_payload(store: Store, key: str, hash_value: str, size_bytes: int) -> Payload:
    """A reference in the SDK's format, for tests that hand-craft one."""
    body = {"driverName": store.driver, "claimData": store.claim(key, hash_value)}
    payload = Payload(
        metadata={"encoding": REFERENCE_ENCODING, "messageType": REFERENCE_TYPE},
        data=json.dumps(body).encode(),
    )
    payload.external_payloads.add().size_bytes = size_bytes
    return payload
