//! Prometheus metrics of the proxy: what was offloaded and fetched, cache use, errors by
//! gRPC status, latencies, and the codec server's calls.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OpLabel {
    pub op: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct MethodLabel {
    pub method: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CodecLabels {
    pub operation: &'static str,
    pub namespace: String,
    pub outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub offloaded_payloads: Counter,
    pub offloaded_bytes: Counter,
    pub writes_skipped: Counter,
    pub fetched_payloads: Counter,
    pub fetched_bytes: Counter,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub errors: Family<CodeLabel, Counter>,
    /// Store operations (`put`, `get`), in seconds.
    pub store_seconds: Family<OpLabel, Histogram>,
    /// Whole proxied calls, in seconds, by method name.
    pub rpc_seconds: Family<MethodLabel, Histogram>,
    pub config_reloads: Counter,
    pub config_rejections: Counter,
    /// Codec server calls, by operation, namespace and outcome.
    pub codec_requests: Family<CodecLabels, Counter>,
    /// Tokio tasks alive, read when scraped: a count that keeps growing under a steady load,
    /// or does not come back once the load stops, is a leak.
    tasks: Gauge,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~3.5 min: covers loopback pass-through up to long polls.
    Histogram::new(exponential_buckets(0.000_05, 3.0, 15))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("claimcheck");
        let m = Metrics {
            offloaded_payloads: Counter::default(),
            offloaded_bytes: Counter::default(),
            writes_skipped: Counter::default(),
            fetched_payloads: Counter::default(),
            fetched_bytes: Counter::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            errors: Family::default(),
            store_seconds: Family::new_with_constructor(latency_histogram),
            rpc_seconds: Family::new_with_constructor(latency_histogram),
            config_reloads: Counter::default(),
            config_rejections: Counter::default(),
            codec_requests: Family::default(),
            tasks: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "payloads_offloaded",
            "Payloads replaced by a reference to the store",
            m.offloaded_payloads.clone(),
        );
        registry.register(
            "bytes_offloaded",
            "Payload bytes written to the store",
            m.offloaded_bytes.clone(),
        );
        registry.register(
            "store_writes_skipped",
            "Offloaded payloads not written again: this proxy wrote the same object within refreshAfterSeconds",
            m.writes_skipped.clone(),
        );
        registry.register(
            "payloads_fetched",
            "Payloads put back from the store",
            m.fetched_payloads.clone(),
        );
        registry.register(
            "bytes_fetched",
            "Payload bytes put back from the store",
            m.fetched_bytes.clone(),
        );
        registry.register("cache_hits", "Verified-fetch cache hits", m.cache_hits.clone());
        registry.register(
            "cache_misses",
            "Verified-fetch cache misses",
            m.cache_misses.clone(),
        );
        registry.register(
            "errors",
            "Calls the proxy failed, by gRPC status",
            m.errors.clone(),
        );
        registry.register(
            "store_seconds",
            "Store operation latency",
            m.store_seconds.clone(),
        );
        registry.register("rpc_seconds", "Proxied call latency", m.rpc_seconds.clone());
        registry.register(
            "config_reloads",
            "Changed configurations put in place without a restart",
            m.config_reloads.clone(),
        );
        registry.register(
            "config_rejections",
            "Changed configurations that could not be read or applied (the running one is kept)",
            m.config_rejections.clone(),
        );
        registry.register(
            "codec_requests",
            "Codec server calls (decode, encode, download), by namespace and outcome",
            m.codec_requests.clone(),
        );
        registry.register("tasks", "Tokio tasks alive in the process", m.tasks.clone());
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let alive = runtime.metrics().num_alive_tasks();
            self.tasks.set(i64::try_from(alive).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
