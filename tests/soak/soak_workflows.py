"""The soak's workflows: each carries payloads through a different part of the Temporal API and
ends with something the driver checks against the SHA-256 of the bytes it expects.

Unlike the end-to-end workflows, they must outlast faults: activities retry quickly and for
as long as it takes, and a workflow has no execution timeout, so a run finishes once the
store, the proxy or the server are back.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from workflows import blob, digest, make_blob, reverse

# A 50 MiB activity under a slow store still ends well within the timeout; an attempt lost
# with a killed proxy is retried after it rather than after the SDK's default of minutes.
ACTIVITY_OPTIONS = dict(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(milliseconds=500), maximum_interval=timedelta(seconds=5)
    ),
)


def fan_out_digest(blobs: list[bytes]) -> str:
    """What FanOut returns for its activities' results, in order."""
    return digest("".join(digest(b) for b in blobs).encode())


def letters_digest(letters: list[bytes]) -> str:
    """What Mailbox returns for the letters posted to it, in order."""
    return digest(b"".join(letters))


@workflow.defn
class Relay:
    """The workflow's input through an activity and back as its result: a workflow input, an
    activity input, an activity result and a workflow result, all of the input's size."""

    @workflow.run
    async def run(self, data: bytes) -> bytes:
        return await workflow.execute_activity(reverse, data, **ACTIVITY_OPTIONS)


@workflow.defn
class FanOut:
    """`width` activities at once, each returning a payload of `size`."""

    @workflow.run
    async def run(self, seed: int, size: int, width: int) -> str:
        blobs = await asyncio.gather(
            *(
                workflow.execute_activity(make_blob, args=[seed + i, size], **ACTIVITY_OPTIONS)
                for i in range(width)
            )
        )
        return fan_out_digest(list(blobs))


@workflow.defn
class Mailbox:
    """Letters come in as signals, by index (a signal the client sends again is the same
    letter), and one update swaps a payload for its reverse."""

    def __init__(self) -> None:
        self._letters: dict[int, bytes] = {}
        self._swapped = False

    @workflow.run
    async def run(self, count: int) -> str:
        await workflow.wait_condition(
            lambda: len(self._letters) == count
            and self._swapped
            and workflow.all_handlers_finished()
        )
        return letters_digest([self._letters[i] for i in range(count)])

    @workflow.signal
    def post(self, index: int, letter: bytes) -> None:
        self._letters[index] = letter

    @workflow.update
    async def swap(self, data: bytes) -> bytes:
        self._swapped = True
        return data[::-1]


@workflow.defn
class Generations:
    """Continue-as-new with a payload: each run makes the next one's input with an activity,
    and a run handed bytes other than those made for it fails at once."""

    @workflow.run
    async def run(self, seed: int, size: int, left: int, data: bytes = b"") -> str:
        if data and digest(data) != digest(blob(seed + left, size)):
            raise ApplicationError(
                f"generation {left} was handed the wrong bytes", non_retryable=True
            )
        if left == 0:
            return digest(data)
        made = await workflow.execute_activity(
            make_blob, args=[seed + left - 1, size], **ACTIVITY_OPTIONS
        )
        workflow.continue_as_new(args=[seed, size, left - 1, made])


WORKFLOWS = [Relay, FanOut, Mailbox, Generations]
ACTIVITIES = [reverse, make_blob]
