//! Which workflow run a call's payloads belong to, so that they are stored under the SDKs'
//! run-scoped keys (`v0/ns/{ns}/wt/{type}/wi/{id}/ri/{run}/...`) and one workflow's objects can
//! be found and deleted. A start or a signal names its workflow; a task completion names only
//! its task token, whose run the proxy learnt when it passed the task to the worker.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use bytes::Bytes;
use lru::LruCache;

use crate::payload::reference::WorkflowRun;
use crate::payload::schema::{FieldPath, RunFields};
use crate::payload::wire::{Fields, WIRE_LEN};

/// Tasks in flight through one worker's proxy; a task pushed out (or handed to the worker
/// before a restart) has its payloads stored under the namespace-scoped key instead.
const TASKS: usize = 16_384;

pub struct Runs {
    tasks: Mutex<LruCache<Bytes, WorkflowRun>>,
}

impl Default for Runs {
    fn default() -> Self {
        let entries = NonZeroUsize::new(TASKS).unwrap_or(NonZeroUsize::MIN);
        Runs {
            tasks: Mutex::new(LruCache::new(entries)),
        }
    }
}

impl Runs {
    /// The run a request's payloads belong to: the one its task token was handed out for, or
    /// the workflow it names; `None` when it names none (or an unknown task).
    pub fn of_request(&self, fields: &RunFields, msg: &[u8]) -> Option<WorkflowRun> {
        match fields.task_token.and_then(|number| field(msg, number)) {
            Some(token) => self.lock().get(token).cloned(),
            None => named_run(fields, msg),
        }
    }

    /// Remembers the run of every task an answer hands out.
    pub fn remember(&self, tasks: &[(Option<u32>, RunFields)], msg: &[u8]) {
        for (holder, fields) in tasks {
            match holder {
                None => self.remember_task(fields, msg),
                Some(number) => {
                    for task in all_fields(msg, *number) {
                        self.remember_task(fields, task);
                    }
                }
            }
        }
    }

    fn remember_task(&self, fields: &RunFields, task: &[u8]) {
        let token = fields.task_token.and_then(|number| field(task, number));
        if let (Some(token), Some(run)) = (token, named_run(fields, task)) {
            self.lock().put(Bytes::copy_from_slice(token), run);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<Bytes, WorkflowRun>> {
        // Entries are independent: a panic elsewhere cannot leave one half-written.
        self.tasks.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The run a message names in its own fields; the workflow id is the least it must name.
fn named_run(fields: &RunFields, msg: &[u8]) -> Option<WorkflowRun> {
    let text = |path: Option<FieldPath>| path.and_then(|p| string_at(msg, p)).unwrap_or_default();
    let workflow_id = text(fields.workflow_id);
    (!workflow_id.is_empty()).then(|| WorkflowRun {
        workflow_type: text(fields.workflow_type),
        workflow_id,
        run_id: text(fields.run_id),
    })
}

fn string_at(msg: &[u8], path: FieldPath) -> Option<String> {
    let outer = field(msg, path.outer)?;
    let bytes = match path.inner {
        Some(inner) => field(outer, inner)?,
        None => outer,
    };
    std::str::from_utf8(bytes).ok().map(str::to_owned)
}

/// The last occurrence of a length-delimited field, as protobuf reads a singular one.
fn field(msg: &[u8], number: u32) -> Option<&[u8]> {
    all_fields(msg, number).last()
}

fn all_fields(msg: &[u8], number: u32) -> impl Iterator<Item = &[u8]> {
    Fields::new(msg, 0..msg.len())
        .map_while(Result::ok)
        .filter(move |f| f.number == number && f.wire_type == WIRE_LEN)
        .map(move |f| &msg[f.content])
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use temporalio_protos::temporal::api::common::v1::{WorkflowExecution, WorkflowType};
    use temporalio_protos::temporal::api::workflowservice::v1::{
        PollActivityTaskQueueResponse, PollWorkflowTaskQueueResponse, RespondActivityTaskCompletedRequest,
        RespondWorkflowTaskCompletedResponse, SignalWorkflowExecutionRequest, StartWorkflowExecutionRequest,
    };

    use super::*;
    use crate::payload::schema::{Method, Schema};

    const SERVICE: &str = "/temporal.api.workflowservice.v1.WorkflowService/";

    fn method(name: &str) -> Method {
        let schema = Schema::temporal().expect("the built-in descriptor set decodes");
        schema
            .method(&format!("{SERVICE}{name}"))
            .cloned()
            .expect("a known method")
    }

    fn run(workflow_type: &str, workflow_id: &str, run_id: &str) -> WorkflowRun {
        WorkflowRun {
            workflow_type: workflow_type.into(),
            workflow_id: workflow_id.into(),
            run_id: run_id.into(),
        }
    }

    fn execution(workflow_id: &str, run_id: &str) -> Option<WorkflowExecution> {
        Some(WorkflowExecution {
            workflow_id: workflow_id.into(),
            run_id: run_id.into(),
        })
    }

    #[test]
    fn a_start_or_a_signal_names_its_workflow() {
        let runs = Runs::default();
        let start = StartWorkflowExecutionRequest {
            workflow_id: "order-1".into(),
            workflow_type: Some(WorkflowType { name: "Order".into() }),
            ..Default::default()
        };
        let found = runs.of_request(&method("StartWorkflowExecution").run, &start.encode_to_vec());
        assert_eq!(found, Some(run("Order", "order-1", "")));
        let signal = SignalWorkflowExecutionRequest {
            workflow_execution: execution("order-1", "r1"),
            ..Default::default()
        };
        let found = runs.of_request(&method("SignalWorkflowExecution").run, &signal.encode_to_vec());
        assert_eq!(found, Some(run("", "order-1", "r1")));
    }

    #[test]
    fn a_completion_belongs_to_the_run_its_task_was_handed_out_for() {
        let runs = Runs::default();
        let poll = PollActivityTaskQueueResponse {
            task_token: b"activity-token".to_vec(),
            workflow_execution: execution("order-1", "r1"),
            workflow_type: Some(WorkflowType { name: "Order".into() }),
            ..Default::default()
        };
        runs.remember(&method("PollActivityTaskQueue").tasks, &poll.encode_to_vec());
        let done = RespondActivityTaskCompletedRequest {
            task_token: b"activity-token".to_vec(),
            ..Default::default()
        };
        let completed = method("RespondActivityTaskCompleted");
        assert_eq!(
            runs.of_request(&completed.run, &done.encode_to_vec()),
            Some(run("Order", "order-1", "r1"))
        );
        let unknown = RespondActivityTaskCompletedRequest {
            task_token: b"another".to_vec(),
            ..Default::default()
        };
        assert_eq!(
            runs.of_request(&completed.run, &unknown.encode_to_vec()),
            None,
            "never handed out here"
        );
    }

    #[test]
    fn tasks_handed_out_eagerly_are_remembered_too() {
        let runs = Runs::default();
        let answer = RespondWorkflowTaskCompletedResponse {
            workflow_task: Some(PollWorkflowTaskQueueResponse {
                task_token: b"next".to_vec(),
                workflow_execution: execution("order-1", "r1"),
                workflow_type: Some(WorkflowType { name: "Order".into() }),
                ..Default::default()
            }),
            activity_tasks: vec![PollActivityTaskQueueResponse {
                task_token: b"eager".to_vec(),
                workflow_execution: execution("order-1", "r1"),
                workflow_type: Some(WorkflowType { name: "Order".into() }),
                ..Default::default()
            }],
            ..Default::default()
        };
        runs.remember(
            &method("RespondWorkflowTaskCompleted").tasks,
            &answer.encode_to_vec(),
        );
        for token in [&b"next"[..], b"eager"] {
            let done = RespondActivityTaskCompletedRequest {
                task_token: token.to_vec(),
                ..Default::default()
            };
            let found = runs.of_request(&method("RespondActivityTaskCompleted").run, &done.encode_to_vec());
            assert_eq!(found, Some(run("Order", "order-1", "r1")));
        }
    }
}
