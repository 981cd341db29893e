//! Fuzzing on stable Rust, with no extra crate: inputs are built from the structures they
//! imitate (Temporal messages from the API's own descriptors, references, proxy
//! configurations, AdmissionReviews), then mutated as a broken or hostile peer would. Every
//! case must end in an error or a correct result, never a panic, and must not allocate far
//! beyond what it was given. Shared by tests/fuzz.rs (a short run in `make test`) and
//! benches/fuzz.rs (millions of cases in `make bench`).

pub mod admission;
pub mod alloc;
pub mod config;
pub mod frame;
pub mod messages;
pub mod mutate;
pub mod reference;
pub mod rewrite;
pub mod rng;
pub mod runner;
