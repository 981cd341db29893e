//! gRPC statuses of the proxy's own failures, and the `grpc-status-details-bin` trailer.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use bytes::Bytes;
use http::HeaderValue;
use tonic::{Code, Status};

use crate::driver::StoreError;
use crate::payload::transform::TransformError;

/// Fail closed, with a status whose message names the object (design §4).
fn code(error: &TransformError) -> Code {
    match error {
        TransformError::Store(StoreError::Unavailable { .. }) => Code::Unavailable,
        TransformError::Store(StoreError::NotFound { .. })
        | TransformError::Reference(_)
        | TransformError::HashMismatch { .. }
        | TransformError::SizeMismatch { .. } => Code::DataLoss,
        TransformError::Store(StoreError::BadKey { .. }) | TransformError::Denied { .. } => {
            Code::PermissionDenied
        }
        TransformError::Wire(_) | TransformError::Encode(_) => Code::Internal,
    }
}

/// A failure while offloading a client's request; malformed client bytes are the client's error.
pub fn for_request(error: &TransformError) -> Status {
    match error {
        TransformError::Wire(e) => {
            Status::invalid_argument(format!("claimcheck proxy: malformed request: {e}"))
        }
        other => Status::new(code(other), format!("claimcheck proxy: {other}")),
    }
}

/// A failure while putting payloads back into the server's answer.
pub fn for_response(error: &TransformError) -> Status {
    Status::new(code(error), format!("claimcheck proxy: {error}"))
}

pub fn internal(error: impl std::fmt::Display) -> Status {
    Status::internal(format!("claimcheck proxy: {error}"))
}

pub fn decode_details(value: &HeaderValue) -> Result<Bytes, base64::DecodeError> {
    // gRPC senders may pad or not; accept both.
    let text = value.as_bytes();
    STANDARD_NO_PAD
        .decode(text)
        .or_else(|_| STANDARD.decode(text))
        .map(Bytes::from)
}

pub fn encode_details(details: &[u8]) -> Result<HeaderValue, Status> {
    HeaderValue::from_str(&STANDARD_NO_PAD.encode(details)).map_err(internal)
}
