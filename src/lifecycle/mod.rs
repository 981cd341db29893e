//! How long stored payloads live: the TTL arithmetic (here), and the bucket rules that
//! enforce it (with the operator).

mod ttl;

pub use ttl::{Ttl, effective_ttl};
