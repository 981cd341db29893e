//! claimcheck: keeps large Temporal payloads out of workflow history.
//!
//! The payload path (`payload`: frames, wire walking, rewriting, references, transform,
//! cache), the stores (`driver`, `lifecycle`, `probe`) and the `proxy` know nothing of
//! Kubernetes: the proxy runs with no cluster. `policy` is the Kubernetes resource; `controller` reconciles it,
//! `inject` decides a pod's sidecar and `webhook` serves that decision to the API server.

pub mod chart;
pub mod cli;
pub mod codec;
pub mod config;
pub mod controller;
pub mod driver;
pub mod events;
pub mod inject;
pub mod lifecycle;
pub mod metrics;
pub mod payload;
pub mod policy;
pub mod probe;
pub mod proxy;
pub mod run;
pub mod serve;
pub mod shutdown;
pub mod temporal;
pub mod tls;
pub mod webhook;
pub mod yaml;
