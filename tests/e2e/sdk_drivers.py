"""The Python SDK's External Storage on the test stores, with no proxy in between.

S3 and GCS use the SDK's own drivers (temporalio.contrib.aws.s3driver on aioboto3,
temporalio.contrib.gcp.gcsdriver on gcloud-aio-storage), pointed at the emulators. The
filesystem has no SDK driver: FileStorageDriver here writes and reads `claimcheck.file`
references exactly as the SDK's S3 driver does (namespace-scoped key
`v0/ns/<namespace>/d/sha256/<hex>`, claim data key/hash_algorithm/hash_value). An SDK configured
with one of them and the proxy must understand each other's references.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import aioboto3
from gcloud.aio.storage import Storage
from temporalio.api.common.v1 import Payload
from temporalio.contrib.aws.s3driver import S3StorageDriver
from temporalio.contrib.aws.s3driver.aioboto3 import new_aioboto3_client
from temporalio.contrib.gcp.gcsdriver import GCSStorageDriver
from temporalio.contrib.gcp.gcsdriver.gcloud_aio import new_gcloud_aio_client
from temporalio.converter import (
    DataConverter,
    ExternalStorage,
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
)

from harness import NAMESPACE, THRESHOLD
from stores import FileStore, GcsStore, S3Store, Store


class FileStorageDriver(StorageDriver):
    def __init__(self, store: FileStore) -> None:
        self._store = store

    def name(self) -> str:
        return self._store.driver

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        claims = []
        for payload in payloads:
            data = payload.SerializeToString()
            hash_value = hashlib.sha256(data).hexdigest()
            key = f"v0/ns/{NAMESPACE}/d/sha256/{hash_value}"
            self._store.write(key, data)
            claims.append(StorageDriverClaim(claim_data=self._store.claim(key, hash_value)))
        return claims

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        payloads = []
        for claim in claims:
            data = self._store.read(claim.claim_data["key"])
            if hashlib.sha256(data).hexdigest() != claim.claim_data["hash_value"]:
                raise ValueError(f"stored object {claim.claim_data['key']} does not match its hash")
            payloads.append(Payload.FromString(data))
        return payloads


@asynccontextmanager
async def sdk_driver(store: Store) -> AsyncIterator[StorageDriver]:
    """The SDK driver for `store`, with its client open while the context lasts."""
    match store:
        case FileStore():
            yield FileStorageDriver(store)
        case S3Store():
            async with aioboto3.Session().client("s3", **store.client_options) as s3:
                yield S3StorageDriver(client=new_aioboto3_client(s3), bucket=store.bucket)
        case GcsStore():
            # An api_root makes gcloud-aio talk to an emulator, with no token.
            async with Storage(api_root=store.endpoint) as gcs:
                yield GCSStorageDriver(client=new_gcloud_aio_client(gcs), bucket=store.bucket)
        case _:
            raise ValueError(f"no SDK driver for {store}")


@asynccontextmanager
async def sdk_data_converter(store: Store) -> AsyncIterator[DataConverter]:
    """The default data converter with External Storage on `store`."""
    async with sdk_driver(store) as driver:
        storage = ExternalStorage(drivers=[driver], payload_size_threshold=THRESHOLD)
        yield dataclasses.replace(DataConverter.default, external_storage=storage)
