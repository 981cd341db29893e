"""The soak's verdict and its report: what ran, what was injected, what it cost, and every way
the run fell short of the outcome (the `problems`; none means it passed)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from faults import KINDS, Fault
from load import Outcome
from observe import LogEvent, Resources, read_events

MiB = 1024 * 1024
# An UNAVAILABLE a little after a fault's window is still that fault's: a worker's retry in
# flight, a pooled connection to the store that died with it.
GRACE = 10.0  # seconds
# The statuses the README documents for a soak with no corrupted store: UNAVAILABLE while the
# store or the server is down; RESOURCE_EXHAUSTED while the in-flight budget is full.
DOCUMENTED = {"Unavailable", "ResourceExhausted"}
SLOWEST = 5  # workflows named in the report, to see what the faults cost


def percentile(values: list[float], p: float) -> float | None:
    """Nearest rank."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


@dataclass
class Memory:
    peak_rss: int  # VmHWM, highest over the proxy's incarnations
    inflight: int
    cache: int
    overhead: int  # threads, buffers, allocator slack (test_codec_load.py's figure)

    @property
    def budget(self) -> int:
        return self.inflight + self.cache + self.overhead


@dataclass
class Report:
    seed: int
    load_seconds: float
    outcomes: list[Outcome]
    faults: list[Fault]
    retries: Counter
    counters: Counter  # the proxy's, summed over its incarnations
    memory: Memory
    baseline: Resources
    end: Resources
    proxy_logs: list[Path]
    worker_deaths: list[str]
    fault_problems: list[str]
    logs: dict[str, str] = field(default_factory=dict)

    # --- what the run found ------------------------------------------------------------

    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.error]

    def latencies(self, with_faults: bool) -> list[float]:
        return [
            o.latency
            for o in self.outcomes
            if not o.error and any(f.overlaps(o.started, o.finished) for f in self.faults) == with_faults
        ]

    def error_counts(self) -> dict[str, int]:
        prefix = 'claimcheck_errors_total{code="'
        return {k[len(prefix):-2]: int(v) for k, v in self.counters.items() if k.startswith(prefix)}

    def _events(self) -> tuple[list[LogEvent], list[str]]:
        events, others = [], []
        for log in self.proxy_logs:
            found, lines = read_events(log)
            events += found
            others += lines
        return events, others

    @cached_property
    def log_findings(self) -> tuple[Counter, list[str]]:
        """Logged failures by code (and whether within a fault's window); what breaks the rules,
        each kind once with how often and its first occurrence."""
        events, others = self._events()
        counts, broken, first = Counter(), Counter(), {}

        def breaks(rule: str, example: str) -> None:
            broken[rule] += 1
            first.setdefault(rule, example)

        for line in others:
            if "panicked" in line:
                breaks("panic", line)
        for event in events:
            if event.level == "ERROR":
                breaks("error logged", event.text())
            (code,) = event.fields.get("code", [None])
            if code is None:
                continue
            in_window = any(f.overlaps(event.time, event.time, GRACE) for f in self.faults)
            counts[f"{code} ({'during' if in_window else 'outside'} faults)"] += 1
            if code not in DOCUMENTED:
                breaks(f"undocumented status {code}", event.text())
            elif code == "Unavailable" and not in_window:
                breaks("UNAVAILABLE with no fault going on", event.text())
        return counts, [f"{rule} (x{n}), first: {first[rule]}" for rule, n in broken.items()]

    def problems(self) -> list[str]:
        problems = [f"{o.case.workflow_id} ({o.case.kind}, {o.case.size} B): {o.error}" for o in self.failed()]
        if not self.outcomes:
            problems.append("no workflow ran")
        missing = set(KINDS) - {f.kind for f in self.faults}
        if missing:
            problems.append(f"faults never injected: {sorted(missing)}")
        problems += self.fault_problems
        problems += [f"a worker died: {death}" for death in self.worker_deaths]
        if self.memory.peak_rss > self.memory.budget:
            problems.append(
                f"proxy peak RSS {self.memory.peak_rss / MiB:.0f} MiB over its budget of {self.memory.budget / MiB:.0f} MiB"
            )
        if not self.end.within(self.baseline):
            problems.append(f"the proxy holds more after the load than before it: {self.end} vs {self.baseline}")
        problems += [f"undocumented status {code} counted {n} times in claimcheck_errors_total"
                     for code, n in self.error_counts().items() if code not in DOCUMENTED]
        problems += self.log_findings[1]
        return problems

    # --- how it is shown ---------------------------------------------------------------

    def as_dict(self) -> dict:
        by_kind: dict[str, dict[str, int]] = {}
        for o in self.outcomes:
            entry = by_kind.setdefault(o.case.kind, {"count": 0, "failed": 0, "payload_bytes": 0})
            entry["count"] += 1
            entry["failed"] += bool(o.error)
            entry["payload_bytes"] += o.payload_bytes
        latency = {}
        for name, with_faults in (("with_faults", True), ("without_faults", False)):
            values = self.latencies(with_faults)
            latency[name] = {"count": len(values), "p50": percentile(values, 50), "p99": percentile(values, 99)}
        problems = self.problems()
        return {
            "ok": not problems,
            "seed": self.seed,
            "load_seconds": round(self.load_seconds, 1),
            "workflows": {
                "total": len(self.outcomes),
                "completed": len(self.outcomes) - len(self.failed()),
                "failed": len(self.failed()),
                "by_kind": by_kind,
            },
            "bytes": {
                "payload_bytes": sum(o.payload_bytes for o in self.outcomes if not o.error),
                "offloaded_bytes": int(self.counters["claimcheck_bytes_offloaded_total"]),
                "fetched_bytes": int(self.counters["claimcheck_bytes_fetched_total"]),
                "payloads_offloaded": int(self.counters["claimcheck_payloads_offloaded_total"]),
                "payloads_fetched": int(self.counters["claimcheck_payloads_fetched_total"]),
            },
            "faults": [
                {"kind": f.kind, "seconds": round(f.end - f.start, 1), "detail": f.detail} for f in self.faults
            ],
            "faults_by_kind": dict(Counter(f.kind for f in self.faults)),
            "retries": dict(self.retries),
            "latency_seconds": latency,
            "slowest": [
                {"workflow_id": o.case.workflow_id, "kind": o.case.kind, "size": o.case.size,
                 "seconds": round(o.latency, 2), "faults": [f.kind for f in self.faults if f.overlaps(o.started, o.finished)]}
                for o in sorted(self.outcomes, key=lambda o: -o.latency)[:SLOWEST]
            ],
            "memory": {
                "peak_rss_bytes": self.memory.peak_rss,
                "budget_bytes": self.memory.budget,
                "inflight_bytes": self.memory.inflight,
                "cache_bytes": self.memory.cache,
                "overhead_bytes": self.memory.overhead,
            },
            "proxy_resources": {"baseline": vars(self.baseline), "end": vars(self.end)},
            "errors": {"claimcheck_errors_total": self.error_counts(), "logged": dict(self.log_findings[0])},
            "config_reloads": int(self.counters["claimcheck_config_reloads_total"]),
            "worker_deaths": len(self.worker_deaths),
            "problems": problems,
            "logs": self.logs,
        }

    def table(self) -> str:
        d = self.as_dict()
        seconds = lambda v: "-" if v is None else f"{v:.2f} s"  # noqa: E731
        lat = d["latency_seconds"]
        rows = [
            ("seed", str(d["seed"])),
            ("load", f"{d['load_seconds']} s"),
            ("workflows", f"{d['workflows']['completed']} completed, {d['workflows']['failed']} failed"),
            *((f"  {kind}", f"{v['count']} ({v['failed']} failed), {v['payload_bytes'] / MiB:.1f} MiB")
              for kind, v in sorted(d["workflows"]["by_kind"].items())),
            ("payload bytes carried", f"{d['bytes']['payload_bytes'] / MiB:.1f} MiB"),
            ("store: offloaded / fetched", f"{d['bytes']['offloaded_bytes'] / MiB:.1f} MiB in {d['bytes']['payloads_offloaded']} / "
                                           f"{d['bytes']['fetched_bytes'] / MiB:.1f} MiB in {d['bytes']['payloads_fetched']} payloads"),
            ("faults", ", ".join(f"{k} x{n}" for k, n in sorted(d["faults_by_kind"].items()))),
            ("retries", ", ".join(f"{k} {n}" for k, n in sorted(d["retries"].items())) or "none"),
            ("latency with faults", f"p50 {seconds(lat['with_faults']['p50'])}, p99 {seconds(lat['with_faults']['p99'])} "
                                    f"({lat['with_faults']['count']} workflows)"),
            ("latency without faults", f"p50 {seconds(lat['without_faults']['p50'])}, p99 {seconds(lat['without_faults']['p99'])} "
                                       f"({lat['without_faults']['count']} workflows)"),
            ("proxy peak RSS / budget", f"{d['memory']['peak_rss_bytes'] / MiB:.0f} MiB / {d['memory']['budget_bytes'] / MiB:.0f} MiB"),
            ("proxy sockets, threads, tasks",
             f"{self.baseline.sockets}, {self.baseline.threads}, {self.baseline.tasks} before the load; "
             f"{self.end.sockets}, {self.end.threads}, {self.end.tasks} after"),
            ("proxy errors (metric)", ", ".join(f"{k} {n}" for k, n in d["errors"]["claimcheck_errors_total"].items()) or "none"),
            ("proxy errors (log)", ", ".join(f"{k} {n}" for k, n in d["errors"]["logged"].items()) or "none"),
            ("config reloads", str(d["config_reloads"])),
            ("verdict", "PASS" if d["ok"] else f"FAIL ({len(d['problems'])} problems)"),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"{name:<{width}}  {value}" for name, value in rows]
        lines += [f"  - {p}" for p in d["problems"]]
        return "\n".join(lines)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")
