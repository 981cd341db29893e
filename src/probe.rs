//! The round-trip probe, the `storage:test` of the seeds: a small payload that must stay
//! inline and a large one that must be offloaded go through the proxy's own offload code,
//! come back through its own rehydration code, and are checked by size and SHA-256. The
//! probe objects are deleted afterwards. A policy is Ready only once its probe passed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use temporalio_protos::temporal::api::common::v1::{Payload, Payloads};
use temporalio_protos::temporal::api::workflowservice::v1::RespondActivityTaskCompletedRequest;

use crate::driver::Driver;
use crate::metrics::Metrics;
use crate::payload::cache::VerifiedCache;
use crate::payload::reference::{Reference, Target};
use crate::payload::rewrite;
use crate::payload::schema::{Node, Schema};
use crate::payload::transform::{Settings, Tier, Transformer};

/// The probe's message: what a worker sends when an activity completes.
const CARRIER: &str = "temporal.api.workflowservice.v1.RespondActivityTaskCompletedRequest";
const SMALL_BYTES: usize = 1024;

/// What the probe found, as the policy's status and `claimcheck probe --json` report it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProbeReport {
    /// `passed` or `failed`.
    pub status: String,
    /// When the probe ran (RFC 3339).
    pub time: String,
    /// The driver that stored the large payload.
    pub driver: String,
    pub small_payload: PayloadCheck,
    pub large_payload: PayloadCheck,
    /// How long each step of the large payload's round trip took.
    #[serde(default)]
    pub latencies: StepLatencies,
    /// Why the probe failed, naming the object where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PayloadCheck {
    /// Serialized size of the payload.
    pub bytes: u64,
    pub sha256: String,
    /// Whether the payload was offloaded (it must be for the large one, not the small one).
    pub offloaded: bool,
    /// The stored object's key, for an offloaded payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Whether it came back with the same size and SHA-256.
    pub verified: bool,
}

/// A probe of a set of stores, for one Temporal namespace.
pub struct Probe {
    transformer: Transformer,
    drivers: Vec<Driver>,
    namespace: String,
    threshold_bytes: u64,
    large_bytes: usize,
}

/// Latency of each step, in milliseconds.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StepLatencies {
    pub write_ms: f64,
    pub read_ms: f64,
    pub delete_ms: f64,
}

impl Probe {
    pub fn new(
        tiers: Vec<Tier>,
        namespace: &str,
        threshold_bytes: u64,
        large_bytes: usize,
    ) -> Result<Self, String> {
        let schema = Arc::new(Schema::temporal().map_err(|e| e.to_string())?);
        let drivers = tiers.iter().map(|t| t.driver.clone()).collect();
        let settings = Settings {
            threshold_bytes,
            parallelism: 2,
            refresh_after: Duration::ZERO,
        };
        // No cache: the read-back must come from the store, not from what was just written.
        let cache = VerifiedCache::new(0, 0);
        let transformer = Transformer::new(schema, tiers, settings, cache, Arc::new(Metrics::new()))
            .map_err(|e| e.to_string())?;
        Ok(Probe {
            transformer,
            drivers,
            namespace: namespace.to_owned(),
            threshold_bytes,
            large_bytes,
        })
    }

    pub async fn run(&self) -> ProbeReport {
        let small = payload(SMALL_BYTES);
        let large = payload(self.large_bytes);
        let mut report = ProbeReport {
            status: "failed".into(),
            time: jiff::Timestamp::now().to_string(),
            driver: String::new(),
            small_payload: check_of(&small),
            large_payload: check_of(&large),
            latencies: StepLatencies::default(),
            reason: None,
        };
        match self.round_trip(&small, &large, &mut report).await {
            Ok(()) => report.status = "passed".into(),
            Err(reason) => report.reason = Some(reason),
        }
        report
    }

    async fn round_trip(&self, small: &Bytes, large: &Bytes, report: &mut ProbeReport) -> Result<(), String> {
        let root = self
            .transformer
            .schema()
            .node(CARRIER)
            .ok_or("the probe's message type is unknown")?;
        let msg = carrier(&self.namespace, small, large);
        let target = Target {
            namespace: self.namespace.clone(),
            workflow: None,
        };

        let started = Instant::now();
        let offloaded = self
            .transformer
            .offload(root, &msg, &target)
            .await
            .map_err(|e| e.to_string())?;
        report.latencies.write_ms = ms(started);
        let offloaded = Bytes::from(offloaded.map(|s| s.to_vec()).unwrap_or_else(|| msg.to_vec()));
        let references = self.references(root, &offloaded)?;
        report.small_payload.offloaded = references[0].is_some();
        report.large_payload.offloaded = references[1].is_some();
        report.small_payload.reference = references[0].as_ref().map(|(_, key)| key.clone());
        report.large_payload.reference = references[1].as_ref().map(|(_, key)| key.clone());
        if let Some((driver, _)) = &references[1] {
            report.driver = driver.name().to_owned();
        }

        let started = Instant::now();
        let back = self
            .transformer
            .rehydrate(root, &offloaded, &self.namespace)
            .await
            .map_err(|e| e.to_string())?;
        report.latencies.read_ms = ms(started);
        let back = Bytes::from(back.map(|s| s.to_vec()).unwrap_or_else(|| offloaded.to_vec()));
        let returned = self.payloads(root, &back)?;
        report.small_payload.verified = check_of(&returned[0]) == check_of(small);
        report.large_payload.verified = check_of(&returned[1]) == check_of(large);

        let started = Instant::now();
        for (driver, key) in references.iter().flatten() {
            driver
                .delete(key)
                .await
                .map_err(|e| format!("cannot delete probe object: {e}"))?;
        }
        report.latencies.delete_ms = ms(started);
        self.verdict(report)
    }

    fn verdict(&self, report: &ProbeReport) -> Result<(), String> {
        let small_inline = (report.small_payload.bytes) < self.threshold_bytes;
        if report.small_payload.offloaded == small_inline {
            return Err(format!(
                "the {}-byte payload should {} inline with thresholdBytes {}",
                report.small_payload.bytes,
                if small_inline { "stay" } else { "not stay" },
                self.threshold_bytes
            ));
        }
        if !report.large_payload.offloaded {
            return Err(format!(
                "the {}-byte payload was not offloaded",
                report.large_payload.bytes
            ));
        }
        for (name, check) in [("small", &report.small_payload), ("large", &report.large_payload)] {
            if !check.verified {
                return Err(format!("the {name} payload came back different (size or sha256)"));
            }
        }
        Ok(())
    }

    /// For each of the two payloads, the driver and key it was offloaded to, if it was.
    fn references(&self, root: Node, msg: &Bytes) -> Result<Vec<Option<(&Driver, String)>>, String> {
        self.payloads(root, msg)?
            .iter()
            .map(|p| {
                let reference = Reference::from_payload(p).map_err(|e| e.to_string())?;
                Ok(reference.and_then(|r| {
                    let driver = self.drivers.iter().find(|d| d.owns(&r))?;
                    Some((driver, driver.key_of(&r)?.to_owned()))
                }))
            })
            .collect()
    }

    fn payloads(&self, root: Node, msg: &Bytes) -> Result<Vec<Bytes>, String> {
        let ranges =
            rewrite::payload_ranges(self.transformer.schema(), root, msg).map_err(|e| e.to_string())?;
        if ranges.len() != 2 {
            return Err(format!(
                "expected the probe's two payloads, found {}",
                ranges.len()
            ));
        }
        Ok(ranges.into_iter().map(|r| msg.slice(r)).collect())
    }
}

/// A serialized payload of about `size` unique bytes (so its key is new: the probe never
/// touches a real payload's object).
fn payload(size: usize) -> Bytes {
    let seed = format!(
        "{:?}{:?}",
        std::time::SystemTime::now(),
        std::thread::current().id()
    );
    let mut data = Vec::with_capacity(size + 32);
    let mut counter = 0u64;
    while data.len() < size {
        data.extend_from_slice(
            &Sha256::new()
                .chain_update(seed.as_bytes())
                .chain_update(counter.to_le_bytes())
                .finalize(),
        );
        counter += 1;
    }
    data.truncate(size);
    let payload = Payload {
        metadata: [("encoding".to_owned(), b"binary/plain".to_vec())].into(),
        data,
        ..Default::default()
    };
    Bytes::from(payload.encode_to_vec())
}

fn carrier(namespace: &str, small: &Bytes, large: &Bytes) -> Bytes {
    let decode = |b: &Bytes| Payload::decode(b.clone()).unwrap_or_default();
    let request = RespondActivityTaskCompletedRequest {
        namespace: namespace.to_owned(),
        identity: "claimcheck-probe".into(),
        result: Some(Payloads {
            payloads: vec![decode(small), decode(large)],
        }),
        ..Default::default()
    };
    Bytes::from(request.encode_to_vec())
}

fn check_of(payload: &[u8]) -> PayloadCheck {
    PayloadCheck {
        bytes: payload.len() as u64,
        sha256: hex::encode(Sha256::digest(payload)),
        ..PayloadCheck::default()
    }
}

fn ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1e3
}
