"""The soak with faults, short: tests/soak/soak.py with 45 s of load, in which every fault
happens once (MinIO and the proxy killed, the Temporal server restarted, the store slow, the
threshold reloaded). `make soak` runs the long one.

A failure prints the seed; `SOAK_SEED=N` replays its cases and its fault plan.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "soak"))

import soak  # noqa: E402
from faults import KINDS  # noqa: E402
from load import WEIGHTS  # noqa: E402

LOAD_SECONDS = 45
# Short enough that a stuck workflow fails the test well within pytest's timeout.
CASE_TIMEOUT = 120


async def test_a_short_soak_with_every_fault_loses_no_payload(tmp_path: Path, logs: dict[str, Path]) -> None:
    seed = os.environ.get("SOAK_SEED")
    options = soak.Options(
        duration=LOAD_SECONDS,
        seed=int(seed) if seed else None,
        case_timeout=CASE_TIMEOUT,
        workdir=tmp_path,
    )
    try:
        report = await soak.soak(options)
    finally:
        logs.update({log.relative_to(tmp_path).as_posix(): log for log in sorted(tmp_path.rglob("*.log"))})
    print(f"\n{report.table()}")
    report.write(Path(os.environ.get("SOAK_REPORT") or tmp_path / "soak-report.json"))

    assert {f.kind for f in report.faults} == set(KINDS), "every fault is injected"
    assert {o.case.kind for o in report.outcomes if not o.error} == set(WEIGHTS), \
        "every kind of workflow completes"
    assert not report.failed(), "every workflow gets back the bytes it sent"
    assert report.memory.peak_rss <= report.memory.budget, "the proxy stays within its memory budget"
    assert report.end.within(report.baseline), "the proxy holds no more sockets or threads after the load"
    assert not report.problems(), f"seed {report.seed}:\n{report.table()}"
