"""Fixtures: one real Temporal dev server per session, a claimcheck proxy per test, clients;
the object-store servers (S3, GCS, Azure) once per session, from the first test that needs one.

Each test uses its own task queue and workflow ids, and its own store (a directory, or a prefix
in the shared bucket), so they can share the servers.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client

from harness import DevServer, Proxy, ProxyFactory, connect, read_log, unique
from leaks import leaks
from stores import Cluster, FileStore, Store, StoreFactory

# name -> log file, shown when a test fails
LOGS = pytest.StashKey[dict[str, Path]]()
LOG_TAIL = 8000


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Once every test has run, each log the run wrote is searched for each store secret it
    used: a secret must never be written anywhere (docs/security.md)."""
    yield
    found = leaks(tmp_path_factory.getbasetemp())
    assert not found, f"store secrets in logs: {found}"


@pytest.fixture(scope="session")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    server = DevServer.start(tmp_path_factory.mktemp("temporal"))
    try:
        yield server
    finally:
        server.process.stop()


@pytest.fixture(scope="session")
async def direct_client(dev_server: DevServer) -> Client:
    """Straight to the server, with no external storage: it sees the history as stored."""
    return await connect(dev_server.address)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster.up(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster
    finally:
        cluster.down()


@pytest.fixture
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """make(kind, prefix=None): a store of kind file, s3, gcs or azure for this test alone: a new
    directory, or a prefix of its own (unless given) in the cluster's bucket."""
    count = itertools.count()

    def make(kind: str, prefix: str | None = None) -> Store:
        if kind == "file":
            assert not prefix, "a file store is a directory of its own"
            return FileStore(tmp_path / f"store-{next(count)}")
        cluster: Cluster = request.getfixturevalue("cluster")
        if prefix is None:
            prefix = unique(re.sub(r"[^A-Za-z0-9_]+", "-", request.node.name).strip("-")) + "/"
        return cluster.store(kind, prefix)

    return make


@pytest.fixture
def store(request: pytest.FixtureRequest, store_factory: StoreFactory) -> Store:
    """The test's store: the filesystem, or the kind a test parametrizes it with (indirect)."""
    return store_factory(getattr(request, "param", "file"))


@pytest.fixture(autouse=True)
def logs(request: pytest.FixtureRequest, dev_server: DevServer) -> dict[str, Path]:
    """The log files shown when the test fails (see pytest_runtest_makereport)."""
    logs = {"temporal dev server": dev_server.process.log}
    request.node.stash[LOGS] = logs
    return logs


@pytest.fixture
def proxy_factory(
    dev_server: DevServer, direct_client: Client, logs: dict[str, Path], tmp_path: Path
) -> Iterator[ProxyFactory]:
    """start(store, env=None, **options): a proxy in front of the dev server; several may share
    one store, as sidecars do. `env` overrides the store's credentials; `options` are
    Proxy.start's (a codec, say).

    Depends on direct_client so that the server already answers gRPC when a proxy starts.
    """
    started: list[Proxy] = []

    def start(store: Store, env: dict[str, str] | None = None, **options) -> Proxy:
        name = f"proxy-{len(started)}"
        proxy = Proxy.start(
            dev_server.address, store, tmp_path / f"{name}.log", env=env, **options
        )
        started.append(proxy)
        logs[f"claimcheck {name}"] = proxy.process.log
        return proxy

    try:
        yield start
    finally:
        for proxy in started:
            proxy.process.stop()


@pytest.fixture
def proxy(proxy_factory: ProxyFactory, store: Store) -> Proxy:
    return proxy_factory(store)


@pytest.fixture
async def proxy_client(proxy: Proxy) -> Client:
    return await connect(proxy.address)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Attaches the proxies' and the server's logs to a failed test's report."""
    report = yield
    logs = item.stash.get(LOGS, None)
    if report.failed and logs is not None:
        for name, path in logs.items():
            if path.exists():
                text = read_log(path)[-LOG_TAIL:]
                report.sections.append((f"{name} log ({path})", text))
    return report
