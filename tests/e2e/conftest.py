"""Fixtures: one real Temporal dev server per session, a claimcheck proxy per test, clients.

Each test uses its own task queue and workflow ids, so they can share the server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from temporalio.client import Client

from harness import DevServer, Proxy, connect, read_log

# name -> log file, shown when a test fails
LOGS = pytest.StashKey[dict[str, Path]]()
LOG_TAIL = 8000


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


@pytest.fixture(autouse=True)
def logs(request: pytest.FixtureRequest, dev_server: DevServer) -> dict[str, Path]:
    """The log files shown when the test fails (see pytest_runtest_makereport)."""
    logs = {"temporal dev server": dev_server.process.log}
    request.node.stash[LOGS] = logs
    return logs


@pytest.fixture
def proxy_factory(
    dev_server: DevServer, direct_client: Client, logs: dict[str, Path], tmp_path: Path
) -> Iterator[Callable[[Path], Proxy]]:
    """Starts proxies in front of the dev server; several may share one store, as sidecars do.

    Depends on direct_client so that the server already answers gRPC when a proxy starts.
    """
    started: list[Proxy] = []

    def start(store: Path) -> Proxy:
        name = f"proxy-{len(started)}"
        proxy = Proxy.start(dev_server.address, store, tmp_path / f"{name}.log")
        started.append(proxy)
        logs[f"claimcheck {name}"] = proxy.process.log
        return proxy

    try:
        yield start
    finally:
        for proxy in started:
            proxy.process.stop()


@pytest.fixture
def proxy(proxy_factory: Callable[[Path], Proxy], tmp_path: Path) -> Proxy:
    return proxy_factory(tmp_path / "store")


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
