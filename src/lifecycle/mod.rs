//! How long stored payloads live: the TTL arithmetic, and the bucket rules that enforce it
//! (S3 lifecycle rules, GCS lifecycle rules, and the sidecar's janitor where a store has no
//! rules the operator can reach).

mod gcs;
pub mod janitor;
mod s3;
mod ttl;

pub use gcs::GcsRules;
pub use s3::S3Rules;
pub use ttl::{Ttl, effective_ttl};

/// The ID prefix of every S3 rule claimcheck writes.
pub const RULE_PREFIX: &str = "claimcheck-";

/// Our rule: objects under `prefix` expire after `days`. GCS rules have no ID; there the
/// prefix, which holds one Temporal namespace's objects, is the rule's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryRule {
    pub id: String,
    pub prefix: String,
    pub days: u64,
}

/// Why a bucket's rules could not be read or written; `bucket` is `s3://name` or `gs://name`.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("{bucket}: {reason}")]
    Store { bucket: String, reason: String },
    #[error(
        "{bucket}: the rule would overlap rule {other:?} of another claimcheck policy (prefix {other_prefix:?})"
    )]
    Overlap {
        bucket: String,
        other: String,
        other_prefix: String,
    },
    #[error("{bucket}: cannot find credentials to manage bucket rules: {reason}")]
    NoCredentials { bucket: String, reason: String },
}
