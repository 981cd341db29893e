"""The Java SDK worker (tests/worker-java) through the proxy: each core payload scenario of the
Go one, 3 MiB, checked by SHA-256 by the Java client and by the references in the history read
straight from the server.

A plain Java worker: the Java SDK's own External Storage is not testable here. Maven Central
serves io.temporal:temporal-sdk up to 1.38.0 (1.39.0-1.42.0 refused), which does not wire
External Storage into clients or workers, and no S3 driver artifact (docs/interop.md).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from temporalio.client import Client

from harness import Proxy
from sdk_scenarios import SCENARIOS, check_scenario

BUILD_SH = Path(__file__).resolve().parents[1] / "worker-java" / "build.sh"
# seconds; a cold Maven repository downloads the SDK and Maven's plugins
BUILD_TIMEOUT = 600

pytestmark = pytest.mark.timeout(BUILD_TIMEOUT + 120)


@pytest.fixture(scope="session")
def java_command() -> list[str]:
    """`java -cp ... claimcheck.Main`, built once (build.sh is a no-op once built)."""
    done = subprocess.run(
        [str(BUILD_SH)], check=True, stdout=subprocess.PIPE, text=True, timeout=BUILD_TIMEOUT
    )
    out = Path(done.stdout.splitlines()[-1])
    classpath = f"{out / 'classes'}:{(out / 'classpath.txt').read_text().strip()}"
    return ["java", "-cp", classpath, "claimcheck.Main"]


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_java_sdk_scenario_through_proxy(
    scenario: str,
    java_command: list[str],
    proxy: Proxy,
    direct_client: Client,
    logs: dict[str, Path],
    tmp_path: Path,
) -> None:
    await check_scenario("java", java_command, scenario, proxy, direct_client, logs, tmp_path)
