//! The transparent gRPC proxy between Temporal workers/clients and the frontend.
//!
//! Every unary call of `WorkflowService` and `OperatorService` is read whole, its
//! payloads offloaded, forwarded with its metadata unchanged, and the answer's
//! references put back before it returns. Headers, trailers and status details pass
//! through; a message with nothing to change is forwarded byte for byte.

mod body;
mod route;
mod runs;
mod status;
mod task;
mod upstream;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::BodyExt;
use tonic::body::Body;
use tonic::{Code, Status};
use tower::ServiceExt;

use crate::metrics::{CodeLabel, MethodLabel, Metrics};
use crate::payload::budget::{Budget, Held};
use crate::payload::frame;
use crate::payload::reference::Target;
use crate::payload::schema::Method;
use crate::payload::transform::{Current, TransformError, Transformer};
use crate::payload::wire::{Fields, WIRE_LEN};
use task::{TaskKind, UndeliveredTask};

pub use route::serve;
pub use upstream::{UpstreamTls, connect};

const GRPC_ENCODING: &str = "grpc-encoding";
const STATUS_DETAILS: &str = "grpc-status-details-bin";
/// Headers that belong to one hop (RFC 9113 §8.2.2) or that the proxy recomputes.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest message accepted from a client or the server (decompressed).
    pub max_message_bytes: usize,
    /// Largest response the client accepts; Core-based SDKs default to 128 MiB
    /// (`TEMPORAL_MAX_INCOMING_GRPC_BYTES`).
    pub client_max_message_bytes: usize,
}

pub struct Proxy {
    transformer: Arc<Current>,
    upstream: tonic::transport::Channel,
    /// The runs of the tasks handed out through this proxy, by task token.
    runs: runs::Runs,
    limits: Limits,
    /// Message bytes in flight; the codec server, when there is one, holds from it too.
    inflight: Budget,
    metrics: Arc<Metrics>,
}

impl Proxy {
    /// A proxy over the configuration's `transformer`, holding message bytes from `inflight`.
    pub fn new(
        transformer: Arc<Current>,
        inflight: Budget,
        upstream: tonic::transport::Channel,
        limits: Limits,
        metrics: Arc<Metrics>,
    ) -> Self {
        Proxy {
            transformer,
            upstream,
            runs: runs::Runs::default(),
            limits,
            inflight,
            metrics,
        }
    }

    /// The transformer of the current configuration.
    fn transformer(&self) -> Arc<Transformer> {
        self.transformer.get()
    }

    /// Serves one call; every failure becomes a gRPC status, never a dropped stream.
    pub async fn handle(self: Arc<Self>, req: Request<Body>) -> Response<Body> {
        let started = Instant::now();
        let method = req.uri().path().rsplit('/').next().unwrap_or_default().to_owned();
        let response = match self.forward(req).await {
            Ok(response) => response,
            Err(status) => {
                tracing::warn!(%method, code = ?status.code(), status = status.message(), "call failed in the proxy");
                count_error(&self.metrics, &status);
                status.into_http()
            }
        };
        self.metrics
            .rpc_seconds
            .get_or_create(&MethodLabel { method })
            .observe(started.elapsed().as_secs_f64());
        response
    }

    async fn forward(&self, req: Request<Body>) -> Result<Response<Body>, Status> {
        let transformer = self.transformer();
        let method = transformer.schema().method(req.uri().path());
        let task_kind = TaskKind::of(req.uri().path());
        let (mut parts, body) = req.into_parts();
        let (body, _, _request_permit) = self.read_body(body).await?;
        let msg = frame::decode(
            body.clone(),
            header(&parts.headers, GRPC_ENCODING),
            self.limits.max_message_bytes,
        )
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let namespace = method
            .and_then(|m| m.namespace_field)
            .map(|f| string_field(&msg, f))
            .unwrap_or_default();
        let body = match method.and_then(|m| m.request) {
            Some(root) => {
                let target = Target {
                    namespace: namespace.clone(),
                    workflow: method.and_then(|m| self.runs.of_request(&m.run, &msg)),
                };
                match transformer.offload(root, &msg, &target).await {
                    Ok(Some(rewritten)) => {
                        frame::encode(rewritten.into_chunks()).map_err(status::internal)?
                    }
                    Ok(None) => vec![body],
                    Err(e) => return Err(status::for_request(&e)),
                }
            }
            None => vec![body],
        };
        strip_hop_by_hop(&mut parts.headers);
        // Only a task poll needs its metadata again, to fail an undeliverable task.
        let poll = task_kind.map(|kind| UndeliveredTask {
            kind,
            headers: parts.headers.clone(),
            poll_request: msg.clone(),
            poll_response: Bytes::new(),
            namespace: namespace.clone(),
        });
        let upstream_req = Request::from_parts(parts, body::whole(body, None));
        let response = self.upstream.clone().oneshot(upstream_req).await.map_err(|e| {
            Status::unavailable(format!(
                "Temporal frontend unreachable from the claimcheck proxy: {e}"
            ))
        })?;
        self.answer(&transformer, response, method, &namespace, poll)
            .await
    }

    /// Puts back the payloads of the server's answer, in its message and its status details;
    /// a polled task whose payloads cannot be put back is failed on the server.
    async fn answer(
        &self,
        transformer: &Arc<Transformer>,
        response: Response<Body>,
        method: Option<&Method>,
        namespace: &str,
        poll: Option<UndeliveredTask>,
    ) -> Result<Response<Body>, Status> {
        let (mut parts, body) = response.into_parts();
        let (data, mut trailers, response_permit) = self.read_body(body).await?;
        // A trailers-only answer (an error) carries its status in the headers.
        rehydrate_status_details(transformer, &mut parts.headers, namespace).await?;
        if let Some(trailers) = trailers.as_mut() {
            rehydrate_status_details(transformer, trailers, namespace).await?;
        }
        strip_hop_by_hop(&mut parts.headers);
        let Some(root) = method.and_then(|m| m.response).filter(|_| !data.is_empty()) else {
            return Ok(Response::from_parts(parts, body::whole(vec![data], trailers)));
        };
        let msg = frame::decode(
            data.clone(),
            header(&parts.headers, GRPC_ENCODING),
            self.limits.max_message_bytes,
        )
        .map_err(status::internal)?;
        if let Some(method) = method.filter(|m| !m.tasks.is_empty()) {
            self.runs.remember(&method.tasks, &msg);
        }
        let streaming = match transformer.rehydrate_streaming(root, &msg, namespace).await {
            Ok(Some(streaming)) => streaming,
            Ok(None) => return Ok(Response::from_parts(parts, body::whole(vec![data], trailers))),
            Err(e) => return Err(self.undelivered(&e, poll, msg).await),
        };
        self.check_client_limit(streaming.len)?;
        let rehydrated_permit = self.reserve(streaming.len)?;
        let prefix = frame::prefix(streaming.len).map_err(status::internal)?;
        let (upstream, metrics) = (self.upstream.clone(), self.metrics.clone());
        let fail = move |error: &TransformError| {
            let status = status::for_response(error);
            tracing::warn!(code = ?status.code(), status = status.message(), "answer failed while it streamed");
            count_error(&metrics, &status);
            if let Some(task) = poll {
                let failure = status.clone();
                tokio::spawn(async move { fail_task(&upstream, task, msg, &failure).await });
            }
            status
        };
        let hold = (response_permit, rehydrated_permit);
        let body = body::streamed(prefix, streaming.chunks, trailers, fail, hold);
        Ok(Response::from_parts(parts, body))
    }

    /// The status of an answer whose payloads cannot be put back, its polled task failed.
    async fn undelivered(&self, error: &TransformError, poll: Option<UndeliveredTask>, msg: Bytes) -> Status {
        let status = status::for_response(error);
        if let Some(task) = poll {
            fail_task(&self.upstream, task, msg, &status).await;
        }
        status
    }

    /// The body's message, its trailers, and the budget it holds: charged as soon as the
    /// prefix declares the length, before room is made for it.
    async fn read_body(&self, mut body: Body) -> Result<(Bytes, Option<HeaderMap>, Held), Status> {
        let limit = self.limits.max_message_bytes + 5;
        let mut message = frame::Collector::default();
        let mut trailers = None;
        let mut permit = None;
        while let Some(next) = body.frame().await {
            let next = next.map_err(|e| Status::unavailable(format!("message stream broken: {e}")))?;
            match next.into_data() {
                Ok(chunk) => message.push(chunk, limit).map_err(|_| {
                    Status::resource_exhausted(format!(
                        "message larger than the claimcheck proxy's limit of {} bytes (limits.maxMessageBytes)",
                        self.limits.max_message_bytes
                    ))
                })?,
                Err(other) => trailers = other.into_trailers().ok(),
            }
            if let (None, Some(declared)) = (&permit, message.declared()) {
                permit = Some(self.reserve(declared)?);
                message.expect_declared();
            }
        }
        let message = message.finish();
        // A body too short for a prefix (empty, or not gRPC) holds what it is.
        let permit = match permit {
            Some(permit) => permit,
            None => self.reserve(message.len())?,
        };
        Ok((message, trailers, permit))
    }

    fn check_client_limit(&self, len: usize) -> Result<(), Status> {
        let limit = self.limits.client_max_message_bytes;
        if len + 5 > limit {
            return Err(Status::resource_exhausted(format!(
                "the response is {len} bytes once its payloads are put back, over the client's limit of {limit} bytes; \
                 raise TEMPORAL_MAX_INCOMING_GRPC_BYTES in the worker and limits.clientMaxMessageBytes in the proxy, \
                 or lower the history page size"
            )));
        }
        Ok(())
    }

    /// Holds `len` bytes of the in-flight budget until the permit is dropped.
    fn reserve(&self, len: usize) -> Result<Held, Status> {
        self.inflight.try_hold(len).map_err(|_| {
            Status::new(
                Code::ResourceExhausted,
                format!(
                    "the claimcheck proxy is holding its in-flight budget of {} bytes (limits.inflightBytes); \
                     a message of {len} bytes must wait: retry",
                    self.inflight.bytes()
                ),
            )
        })
    }
}

fn count_error(metrics: &Metrics, status: &Status) {
    let code = format!("{:?}", status.code());
    metrics.errors.get_or_create(&CodeLabel { code }).inc();
}

/// Fails on the server a polled task whose payloads in `poll_response` cannot be put back, so
/// that Temporal retries it rather than wait for its timeout.
async fn fail_task(
    upstream: &tonic::transport::Channel,
    task: UndeliveredTask,
    poll_response: Bytes,
    status: &Status,
) {
    let task = UndeliveredTask {
        poll_response,
        ..task
    };
    task::fail_on_server(upstream, task, status).await;
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// A top-level string field of a message, such as a request's `namespace`.
fn string_field(msg: &[u8], number: u32) -> String {
    Fields::new(msg, 0..msg.len())
        .map_while(Result::ok)
        .find(|f| f.number == number && f.wire_type == WIRE_LEN)
        .and_then(|f| std::str::from_utf8(&msg[f.content]).ok().map(str::to_owned))
        .unwrap_or_default()
}

async fn rehydrate_status_details(
    transformer: &Transformer,
    headers: &mut HeaderMap,
    namespace: &str,
) -> Result<(), Status> {
    let Some(root) = transformer.schema().status() else {
        return Ok(());
    };
    let Some(encoded) = headers.get(STATUS_DETAILS) else {
        return Ok(());
    };
    let Ok(details) = status::decode_details(encoded) else {
        // Not ours to judge: the client reports undecodable details itself.
        return Ok(());
    };
    match transformer.rehydrate(root, &details, namespace).await {
        Ok(Some(rewritten)) => {
            headers.insert(STATUS_DETAILS, status::encode_details(&rewritten.to_vec())?);
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) => Err(status::for_response(&e)),
    }
}
