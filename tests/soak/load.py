"""The soak's load: a mix of workflows, each started through the proxy, driven (signals, an
update) and checked there: what comes back must hash to what was sent.

Every case is drawn from the soak's seed and its own index, so a failing case can be rerun.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

from temporalio.client import Client, WorkflowHandle

from faults import THRESHOLDS
from soak_workflows import FanOut, Generations, Mailbox, Relay, fan_out_digest, letters_digest
from stack import TASK_QUEUE
from workflows import blob, digest

KiB, MiB = 1024, 1024 * 1024
# What a Payload adds to its data once encoded (the binary/plain encoding): a payload of
# `threshold - PAYLOAD_OVERHEAD` bytes of data is right at the threshold.
PAYLOAD_OVERHEAD = 30

# How often each kind comes up; 10-50 MiB payloads are few, so that 2 cores keep up.
WEIGHTS = {
    "small": 3,
    "threshold": 3,
    "medium": 2,
    "large": 1,
    "fan-out": 2,
    "signals-update": 2,
    "continue-as-new": 1,
}


@dataclass
class Case:
    index: int
    kind: str
    workflow_id: str
    seed: int
    size: int  # of each payload
    count: int = 1  # activities of a fan-out, letters of a mailbox, runs of a continue-as-new


@dataclass
class Outcome:
    case: Case
    started: float  # seconds since the epoch
    finished: float
    payload_bytes: int = 0  # carried through the API, each payload counted where it travels
    first_run_id: str | None = None
    error: str | None = None

    @property
    def latency(self) -> float:
        return self.finished - self.started


class WrongPayload(AssertionError):
    pass


def expect(what: str, got: str, wanted: str) -> None:
    if got != wanted:
        raise WrongPayload(f"{what}: sha256 {got}, expected {wanted}")


def draw(seed: int, index: int, kind: str, id_prefix: str) -> Case:
    """The case of `index`, from the soak's seed alone."""
    rng = random.Random(f"{seed}/{index}")
    count = 1
    match kind:
        case "small":
            size = rng.randint(1, 64 * KiB)
        case "threshold":
            size = rng.choice(THRESHOLDS) - PAYLOAD_OVERHEAD + rng.randint(-KiB, 4 * KiB)
        case "medium":
            size = rng.randint(1 * MiB, 4 * MiB)
        case "large":
            size = rng.randint(10 * MiB, 50 * MiB)
        case "fan-out":
            size, count = rng.randint(64 * KiB, 1 * MiB), rng.randint(3, 8)
        case "signals-update":
            size, count = rng.randint(16 * KiB, 1 * MiB), rng.randint(2, 4)
        case "continue-as-new":
            size, count = rng.randint(128 * KiB, 2 * MiB), rng.randint(2, 4)
        case _:
            raise ValueError(kind)
    return Case(index, kind, f"{id_prefix}-{index}-{kind}", rng.getrandbits(32), size, count)


async def relay(client: Client, case: Case) -> tuple[WorkflowHandle, int]:
    data = blob(case.seed, case.size)
    handle = await client.start_workflow(Relay.run, data, id=case.workflow_id, task_queue=TASK_QUEUE)
    result = await handle.result()
    expect("result", digest(result), digest(data[::-1]))
    return handle, 4 * case.size


async def fan_out(client: Client, case: Case) -> tuple[WorkflowHandle, int]:
    handle = await client.start_workflow(
        FanOut.run, args=[case.seed, case.size, case.count], id=case.workflow_id, task_queue=TASK_QUEUE
    )
    expected = fan_out_digest([blob(case.seed + i, case.size) for i in range(case.count)])
    expect("result", await handle.result(), expected)
    return handle, case.count * case.size


async def signals_update(client: Client, case: Case) -> tuple[WorkflowHandle, int]:
    handle = await client.start_workflow(Mailbox.run, case.count, id=case.workflow_id, task_queue=TASK_QUEUE)
    letters = [blob(case.seed + i, case.size) for i in range(case.count)]
    for index, letter in enumerate(letters):
        await handle.signal(Mailbox.post, args=[index, letter])
    data = blob(case.seed + case.count, case.size)
    # The update's id makes a retried call the same update.
    swapped = await handle.execute_update(Mailbox.swap, data, id="swap")
    expect("update result", digest(swapped), digest(data[::-1]))
    expect("result", await handle.result(), letters_digest(letters))
    return handle, (case.count + 2) * case.size


async def continue_as_new(client: Client, case: Case) -> tuple[WorkflowHandle, int]:
    handle = await client.start_workflow(
        Generations.run, args=[case.seed, case.size, case.count], id=case.workflow_id, task_queue=TASK_QUEUE
    )
    expect("result", await handle.result(), digest(blob(case.seed, case.size)))
    # Each run but the last makes a payload (an activity result) and hands it on (its input).
    return handle, 2 * case.count * case.size


RUNNERS = {
    "small": relay,
    "threshold": relay,
    "medium": relay,
    "large": relay,
    "fan-out": fan_out,
    "signals-update": signals_update,
    "continue-as-new": continue_as_new,
}


async def run_case(client: Client, case: Case, timeout: float) -> Outcome:
    outcome = Outcome(case, started=time.time(), finished=0.0)
    try:
        handle, outcome.payload_bytes = await asyncio.wait_for(RUNNERS[case.kind](client, case), timeout)
        outcome.first_run_id = handle.first_execution_run_id
    except Exception as err:  # every failure is the soak's finding, reported with its case
        outcome.error = f"{type(err).__name__}: {err}"
        if err.__cause__:
            outcome.error += f" (caused by {type(err.__cause__).__name__}: {err.__cause__})"
    outcome.finished = time.time()
    return outcome


@dataclass
class Load:
    """Keeps `concurrency` workflows going until `until` (seconds since the epoch). The first
    cases are one of each kind, so even a short soak runs them all."""

    client: Client
    seed: int
    id_prefix: str  # of the workflow ids
    concurrency: int
    case_timeout: float
    outcomes: list[Outcome] = field(default_factory=list)
    _next: int = 0

    def _next_case(self) -> Case:
        index = self._next
        self._next += 1
        kinds = list(WEIGHTS)
        if index < len(kinds):
            kind = random.Random(self.seed).sample(kinds, len(kinds))[index]
        else:
            kind = random.Random(f"{self.seed}/{index}/kind").choices(kinds, list(WEIGHTS.values()))[0]
        return draw(self.seed, index, kind, self.id_prefix)

    async def _lane(self, until: float) -> None:
        while time.time() < until:
            case = self._next_case()
            outcome = await run_case(self.client, case, self.case_timeout)
            self.outcomes.append(outcome)
            if outcome.error:
                print(f"[soak] {case.workflow_id} failed: {outcome.error}", flush=True)

    async def run(self, until: float) -> None:
        await asyncio.gather(*(self._lane(until) for _ in range(self.concurrency)))
