//! The codec server: the Temporal Web UI and CLI send it the payloads of a history and get
//! back what the proxy offloaded (docs/codec-server.md is the contract). Every reference is
//! resolved through the proxy's own verified path: the same stores, scope check, size and
//! SHA-256. No Kubernetes here; the proxy serves it on a listener of its own.

pub mod auth;
mod http;
pub mod json;
pub mod jwt;

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;

use crate::config::HELD_PER_BYTE;
use crate::payload::budget::{Budget, Exhausted, Held};
use crate::payload::reference::{Reference, ReferenceError, Target};
use crate::payload::transform::{Current, Owned, TransformError, Transformer};

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
    #[error("the request is over this codec server's limit of {0} bytes")]
    RequestTooLarge(usize),
    #[error(transparent)]
    Body(#[from] json::BodyError),
    #[error("payload {index} is not a storage reference: /download takes only references")]
    NotAReference { index: usize },
    #[error("payload {index} is a reference of driver {driver:?}, which no store of this codec server holds")]
    NotOurs { index: usize, driver: String },
    #[error("{object} is {} bytes, over this codec server's download limit of {limit} bytes", size.map_or("an unknown number of".to_owned(), |s| s.to_string()))]
    TooLarge {
        object: String,
        size: Option<u64>,
        limit: u64,
    },
    #[error("this codec server does not serve namespace {namespace:?}")]
    NotServed { namespace: String },
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
    /// The Temporal namespaces it serves; empty: any the caller may read.
    namespaces: BTreeSet<String>,
}

impl Codec {
    pub fn new(
        transformer: Arc<Current>,
        budget: Budget,
        limits: Limits,
        namespaces: BTreeSet<String>,
    ) -> Self {
        Codec {
            transformer,
            budget,
            limits,
            namespaces,
        }
    }

    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Answers one call for `namespace`, whose scope every reference must be in. The call
    /// holds its share of the in-flight budget, all of it at once, until the answer is sent.
    pub async fn answer(
        &self,
        operation: Operation,
        payloads: Vec<Bytes>,
        namespace: &str,
    ) -> Result<Answer, CodecError> {
        if !self.namespaces.is_empty() && !self.namespaces.contains(namespace) {
            return Err(CodecError::NotServed {
                namespace: namespace.to_owned(),
            });
        }
        // One configuration for the whole call, even if it is reloaded meanwhile.
        let transformer = self.transformer.get();
        let steps = payloads
            .into_iter()
            .enumerate()
            .map(|(index, payload)| self.plan(&transformer, operation, index, payload))
            .collect::<Result<Vec<_>, _>>()?;
        let needed = steps.iter().map(Step::held_bytes).fold(0u64, u64::saturating_add);
        let mut answer = Answer {
            payloads: Vec::with_capacity(steps.len()),
            held: vec![
                self.budget
                    .hold(usize::try_from(needed).unwrap_or(usize::MAX))
                    .await?,
            ],
            ..Answer::default()
        };
        for step in steps {
            let out = match step {
                Step::Keep(payload) => payload,
                Step::Fetch(owned) => {
                    let original = transformer.fetch(&owned, namespace).await?;
                    answer.objects.push(transformer.object_of(&owned));
                    original
                }
                Step::Store(payload) => self.encode(&transformer, payload, namespace, &mut answer).await?,
            };
            answer.payloads.push(out);
        }
        Ok(answer)
    }

    /// What the call does with one payload, decided before anything is fetched or stored.
    fn plan(
        &self,
        transformer: &Transformer,
        operation: Operation,
        index: usize,
        payload: Bytes,
    ) -> Result<Step, CodecError> {
        let owned = transformer.owned_reference(&payload)?;
        match (operation, owned) {
            (Operation::Encode, _) => Ok(Step::Store(payload)),
            (Operation::Decode { preserve_refs }, Some(owned)) => {
                // The UI can download what it is not given; the CLI cannot, so it gets
                // every original a download would. Without a size, a fetch could be any size.
                let limit = match preserve_refs {
                    true => self.limits.decode_max_bytes,
                    false => self.limits.download_max_bytes,
                };
                match owned.reference.size_bytes.is_some_and(|size| size <= limit) {
                    true => Ok(Step::Fetch(owned)),
                    false => Ok(Step::Keep(payload)),
                }
            }
            (Operation::Decode { .. }, None) => Ok(Step::Keep(payload)),
            (Operation::Download, Some(owned)) => {
                let limit = self.limits.download_max_bytes;
                match owned.reference.size_bytes {
                    Some(size) if size <= limit => Ok(Step::Fetch(owned)),
                    size => Err(CodecError::TooLarge {
                        object: transformer.object_of(&owned),
                        size,
                        limit,
                    }),
                }
            }
            (Operation::Download, None) => match Reference::from_payload(&payload)? {
                Some(reference) => Err(CodecError::NotOurs {
                    index,
                    driver: reference.driver_name,
                }),
                None => Err(CodecError::NotAReference { index }),
            },
        }
    }

    async fn encode(
        &self,
        transformer: &Transformer,
        payload: Bytes,
        namespace: &str,
        answer: &mut Answer,
    ) -> Result<Bytes, CodecError> {
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

/// One payload's part of a call.
enum Step {
    Keep(Bytes),
    Fetch(Owned),
    Store(Bytes),
}

impl Step {
    /// The budget it needs: a payload passed on is held as given and as rendered; an original
    /// as fetched, decoded, encoded and cached.
    fn held_bytes(&self) -> u64 {
        match self {
            Step::Keep(payload) | Step::Store(payload) => 2 * payload.len() as u64,
            Step::Fetch(owned) => owned
                .reference
                .size_bytes
                .unwrap_or(0)
                .saturating_mul(HELD_PER_BYTE),
        }
    }
}
