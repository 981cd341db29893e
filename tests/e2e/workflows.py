"""Workflows and activities run by the end-to-end tests.

Each workflow puts a large payload in one place of the Temporal API (workflow input, activity
result, signal, memo, ...) and returns the SHA-256 of what it received, so a test can tell a
payload that came back intact from one that was lost, truncated or substituted. The bytes come
from `blob(seed, size)`: incompressible, and rebuilt identically by the test and the workflow
from a small seed, so the only large payloads in a history are the ones the scenario means.
"""

from __future__ import annotations

import hashlib
import random
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

TIMEOUT = timedelta(seconds=60)


def blob(seed: int, size: int) -> bytes:
    """Pseudo-random bytes, incompressible (gzip on the wire cannot hide them), reproducible."""
    return random.Random(seed).randbytes(size)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- activities -----------------------------------------------------------------------------


@activity.defn
async def reverse(data: bytes) -> bytes:
    return data[::-1]


@activity.defn
async def digest_of(data: bytes) -> str:
    return digest(data)


@activity.defn
async def make_blob(seed: int, size: int) -> bytes:
    return blob(seed, size)


@activity.defn
async def fail_with_details(seed: int, size: int) -> None:
    raise ApplicationError("failing with a large detail", blob(seed, size), non_retryable=True)


@activity.defn
async def heartbeat_then_retry(seed: int, size: int) -> str:
    """The first attempt heartbeats a large detail and fails; the retry resumes from it."""
    info = activity.info()
    if info.attempt == 1:
        activity.heartbeat(blob(seed, size))
        raise ApplicationError("first attempt fails after heartbeating")
    (details,) = info.heartbeat_details
    return digest(details)


# --- workflows, one per place a payload can travel -------------------------------------------


@workflow.defn
class EchoReversed:
    """Large workflow input and large workflow result."""

    @workflow.run
    async def run(self, data: bytes) -> bytes:
        return data[::-1]


@workflow.defn
class ActivityRoundTrip:
    """Large activity input and large activity result."""

    @workflow.run
    async def run(self, seed: int, size: int) -> str:
        result = await workflow.execute_activity(
            reverse, blob(seed, size), start_to_close_timeout=TIMEOUT
        )
        return digest(result)


@workflow.defn
class SignalReceiver:
    """Large signal input."""

    def __init__(self) -> None:
        self._data: bytes | None = None

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self._data is not None)
        assert self._data is not None
        return digest(self._data)

    @workflow.signal
    def put(self, data: bytes) -> None:
        self._data = data


@workflow.defn
class QueryServer:
    """Large query result; it never reaches the history."""

    def __init__(self) -> None:
        self._finished = False
        self._seed = 0
        self._size = 0

    @workflow.run
    async def run(self, seed: int, size: int) -> str:
        self._seed, self._size = seed, size
        await workflow.wait_condition(lambda: self._finished)
        return "finished"

    @workflow.query
    def data(self) -> bytes:
        return blob(self._seed, self._size)

    @workflow.signal
    def finish(self) -> None:
        self._finished = True


@workflow.defn
class UpdateReverser:
    """Large update argument and large update result."""

    def __init__(self) -> None:
        self._updated = False

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self._updated and workflow.all_handlers_finished())
        return "updated"

    @workflow.update
    async def transform(self, data: bytes) -> bytes:
        self._updated = True
        return data[::-1]


@workflow.defn
class ChildParent:
    """Large child workflow input and result (the child is EchoReversed)."""

    @workflow.run
    async def run(self, seed: int, size: int) -> str:
        result = await workflow.execute_child_workflow(
            EchoReversed.run,
            blob(seed, size),
            id=f"{workflow.info().workflow_id}-child",
            execution_timeout=TIMEOUT,
        )
        return digest(result)


@workflow.defn
class ActivityFailureDetails:
    """Large ApplicationError details in an activity failure."""

    @workflow.run
    async def run(self, seed: int, size: int) -> str:
        try:
            await workflow.execute_activity(
                fail_with_details, args=[seed, size], start_to_close_timeout=TIMEOUT
            )
        except ActivityError as err:
            assert isinstance(err.cause, ApplicationError)
            (details,) = err.cause.details
            return digest(details)
        raise ApplicationError("the activity was expected to fail", non_retryable=True)


@workflow.defn
class HeartbeatResume:
    """Large heartbeat details, read back by the activity's retry."""

    @workflow.run
    async def run(self, seed: int, size: int) -> str:
        return await workflow.execute_activity(
            heartbeat_then_retry,
            args=[seed, size],
            start_to_close_timeout=TIMEOUT,
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=100), maximum_attempts=2
            ),
        )


@workflow.defn
class LocalActivityResult:
    """Large local activity result (recorded in a MarkerRecorded event)."""

    @workflow.run
    async def run(self, seed: int, size: int) -> str:
        result = await workflow.execute_local_activity(
            make_blob, args=[seed, size], start_to_close_timeout=TIMEOUT
        )
        return digest(result)


@workflow.defn
class ContinueAsNewCarrier:
    """Large continue-as-new input: the first run continues with the blob, the second hashes it."""

    @workflow.run
    async def run(self, seed: int, size: int, data: bytes = b"") -> str:
        if not data:
            workflow.continue_as_new(args=[seed, size, blob(seed, size)])
        return digest(data)


@workflow.defn
class MemoReader:
    """Large memo field, set by the client at start."""

    @workflow.run
    async def run(self) -> str:
        return digest(workflow.memo_value("blob", type_hint=bytes))


@workflow.defn
class VerifiedInput:
    """Large input that the workflow checks against the digest the test expects.

    A wrong payload handed to the workflow fails the run loudly instead of passing silently.
    """

    @workflow.run
    async def run(self, data: bytes, expected: str) -> str:
        if digest(data) != expected:
            raise ApplicationError(
                f"workflow received wrong bytes: sha256 {digest(data)}, expected {expected}",
                non_retryable=True,
            )
        return digest(data)


@workflow.defn
class ActivityOnOtherQueue:
    """A large activity input, for an activity worker on a queue of its own: a test can act on
    the stored input between scheduling and delivery. Retries come fast for the same reason."""

    @workflow.run
    async def run(self, seed: int, size: int, activity_queue: str) -> str:
        return await workflow.execute_activity(
            digest_of,
            blob(seed, size),
            task_queue=activity_queue,
            start_to_close_timeout=TIMEOUT,
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200), backoff_coefficient=1.0),
        )


@workflow.defn
class MadeOnOtherQueue:
    """A large activity result, made by an activity worker on a queue of its own: the workflow
    and the activity can run in different workers (one behind the proxy, one not)."""

    @workflow.run
    async def run(self, seed: int, size: int, activity_queue: str) -> str:
        made = await workflow.execute_activity(
            make_blob, args=[seed, size], task_queue=activity_queue, start_to_close_timeout=TIMEOUT
        )
        return digest(made)


@workflow.defn
class TwoActivities:
    """A large activity result passed on to another activity, whose result is large too (and the
    demo)."""

    @workflow.run
    async def run(self, seed: int, size: int) -> str:
        made = await workflow.execute_activity(
            make_blob, args=[seed, size], start_to_close_timeout=TIMEOUT
        )
        reversed_ = await workflow.execute_activity(reverse, made, start_to_close_timeout=TIMEOUT)
        return digest(reversed_)


@workflow.defn
class JsonOrder:
    """A JSON input and a larger JSON result made from it: values a person can read in the Web UI
    (bytes would show as base64), of sizes a test picks on either side of a limit."""

    @workflow.run
    async def run(self, order: dict) -> dict:
        return {"id": order["id"], "lines": [order["line"]] * order["copies"]}


@workflow.defn
class Chain:
    """The input through `hops` activities, each returning it reversed (`make bench`'s chain:
    every hop is a large activity input and a large result)."""

    @workflow.run
    async def run(self, data: bytes, hops: int) -> bytes:
        for _ in range(hops):
            data = await workflow.execute_activity(reverse, data, start_to_close_timeout=TIMEOUT)
        return data


WORKFLOWS = [
    Chain,
    EchoReversed,
    ActivityRoundTrip,
    SignalReceiver,
    QueryServer,
    UpdateReverser,
    ChildParent,
    ActivityFailureDetails,
    HeartbeatResume,
    LocalActivityResult,
    ContinueAsNewCarrier,
    MemoReader,
    VerifiedInput,
    ActivityOnOtherQueue,
    MadeOnOtherQueue,
    TwoActivities,
    JsonOrder,
]
ACTIVITIES = [reverse, digest_of, make_blob, fail_with_details, heartbeat_then_retry]
