//! The payload path, with no Kubernetes: what the proxy (and the codec server) do to the
//! bytes of a Temporal message. `frame` reads gRPC frames, `wire` and `schema` walk the
//! protobuf by Temporal's descriptors, `rewrite` finds and splices payloads, `reference` is
//! the SDKs' External Storage reference, `transform` offloads and rehydrates through the
//! stores (`streaming` while the bytes arrive), `verify` checks what comes back, `cache` keeps what was verified, `recent` what was written lately, and `budget`
//! bounds what is held at once.

pub mod budget;
pub mod cache;
pub mod frame;
pub mod recent;
pub mod reference;
pub mod rewrite;
pub mod schema;
pub mod streaming;
pub mod transform;
pub mod verify;
pub mod wire;
