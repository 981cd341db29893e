//! How long stored payloads live: the TTL arithmetic (here), and the bucket rules that
//! enforce it (with the operator).

pub mod janitor;
mod s3;
mod ttl;

pub use s3::{ExpiryRule, RULE_PREFIX, S3RuleError, S3Rules};
pub use ttl::{Ttl, effective_ttl};
