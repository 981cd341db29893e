//! The operator's own health and metrics: `/healthz` (the process answers), `/readyz` (it
//! has reached the API server) and `/metrics` (reconciliations by outcome, failures by
//! error, reconcile latency), served by every replica, leader or not.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::Error;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabel {
    error: &'static str,
}

pub struct Telemetry {
    registry: Registry,
    reconciliations: Counter,
    failures: Family<ErrorLabel, Counter>,
    reconcile_seconds: Histogram,
    ready: AtomicBool,
}

impl Default for Telemetry {
    fn default() -> Self {
        let reconciliations = Counter::default();
        let failures = Family::<ErrorLabel, Counter>::default();
        // 1 ms .. ~65 s: a reconcile includes a probe's store round trips.
        let reconcile_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 17));
        let mut registry = Registry::with_prefix("claimcheck_controller");
        registry.register("reconciliations", "Reconciliations run", reconciliations.clone());
        registry.register(
            "reconcile_failures",
            "Reconciliations failed, by error",
            failures.clone(),
        );
        registry.register(
            "reconcile_seconds",
            "Reconciliation latency",
            reconcile_seconds.clone(),
        );
        Telemetry {
            registry,
            reconciliations,
            failures,
            reconcile_seconds,
            ready: AtomicBool::new(false),
        }
    }
}

impl Telemetry {
    pub fn reconciled(&self, took: Duration, error: Option<&Error>) {
        self.reconciliations.inc();
        self.reconcile_seconds.observe(took.as_secs_f64());
        if let Some(error) = error {
            self.failures
                .get_or_create(&ErrorLabel {
                    error: error.metric_label(),
                })
                .inc();
        }
    }

    /// Called once the API server has answered.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    pub fn router(self: Arc<Self>) -> Router {
        let metrics = self.clone();
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/readyz",
                get(move || async move {
                    match self.ready.load(Ordering::Relaxed) {
                        true => (StatusCode::OK, "ok"),
                        false => (StatusCode::SERVICE_UNAVAILABLE, "waiting for the API server"),
                    }
                }),
            )
            .route("/metrics", get(move || async move { metrics.encode() }))
    }
}
