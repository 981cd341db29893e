"""The proxy reads every reference variant the SDKs write (docs/interop.md).

Each fixture in tests/fixtures/references/ is one reference as an SDK's own driver wrote it,
with the object the driver stored (its README and each file's `source` say how it was captured,
or from which source it was built where no registry serves the driver). The object is planted
in the bucket under the fixture's key, a workflow is started straight on the server with the
reference as its input, and the history read through a plain client behind the proxy holds the
original payload, byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client

from failures import read_history, start_raw
from harness import ProxyFactory, connect, unique
from stores import StoreFactory

FIXTURES = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "references").glob("*.json"))
STORE_KIND = {"aws.s3driver": "s3", "gcp.gcsdriver": "gcs"}


def test_every_sdk_has_a_fixture() -> None:
    """The table covers each SDK whose driver could be run here (docs/interop.md)."""
    sdks = {json.loads(path.read_text())["sdk"].split()[0].lower() for path in FIXTURES}
    assert {"python", "go", "typescript"} <= sdks, sdks


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda path: path.stem)
async def test_the_proxy_puts_back_what_an_sdk_driver_stored(
    fixture: Path, store_factory: StoreFactory, proxy_factory: ProxyFactory, direct_client: Client
) -> None:
    variant = json.loads(fixture.read_text())
    stored = base64.b64decode(variant["object_b64"])
    reference = Payload.FromString(base64.b64decode(variant["reference_payload_b64"]))
    assert hashlib.sha256(stored).hexdigest() == variant["original_sha256"], fixture

    # The SDKs write keys at the bucket's root: the proxy's prefix is empty.
    store = store_factory(STORE_KIND[variant["driver"]], prefix="")
    store.write(variant["key"], stored)
    # A key without a namespace segment is served only by a store that accepts them.
    unscoped = ("--accept-unscoped-keys",) if variant["key"].startswith("v0/d/") else ()
    proxy = proxy_factory(store, args=unscoped)
    client = await connect(proxy.address)

    workflow_id = unique(fixture.stem)
    await start_raw(direct_client, workflow_id, [reference])
    history = await read_history(client, workflow_id)
    started = history.history.events[0].workflow_execution_started_event_attributes
    assert list(started.input.payloads) == [Payload.FromString(stored)]
