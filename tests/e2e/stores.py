"""The object stores the proxy offloads to in the tests, and raw access to their objects.

A Store names what a proxy needs (its `--store` URL and the environment its credentials come
from, exactly as object_store reads them in a pod), the claims of the references it writes
there, and reads, writes, deletes and lists the raw objects by key through each store's own
client, so that a test can check, corrupt or remove what the proxy stored.

The cloud stores are servers of tests/env/cluster.sh: MinIO (S3), gcp-storage-emulator (GCS,
the one with the XML API object_store writes through) and Azurite (Azure Blob).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote

import boto3
from azure.storage.blob import ContainerClient
from botocore.config import Config

CLUSTER_SH = Path(__file__).resolve().parents[1] / "env" / "cluster.sh"
CLOUD_KINDS = ("s3", "gcs", "azure")


class Store(ABC):
    driver: ClassVar[str]  # driver_name of the references
    key_claim: ClassVar[str] = "key"
    bucket_claim: ClassVar[str | None] = None  # the claim naming the bucket, if any
    bucket: str | None = None
    prefix: str = ""  # of every key the proxy writes: empty or ends in "/"

    @property
    @abstractmethod
    def url(self) -> str:
        """The proxy's --store."""

    @property
    def env(self) -> dict[str, str]:
        """The proxy's credentials and endpoint, as a pod's environment would hold them."""
        return {}

    @abstractmethod
    def object_name(self, key: str) -> str:
        """How the proxy names an object in its errors: the store's URL and the key."""

    def claim(self, key: str, hash_value: str) -> dict[str, str]:
        """The claim data of a reference to `key`, as the proxy and the SDK drivers write it."""
        claim = {self.key_claim: key, "hash_algorithm": "sha256", "hash_value": hash_value}
        if self.bucket_claim:
            claim[self.bucket_claim] = self.bucket
        return claim

    @abstractmethod
    def read(self, key: str) -> bytes: ...

    @abstractmethod
    def write(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def keys(self) -> set[str]:
        """Every key under the prefix."""


@dataclass(frozen=True)
class FileStore(Store):
    root: Path
    driver = "claimcheck.file"

    @property
    def url(self) -> str:
        return self.root.resolve().as_uri()

    def object_name(self, key: str) -> str:
        return f"file://{self.root.resolve()}/{key}"

    def read(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def write(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def delete(self, key: str) -> None:
        (self.root / key).unlink()

    def keys(self) -> set[str]:
        return {str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file()}


@dataclass(frozen=True)
class S3Store(Store):
    cluster_env: dict[str, str]  # cluster.sh's DIR/env
    bucket: str
    prefix: str
    driver = "aws.s3driver"
    bucket_claim = "bucket"

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT": self.cluster_env["S3_ENDPOINT"],
            "AWS_REGION": self.cluster_env["S3_REGION"],
            "AWS_ACCESS_KEY_ID": self.cluster_env["S3_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": self.cluster_env["S3_SECRET_ACCESS_KEY"],
            "AWS_ALLOW_HTTP": "true",
        }

    @property
    def client_options(self) -> dict[str, str]:
        """For boto3's and aioboto3's client("s3", ...)."""
        return dict(
            endpoint_url=self.cluster_env["S3_ENDPOINT"],
            region_name=self.cluster_env["S3_REGION"],
            aws_access_key_id=self.cluster_env["S3_ACCESS_KEY_ID"],
            aws_secret_access_key=self.cluster_env["S3_SECRET_ACCESS_KEY"],
        )

    @cached_property
    def _client(self):
        return boto3.client("s3", config=Config(s3={"addressing_style": "path"}), **self.client_options)

    def object_name(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def read(self, key: str) -> bytes:
        return self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def write(self, key: str, data: bytes) -> None:
        self._client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=key)

    def keys(self) -> set[str]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        return {obj["Key"] for page in pages for obj in page.get("Contents", [])}

    def create_bucket(self) -> None:
        self._client.create_bucket(Bucket=self.bucket)


@dataclass(frozen=True)
class GcsStore(Store):
    """Raw access through GCS's JSON API, with plain HTTP: the emulator needs no credentials."""

    cluster_env: dict[str, str]  # cluster.sh's DIR/env
    bucket: str
    prefix: str
    driver = "gcp.gcsdriver"
    key_claim = "object_name"
    bucket_claim = "bucket"

    @property
    def endpoint(self) -> str:
        return self.cluster_env["GCS_EMULATOR_URL"]

    @property
    def url(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}"

    @property
    def env(self) -> dict[str, str]:
        # A service-account key that points object_store at the emulator, with no OAuth.
        key = dict(
            gcs_base_url=self.endpoint,
            disable_oauth=True,
            client_email="",
            private_key="",
            private_key_id="",
        )
        return {"GOOGLE_SERVICE_ACCOUNT_KEY": json.dumps(key)}

    def object_name(self, key: str) -> str:
        return f"gs://{self.bucket}/{key}"

    def _call(self, method: str, path: str, data: bytes | None = None) -> bytes:
        request = urllib.request.Request(f"{self.endpoint}{path}", data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/octet-stream")
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()

    def _object(self, key: str) -> str:
        return f"/storage/v1/b/{self.bucket}/o/{quote(key, safe='')}"

    def read(self, key: str) -> bytes:
        return self._call("GET", f"{self._object(key)}?alt=media")

    def write(self, key: str, data: bytes) -> None:
        name = quote(key, safe="")
        self._call("POST", f"/upload/storage/v1/b/{self.bucket}/o?uploadType=media&name={name}", data)

    def delete(self, key: str) -> None:
        self._call("DELETE", self._object(key))

    def keys(self) -> set[str]:
        keys: set[str] = set()
        query = f"prefix={quote(self.prefix, safe='')}"
        while True:
            listing = json.loads(self._call("GET", f"/storage/v1/b/{self.bucket}/o?{query}"))
            keys.update(item["name"] for item in listing.get("items", []))
            if "nextPageToken" not in listing:
                return keys
            query = f"prefix={quote(self.prefix, safe='')}&pageToken={listing['nextPageToken']}"


@dataclass(frozen=True)
class AzureStore(Store):
    cluster_env: dict[str, str]  # cluster.sh's DIR/env
    bucket: str  # the container
    prefix: str
    driver = "claimcheck.azureblob"
    bucket_claim = "container"

    @property
    def url(self) -> str:
        return f"az://{self.bucket}/{self.prefix}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "AZURE_STORAGE_ACCOUNT_NAME": self.cluster_env["AZURE_STORAGE_ACCOUNT"],
            "AZURE_STORAGE_ACCOUNT_KEY": self.cluster_env["AZURE_STORAGE_KEY"],
            "AZURE_STORAGE_ENDPOINT": self.cluster_env["AZURITE_BLOB_URL"],
            "AZURE_ALLOW_HTTP": "true",
        }

    @cached_property
    def _container(self) -> ContainerClient:
        return ContainerClient.from_connection_string(
            self.cluster_env["AZURE_STORAGE_CONNECTION_STRING"], self.bucket
        )

    def object_name(self, key: str) -> str:
        return f"az://{self.bucket}/{key}"

    def read(self, key: str) -> bytes:
        return self._container.download_blob(key).readall()

    def write(self, key: str, data: bytes) -> None:
        self._container.upload_blob(key, data, overwrite=True)

    def delete(self, key: str) -> None:
        self._container.delete_blob(key)

    def keys(self) -> set[str]:
        return set(self._container.list_blob_names(name_starts_with=self.prefix))


StoreFactory = Callable[..., Store]  # the store_factory fixture: make(kind, prefix=None)


@dataclass
class Cluster:
    """The object-store servers of tests/env/cluster.sh, in a directory of their own."""

    dir: Path
    env: dict[str, str]

    @classmethod
    def up(cls, dir: Path, kinds: tuple[str, ...] = CLOUD_KINDS) -> Cluster:
        # --watch: should pytest die without tearing down, the servers still stop.
        cls._run("up", dir, "--only", ",".join(kinds), "--watch", str(os.getpid()))
        return cls(dir, read_env(dir / "env"))

    def down(self) -> None:
        self._run("down", self.dir)
        # The logs stay, for a failed test; the objects go: pytest keeps its last three runs'
        # directories, and a soak writes tens of GiB.
        for data in self.dir.glob("*/data"):
            shutil.rmtree(data, ignore_errors=True)

    def restart(self, server: str) -> None:
        """Starts a server that went away again, on the same port and data."""
        self._run("restart", self.dir, server)
        self.env = read_env(self.dir / "env")

    def store(self, kind: str, prefix: str) -> Store:
        match kind:
            case "s3":
                return S3Store(self.env, self.env["S3_BUCKET"], prefix)
            case "gcs":
                return GcsStore(self.env, self.env["GCS_BUCKET"], prefix)
            case "azure":
                return AzureStore(self.env, self.env["AZURE_CONTAINER"], prefix)
        raise ValueError(f"no cloud store {kind!r}")

    @staticmethod
    def _run(*args: str | Path) -> None:
        subprocess.run(["bash", str(CLUSTER_SH), *map(str, args)], check=True)


def read_env(path: Path) -> dict[str, str]:
    """`KEY='value'` lines, as cluster.sh writes them (values never contain a quote)."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value.strip("'") for key, value in pairs}
