//! The codec server: the Temporal Web UI and CLI send it the payloads of a history and get
//! back what the proxy offloaded (docs/codec-server.md is the contract). Every reference is
//! resolved through the proxy's own verified path: the same stores, scope check, size and
//! SHA-256. No Kubernetes here; the proxy serves it on a listener of its own.

pub mod auth;
mod http;
pub mod json;
pub mod jwt;

use std::sync::Arc;

use bytes::Bytes;

use crate::config::HELD_PER_BYTE;
use crate::payload::budget::{Budget, Exhausted, Held};
use crate::payload::reference::{Reference, ReferenceError, Target};
use crate::payload::transform::{Current, TransformError};

pub use http::{CodecServer, Cors};

/// What the codec resolves and hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `/decode?preserveStorageRefs=true` (the UI) resolves references up to this size;
    /// larger ones stay references, which the UI shows with a Download button.
    pub decode_max_bytes: u64,
    /// `/download` refuses larger originals, and `/decode` without the flag (the CLI, which
    /// cannot download) resolves up to this size.
    pub download_max_bytes: u64,
}

/// The three calls of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// The UI asks with `preserveStorageRefs=true`; the CLI without, and cannot download.
    Decode {
        preserve_refs: bool,
    },
    Encode,
    Download,
}

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Operation::Decode { .. } => "decode",
            Operation::Encode => "encode",
            Operation::Download => "download",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot read the request: {0}")]
    Request(String),
    #[error(transparent)]
    Body(#[from] json::BodyError),
    #[error("payload {index} is not a storage reference: /download takes only references")]
    NotAReference { index: usize },
    #[error("payload {index} is a reference of driver {driver:?}, which no store of this codec server holds")]
    NotOurs { index: usize, driver: String },
    #[error("{object} is {size} bytes, over this codec server's download limit of {limit} bytes")]
    TooLarge { object: String, size: u64, limit: u64 },
    #[error("{0}")]
    Reference(#[from] ReferenceError),
    #[error("{0}")]
    Transform(#[from] TransformError),
    #[error("the codec server is busy: {0}; retry")]
    Busy(#[from] Exhausted),
    #[error("cannot render a payload: {0}")]
    Render(#[from] prost::DecodeError),
}

/// The answer: the payloads, the objects they came from or went to (for the audit log),
/// and the budget they hold until the answer is sent.
#[derive(Debug, Default)]
pub struct Answer {
    pub payloads: Vec<Bytes>,
    pub objects: Vec<String>,
    pub held: Vec<Held>,
}

pub struct Codec {
    transformer: Arc<Current>,
    budget: Budget,
    limits: Limits,
}

impl Codec {
    pub fn new(transformer: Arc<Current>, budget: Budget, limits: Limits) -> Self {
        Codec {
            transformer,
            budget,
            limits,
        }
    }

    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Answers one call for `namespace`, whose scope every reference must be in.
    pub async fn answer(
        &self,
        operation: Operation,
        payloads: Vec<Bytes>,
        namespace: &str,
    ) -> Result<Answer, CodecError> {
        let mut answer = Answer {
            payloads: Vec::with_capacity(payloads.len()),
            ..Answer::default()
        };
        for (index, payload) in payloads.into_iter().enumerate() {
            let out = match operation {
                Operation::Decode { preserve_refs } => {
                    self.decode(payload, namespace, preserve_refs, &mut answer)
                        .await?
                }
                Operation::Download => self.download(index, payload, namespace, &mut answer).await?,
                Operation::Encode => self.encode(payload, namespace, &mut answer).await?,
            };
            answer.payloads.push(out);
        }
        Ok(answer)
    }

    async fn decode(
        &self,
        payload: Bytes,
        namespace: &str,
        preserve_refs: bool,
        answer: &mut Answer,
    ) -> Result<Bytes, CodecError> {
        let transformer = self.transformer.get();
        let Some(owned) = transformer.owned_reference(&payload)? else {
            return Ok(payload);
        };
        // The UI can download what it is not given; the CLI cannot, so it gets every
        // original a download would. Without a known size the fetch could be any size.
        let limit = match preserve_refs {
            true => self.limits.decode_max_bytes,
            false => self.limits.download_max_bytes,
        };
        if owned.reference.size_bytes.is_none_or(|size| size > limit) {
            tracing::debug!(object = %transformer.object_of(&owned), limit, "reference kept: over the limit");
            return Ok(payload);
        }
        self.resolve(&owned, namespace, answer).await
    }

    async fn download(
        &self,
        index: usize,
        payload: Bytes,
        namespace: &str,
        answer: &mut Answer,
    ) -> Result<Bytes, CodecError> {
        let transformer = self.transformer.get();
        let Some(reference) = Reference::from_payload(&payload)? else {
            return Err(CodecError::NotAReference { index });
        };
        let Some(owned) = transformer.owned_reference(&payload)? else {
            return Err(CodecError::NotOurs {
                index,
                driver: reference.driver_name,
            });
        };
        let size = owned.reference.size_bytes.unwrap_or(0);
        if size > self.limits.download_max_bytes {
            return Err(CodecError::TooLarge {
                object: transformer.object_of(&owned),
                size,
                limit: self.limits.download_max_bytes,
            });
        }
        self.resolve(&owned, namespace, answer).await
    }

    async fn resolve(
        &self,
        owned: &crate::payload::transform::Owned,
        namespace: &str,
        answer: &mut Answer,
    ) -> Result<Bytes, CodecError> {
        let transformer = self.transformer.get();
        let size = owned
            .reference
            .size_bytes
            .unwrap_or(self.limits.download_max_bytes);
        let held = self.budget.hold(held_bytes(size)).await?;
        answer.held.push(held);
        let original = transformer.fetch(owned, namespace).await?;
        answer.objects.push(transformer.object_of(owned));
        Ok(original)
    }

    async fn encode(
        &self,
        payload: Bytes,
        namespace: &str,
        answer: &mut Answer,
    ) -> Result<Bytes, CodecError> {
        let transformer = self.transformer.get();
        let target = Target {
            namespace: namespace.to_owned(),
            workflow: None,
        };
        let Some(reference) = transformer.offload_payload(&payload, &target).await? else {
            return Ok(payload);
        };
        if let Some(owned) = transformer.owned_reference(&reference)? {
            answer.objects.push(transformer.object_of(&owned));
        }
        Ok(reference)
    }
}

fn held_bytes(size: u64) -> usize {
    usize::try_from(size.saturating_mul(HELD_PER_BYTE)).unwrap_or(usize::MAX)
}
