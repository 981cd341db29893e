//! A worker whose poll fails only polls again: the task itself would sit on the server
//! until its timeout, with nothing in history to say why. When the proxy cannot put back
//! the payloads of a polled task, it fails that task on the server, as the SDK's own
//! External Storage does, with a message that names the object. Temporal then retries it.

use bytes::Bytes;
use http::HeaderMap;
use prost::Message;
use temporalio_protos::temporal::api::enums::v1::WorkflowTaskFailedCause;
use temporalio_protos::temporal::api::failure::v1::{ApplicationFailureInfo, Failure, failure::FailureInfo};
use temporalio_protos::temporal::api::workflowservice::v1::{
    PollActivityTaskQueueRequest, PollActivityTaskQueueResponse, PollWorkflowTaskQueueRequest,
    PollWorkflowTaskQueueResponse, RespondActivityTaskFailedRequest, RespondWorkflowTaskFailedRequest,
};
use tonic::Status;
use tonic::body::Body;
use tower::ServiceExt;

const SERVICE: &str = "/temporal.api.workflowservice.v1.WorkflowService/";
const FAILURE_TYPE: &str = "claimcheck.PayloadUnavailable";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    Workflow,
    Activity,
}

impl TaskKind {
    /// The kind of task a method polls for, if it is a task poll.
    pub fn of(path: &str) -> Option<TaskKind> {
        match path.strip_prefix(SERVICE)? {
            "PollWorkflowTaskQueue" => Some(TaskKind::Workflow),
            "PollActivityTaskQueue" => Some(TaskKind::Activity),
            _ => None,
        }
    }
}

/// A polled task the proxy could not deliver.
pub struct UndeliveredTask {
    pub kind: TaskKind,
    /// The poll's metadata: the failure is reported with the worker's own credentials.
    pub headers: HeaderMap,
    pub poll_request: Bytes,
    pub poll_response: Bytes,
    pub namespace: String,
}

/// Fails the task on the server; problems doing so are logged, never raised, because the
/// poll already fails with `status`.
pub async fn fail_on_server(upstream: &tonic::transport::Channel, task: UndeliveredTask, status: &Status) {
    let Some((method, request)) = respond_failed(&task, status) else {
        tracing::warn!(kind = ?task.kind, "cannot read the task token of an undelivered task");
        return;
    };
    match call(upstream, method, task.headers, request).await {
        Ok(()) => {
            tracing::info!(kind = ?task.kind, reason = status.message(), "failed the undelivered task on the server")
        }
        Err(e) => {
            tracing::warn!(kind = ?task.kind, error = %e, "could not fail the undelivered task; it will time out")
        }
    }
}

fn failure(status: &Status) -> Failure {
    let info = ApplicationFailureInfo {
        r#type: FAILURE_TYPE.into(),
        non_retryable: false,
        ..Default::default()
    };
    Failure {
        message: format!("{:?}: {}", status.code(), status.message()),
        source: "claimcheck".into(),
        failure_info: Some(FailureInfo::ApplicationFailureInfo(info)),
        ..Default::default()
    }
}

fn respond_failed(task: &UndeliveredTask, status: &Status) -> Option<(&'static str, Vec<u8>)> {
    let failure = Some(failure(status));
    let namespace = task.namespace.clone();
    match task.kind {
        TaskKind::Workflow => {
            let poll = PollWorkflowTaskQueueRequest::decode(task.poll_request.clone()).ok()?;
            let token = PollWorkflowTaskQueueResponse::decode(task.poll_response.clone())
                .ok()?
                .task_token;
            let request = RespondWorkflowTaskFailedRequest {
                task_token: token,
                cause: WorkflowTaskFailedCause::WorkflowWorkerUnhandledFailure.into(),
                failure,
                identity: poll.identity,
                namespace,
                ..Default::default()
            };
            Some(("RespondWorkflowTaskFailed", request.encode_to_vec()))
        }
        TaskKind::Activity => {
            let poll = PollActivityTaskQueueRequest::decode(task.poll_request.clone()).ok()?;
            let token = PollActivityTaskQueueResponse::decode(task.poll_response.clone())
                .ok()?
                .task_token;
            let request = RespondActivityTaskFailedRequest {
                task_token: token,
                failure,
                identity: poll.identity,
                namespace,
                ..Default::default()
            };
            Some(("RespondActivityTaskFailed", request.encode_to_vec()))
        }
    }
}

async fn call(
    upstream: &tonic::transport::Channel,
    method: &str,
    mut headers: HeaderMap,
    msg: Vec<u8>,
) -> Result<(), String> {
    // The poll's own deadline is nearly spent, and this message is not compressed.
    headers.insert("grpc-timeout", http::HeaderValue::from_static("10S"));
    headers.remove("grpc-encoding");
    let framed = crate::payload::frame::encode(vec![Bytes::from(msg)]).map_err(|e| e.to_string())?;
    let framed = Bytes::from(framed.concat());
    let mut request = http::Request::post(format!("{SERVICE}{method}"))
        .body(Body::new(http_body_util::Full::new(framed)))
        .map_err(|e| e.to_string())?;
    *request.headers_mut() = headers;
    let response = upstream
        .clone()
        .oneshot(request)
        .await
        .map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let collected = http_body_util::BodyExt::collect(body)
        .await
        .map_err(|e| e.to_string())?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let status = trailers.get("grpc-status").or(parts.headers.get("grpc-status"));
    match status.and_then(|s| s.to_str().ok()) {
        Some("0") => Ok(()),
        other => {
            let message = trailers.get("grpc-message").or(parts.headers.get("grpc-message"));
            Err(format!("grpc-status {other:?}: {message:?}"))
        }
    }
}
