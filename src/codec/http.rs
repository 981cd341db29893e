//! The codec server's HTTP side: routes by path suffix, answers CORS preflights for the
//! configured origins only, authorizes, bounds the body, and counts and audits every call.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited, StreamBody};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::auth::{Authorizer, Principal, Refusal};
use super::json::Piece;
use super::{Answer, Codec, CodecError, Operation, json};
use crate::config::ServerTlsFiles;
use crate::driver::StoreError;
use crate::metrics::{CodecLabels, Metrics};
use crate::payload::transform::TransformError;
use crate::serve::Bounds;
use crate::tls::ServingCert;

type Body = BoxBody<Bytes, Infallible>;

/// How often tokens and certificate are read again; a mounted Secret changes within the
/// kubelet's sync period, so a few seconds more is unnoticeable.
const REFRESH: Duration = Duration::from_secs(2);
const ALLOW_HEADERS: &str = "Content-Type, X-Namespace, Authorization, Authorization-Extras";
const X_NAMESPACE: &str = "x-namespace";
/// A request's body is a history page's payloads; the UI and the CLI send it at once. An
/// answer, up to downloadMaxBytes, must be read within `max_connection`, or the connection is
/// dropped with the budget it holds.
const BOUNDS: Bounds = Bounds {
    max_connections: 1024,
    client_timeout: Duration::from_secs(30),
    max_connection: Duration::from_secs(300),
};

/// The browser origins allowed to call, exactly (scheme, host and port); never `*`, since
/// the UI may send credentials.
#[derive(Debug, Clone, Default)]
pub struct Cors {
    pub origins: Vec<String>,
}

impl Cors {
    fn allows(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o == origin)
    }
}

pub struct CodecServer {
    pub codec: Codec,
    pub auth: Authorizer,
    pub cors: Cors,
    pub metrics: Arc<Metrics>,
    /// The largest request body accepted.
    pub max_request_bytes: usize,
}

impl CodecServer {
    /// Re-reads, every few seconds until aborted, what a mounted Secret changes under a
    /// running codec: the tokens, and the certificate (`cert`, served, and its files). What does
    /// not read keeps what is in force, and is logged.
    pub async fn refresh(self: Arc<Self>, cert: Option<(Arc<ServingCert>, ServerTlsFiles)>) {
        let mut served: Option<Vec<u8>> = None;
        loop {
            tokio::time::sleep(REFRESH).await;
            match self.auth.reload_tokens() {
                Ok(true) => tracing::info!("codec tokens reloaded"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reload the codec tokens; keeping those in force")
                }
            }
            let Some((serving, files)) = &cert else {
                continue;
            };
            let read = (std::fs::read(&files.cert_file), std::fs::read(&files.key_file));
            let (Ok(cert_pem), Ok(key_pem)) = read else {
                tracing::warn!(cert = %files.cert_file.display(), "cannot read the codec certificate; keeping the one served");
                continue;
            };
            let both = [cert_pem.as_slice(), key_pem.as_slice()].concat();
            if served.as_ref() == Some(&both) {
                continue;
            }
            match serving.replace(&cert_pem, &key_pem) {
                Ok(()) if served.is_some() => tracing::info!("codec certificate reloaded"),
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "the codec certificate changed but cannot be used; keeping the one served")
                }
            }
            served = Some(both);
        }
    }

    /// Serves `listener` until the task is aborted; with `tls`, over HTTPS.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, tls: Option<TlsAcceptor>) {
        crate::serve::accept(listener, tls, BOUNDS, "codec", move |request, peer| {
            let server = self.clone();
            async move { Ok(server.handle(request, peer).await) }
        })
        .await;
    }

    async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .map(str::to_owned);
        let granted = origin
            .as_deref()
            .filter(|o| self.cors.allows(o))
            .map(str::to_owned);
        if origin.is_some() && granted.is_none() {
            tracing::warn!(%peer, origin = origin.as_deref().unwrap_or_default(), "codec call from an origin that is not allowed");
            return text(StatusCode::FORBIDDEN, "this origin may not call the codec server");
        }
        let mut response = if request.method() == Method::OPTIONS {
            preflight()
        } else {
            self.call(request, peer).await
        };
        if let Some(origin) = granted {
            grant(response.headers_mut(), &origin);
        }
        response
    }

    async fn call(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        if request.method() != Method::POST {
            return text(StatusCode::METHOD_NOT_ALLOWED, "the codec server takes POST");
        }
        let Some((operation, path_namespace)) = route(&request) else {
            return text(
                StatusCode::NOT_FOUND,
                "the codec server serves /decode, /encode and /download",
            );
        };
        let Some(namespace) = namespace(request.headers(), path_namespace) else {
            return text(
                StatusCode::BAD_REQUEST,
                "no namespace: send X-Namespace, or call /{namespace}/decode",
            );
        };
        let authorization = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let principal = match self.auth.authorize(authorization, &namespace).await {
            Ok(principal) => principal,
            Err(refusal) => return self.refuse(operation, &namespace, peer, refusal),
        };
        let result = self.answer(operation, &namespace, request).await;
        self.record(operation, &namespace, &principal, &result);
        match result {
            Ok((answer, chunks)) => json_stream(chunks, answer),
            Err(e) => text(status_of(&e), &e.to_string()),
        }
    }

    async fn answer(
        &self,
        operation: Operation,
        namespace: &str,
        request: Request<Incoming>,
    ) -> Result<(Answer, Vec<Piece>), CodecError> {
        // The body until it is parsed; the codec then holds what the call needs, all at once,
        // after this is released, so that no call waits for budget while holding some.
        let announced = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
            .unwrap_or(self.max_request_bytes);
        let budget = self.codec.budget();
        let wanted = announced.min(self.max_request_bytes).saturating_mul(2);
        let held = budget.hold(wanted.min(budget.bytes())).await?;
        let body = Limited::new(request.into_body(), self.max_request_bytes).collect();
        let body = match tokio::time::timeout(BOUNDS.client_timeout, body).await {
            Ok(Ok(body)) => body.to_bytes(),
            Ok(Err(e)) if e.is::<LengthLimitError>() => {
                return Err(CodecError::RequestTooLarge(self.max_request_bytes));
            }
            Ok(Err(e)) => return Err(CodecError::Request(e.to_string())),
            Err(_) => return Err(CodecError::Request("the body did not arrive in time".into())),
        };
        let payloads = json::parse(&body)?;
        drop((body, held));
        let answer = self.codec.answer(operation, payloads, namespace).await?;
        let chunks = json::render(&answer.payloads)?;
        Ok((answer, chunks))
    }

    fn refuse(
        &self,
        operation: Operation,
        namespace: &str,
        peer: SocketAddr,
        refusal: Refusal,
    ) -> Response<Body> {
        let (status, outcome) = match &refusal {
            Refusal::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            Refusal::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            Refusal::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        // The namespace of an unauthenticated call is the caller's word: not a label.
        let label = if status == StatusCode::FORBIDDEN {
            namespace
        } else {
            ""
        };
        self.count(operation, label, outcome);
        tracing::warn!(target: "claimcheck::audit", %peer, operation = operation.name(), namespace, outcome, reason = %refusal, "codec call refused");
        let mut response = text(status, &refusal.to_string());
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }

    fn record(
        &self,
        operation: Operation,
        namespace: &str,
        principal: &Principal,
        result: &Result<(Answer, Vec<Piece>), CodecError>,
    ) {
        match result {
            Ok((answer, _)) => {
                self.count(operation, namespace, "ok");
                for object in &answer.objects {
                    tracing::info!(target: "claimcheck::audit", subject = %principal.subject, namespace,
                        operation = operation.name(), object = %object, outcome = "ok", "codec call");
                }
            }
            Err(e) => {
                let outcome = outcome_of(e);
                self.count(operation, namespace, outcome);
                tracing::warn!(target: "claimcheck::audit", subject = %principal.subject, namespace,
                    operation = operation.name(), outcome, error = %e, "codec call failed");
            }
        }
    }

    fn count(&self, operation: Operation, namespace: &str, outcome: &'static str) {
        let labels = CodecLabels {
            operation: operation.name(),
            namespace: namespace.to_owned(),
            outcome,
        };
        self.metrics.codec_requests.get_or_create(&labels).inc();
    }
}

/// The operation a path names by its last segment, and the segment before it (a namespace,
/// when the endpoint is `/{namespace}/decode`).
fn route(request: &Request<Incoming>) -> Option<(Operation, Option<String>)> {
    let mut segments = request.uri().path().rsplit('/');
    let operation = match segments.next()? {
        "decode" => {
            let preserve_refs = request
                .uri()
                .query()
                .into_iter()
                .flat_map(|q| q.split('&'))
                .filter_map(|pair| pair.split_once('='))
                .any(|(k, v)| k == "preserveStorageRefs" && v.eq_ignore_ascii_case("true"));
            Operation::Decode { preserve_refs }
        }
        "encode" => Operation::Encode,
        "download" => Operation::Download,
        _ => return None,
    };
    let namespace = segments.next().filter(|s| !s.is_empty()).map(str::to_owned);
    Some((operation, namespace))
}

/// `X-Namespace` (the UI and the CLI always send it) wins: the path segment may be an
/// Ingress's prefix rather than a namespace.
fn namespace(headers: &HeaderMap, from_path: Option<String>) -> Option<String> {
    headers
        .get(X_NAMESPACE)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .or(from_path)
}

fn status_of(error: &CodecError) -> StatusCode {
    match error {
        CodecError::Body(_)
        | CodecError::NotAReference { .. }
        | CodecError::Reference(_)
        | CodecError::Request(_) => StatusCode::BAD_REQUEST,
        // The UI says "isn't configured to download from external storage" on a 404.
        CodecError::NotOurs { .. } => StatusCode::NOT_FOUND,
        CodecError::TooLarge { .. } | CodecError::RequestTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        CodecError::NotServed { .. } => StatusCode::FORBIDDEN,
        CodecError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        CodecError::Render(_) => StatusCode::INTERNAL_SERVER_ERROR,
        CodecError::Transform(e) => match e {
            TransformError::Denied { .. } => StatusCode::FORBIDDEN,
            TransformError::Wire(_) | TransformError::Reference(_) => StatusCode::BAD_REQUEST,
            TransformError::HashMismatch { .. } | TransformError::SizeMismatch { .. } => {
                StatusCode::BAD_GATEWAY
            }
            TransformError::Store(StoreError::NotFound { .. }) => StatusCode::GONE,
            TransformError::Store(StoreError::BadKey { .. }) => StatusCode::FORBIDDEN,
            TransformError::Store(StoreError::Unavailable { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            TransformError::Encode(_) => StatusCode::INTERNAL_SERVER_ERROR,
        },
    }
}

fn outcome_of(error: &CodecError) -> &'static str {
    match status_of(error) {
        StatusCode::FORBIDDEN => "denied",
        StatusCode::BAD_GATEWAY => "integrity",
        StatusCode::GONE => "missing",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        s if s.is_client_error() => "bad_request",
        _ => "error",
    }
}

fn preflight() -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()).boxed());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOW_HEADERS),
    );
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    response
}

fn grant(headers: &mut HeaderMap, origin: &str) {
    if let Ok(origin) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(message.to_owned())).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The answer in chunks; the budget it holds is released when the last chunk is sent.
fn json_stream(pieces: Vec<Piece>, answer: Answer) -> Response<Body> {
    let Answer { payloads, held, .. } = answer;
    drop(payloads);
    let frames = futures::stream::iter(json::chunks(pieces)).map(move |chunk| {
        let _ = &held;
        Ok::<_, Infallible>(Frame::data(chunk))
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
