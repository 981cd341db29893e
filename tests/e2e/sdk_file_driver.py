"""The Python SDK's External Storage with a `claimcheck.file` driver: claimcheck's format, SDK side.

It writes and reads references exactly as the SDK's own S3 driver does (namespace-scoped key
`v0/ns/<namespace>/d/sha256/<hex>`, claim data key/hash_algorithm/hash_value), on a directory.
An SDK configured with it and the proxy must understand each other's references.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    ExternalStorage,
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
)

from claims import DRIVER
from harness import NAMESPACE, THRESHOLD


class FileStorageDriver(StorageDriver):
    def __init__(self, store: Path) -> None:
        self._store = store

    def name(self) -> str:
        return DRIVER

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        claims = []
        for payload in payloads:
            data = payload.SerializeToString()
            hash_value = hashlib.sha256(data).hexdigest()
            key = f"v0/ns/{NAMESPACE}/d/sha256/{hash_value}"
            path = self._store / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            claim = {"key": key, "hash_algorithm": "sha256", "hash_value": hash_value}
            claims.append(StorageDriverClaim(claim_data=claim))
        return claims

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        payloads = []
        for claim in claims:
            data = (self._store / claim.claim_data["key"]).read_bytes()
            if hashlib.sha256(data).hexdigest() != claim.claim_data["hash_value"]:
                raise ValueError(f"stored object {claim.claim_data['key']} does not match its hash")
            payloads.append(Payload.FromString(data))
        return payloads


def data_converter(store: Path) -> DataConverter:
    storage = ExternalStorage(drivers=[FileStorageDriver(store)], payload_size_threshold=THRESHOLD)
    return dataclasses.replace(DataConverter.default, external_storage=storage)
