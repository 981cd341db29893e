"""The retries a workflow needed, read from its history on the server (every run of a
continue-as-new chain): activity attempts beyond the first, failed or timed-out workflow tasks."""

from __future__ import annotations

from collections import Counter

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

WORKFLOW_TASK_FAILURES = (
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
)


async def retries(client: Client, workflow_id: str, first_run_id: str) -> Counter:
    found = Counter()
    run_id: str | None = first_run_id
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        run_id = None
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                found["activity retries"] += event.activity_task_started_event_attributes.attempt - 1
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
                # A failed workflow task's retries are not all in history; its attempt counts them.
                found["workflow task retries"] += event.workflow_task_scheduled_event_attributes.attempt - 1
            elif event.event_type in WORKFLOW_TASK_FAILURES:
                found["workflow task failures"] += 1
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
                run_id = event.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return found
