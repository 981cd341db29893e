//! The operator's own health and metrics: `/healthz` (the process answers), `/readyz` (it
//! has reached the API server, and its webhook serves) and `/metrics` (reconciliations,
//! failures by error, reconcile latency; admissions and their latency; whether each policy
//! is Ready, from the Lease holder only), served by every replica, leader or not.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::Error;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabel {
    error: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AllowedLabel {
    allowed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PolicyLabel {
    namespace: String,
    policy: String,
}

const WEBHOOK_OFF: u8 = 0;
const WEBHOOK_STARTING: u8 = 1;
const WEBHOOK_READY: u8 = 2;

pub struct Telemetry {
    registry: Registry,
    reconciliations: Counter,
    failures: Family<ErrorLabel, Counter>,
    reconcile_seconds: Histogram,
    admissions: Family<AllowedLabel, Counter>,
    admission_seconds: Histogram,
    /// 1 when the policy is Ready: what an alert on a policy left not Ready watches.
    policy_ready: Family<PolicyLabel, Gauge>,
    ready: AtomicBool,
    webhook: AtomicU8,
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
        let admissions = Family::<AllowedLabel, Counter>::default();
        // 20 µs .. ~0.7 s: the webhook's own handling, without the network.
        let admission_seconds = Histogram::new(exponential_buckets(0.000_02, 2.0, 16));
        registry.register(
            "admissions",
            "Pods admitted by the webhook, by outcome",
            admissions.clone(),
        );
        registry.register(
            "admission_seconds",
            "The webhook's handling time",
            admission_seconds.clone(),
        );
        let policy_ready = Family::<PolicyLabel, Gauge>::default();
        registry.register(
            "policy_ready",
            "1 when the policy is Ready, 0 when not (reported by the Lease holder)",
            policy_ready.clone(),
        );
        Telemetry {
            registry,
            reconciliations,
            failures,
            reconcile_seconds,
            admissions,
            admission_seconds,
            policy_ready,
            ready: AtomicBool::new(false),
            webhook: AtomicU8::new(WEBHOOK_OFF),
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

    pub fn policy_ready(&self, namespace: &str, policy: &str, ready: bool) {
        self.policy_ready
            .get_or_create(&PolicyLabel {
                namespace: namespace.to_owned(),
                policy: policy.to_owned(),
            })
            .set(i64::from(ready));
    }

    /// A deleted policy is no longer reported.
    pub fn forget_policy(&self, namespace: &str, policy: &str) {
        self.policy_ready.remove(&PolicyLabel {
            namespace: namespace.to_owned(),
            policy: policy.to_owned(),
        });
    }

    /// A replica that lost the Lease stops reporting what the new holder now reports.
    pub fn forget_policies(&self) {
        self.policy_ready.clear();
    }

    pub fn admitted(&self, took: Duration, allowed: bool) {
        self.admissions.get_or_create(&AllowedLabel { allowed }).inc();
        self.admission_seconds.observe(took.as_secs_f64());
    }

    /// Called once the API server has answered.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    /// This replica serves the webhook: it is not ready until the webhook is.
    pub fn expect_webhook(&self) {
        self.webhook.store(WEBHOOK_STARTING, Ordering::Relaxed);
    }

    pub fn set_webhook_ready(&self) {
        self.webhook.store(WEBHOOK_READY, Ordering::Relaxed);
    }

    /// Shutting down: the Service should stop sending admissions here.
    pub fn set_webhook_not_ready(&self) {
        self.webhook.store(WEBHOOK_STARTING, Ordering::Relaxed);
    }

    pub fn webhook_ready(&self) -> bool {
        self.webhook.load(Ordering::Relaxed) == WEBHOOK_READY
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.webhook.load(Ordering::Relaxed) != WEBHOOK_STARTING
    }

    /// The metrics, in Prometheus' text format.
    pub fn encode(&self) -> String {
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
                    match self.is_ready() {
                        true => (StatusCode::OK, "ok"),
                        false => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "waiting for the API server and the webhook",
                        ),
                    }
                }),
            )
            .route("/metrics", get(move || async move { metrics.encode() }))
    }
}
