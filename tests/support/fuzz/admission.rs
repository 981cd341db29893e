//! The admission handler, given the bytes the API server would send: AdmissionReviews of
//! pods built to break it (annotations outside their meaning, names with path characters,
//! taken names and ports, thousands of containers, fields of the wrong type), then mutated.
//!
//! Every review is answered: refused with a message, admitted unchanged, or admitted with a
//! patch that applies to the pod as sent and adds exactly one sidecar.

use std::sync::Arc;

use claimcheck::controller::Telemetry;
use claimcheck::inject::{Defaults, INJECT, INJECT_ADDRESS, SIDECAR, settings};
use claimcheck::policy::PayloadStoragePolicy;
use claimcheck::webhook::Admission;
use k8s_openapi::api::core::v1::Pod;
use kube::core::DynamicObject;
use kube::core::admission::AdmissionReview;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::Event;
use serde_json::{Value, json};

use super::alloc;
use super::mutate::mutate;
use super::rng::Rng;
use super::runner::Target;

const ANNOTATIONS: [&str; 9] = [
    settings::PORT,
    settings::METRICS_PORT_ANNOTATION,
    settings::LOG_LEVEL,
    settings::CPU_REQUEST,
    settings::MEMORY_REQUEST,
    settings::CPU_LIMIT,
    settings::MEMORY_LIMIT,
    INJECT,
    INJECT_ADDRESS,
];
const VALUES: [&str; 20] = [
    "7000",
    "0",
    "65536",
    "-1",
    "+80",
    " 80",
    "9090",
    "7233",
    "1e3",
    "100m",
    "1Gi",
    "99999999999999999999999Ei",
    "lots",
    "debug",
    "info,h2=trace",
    "false",
    "\n",
    "",
    "1Gi\nx: y",
    "../../etc",
];
const POLICY_NAMES: [&str; 6] = [
    "billing",
    "files",
    "missing",
    "../billing",
    "billing/../files",
    "",
];

pub struct Admissions {
    admission: Admission,
}

impl Admissions {
    pub fn new() -> Self {
        let mut writer = Writer::<PayloadStoragePolicy>::default();
        for policy in [
            policy("billing", "s3://payloads/"),
            policy("files", "file:///data/payloads"),
        ] {
            writer.apply_watcher_event(&Event::Apply(policy));
        }
        let admission = Admission {
            policies: writer.as_reader(),
            defaults: Defaults::default(),
            recorder: None,
            metrics: Arc::new(Telemetry::default()),
        };
        Admissions { admission }
    }
}

fn policy(name: &str, url: &str) -> PayloadStoragePolicy {
    serde_json::from_value(json!({
        "apiVersion": "claimcheck.dev/v1alpha1", "kind": "PayloadStoragePolicy",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "temporal": {"address": "temporal:7233", "namespace": "default"},
            "drivers": [{"name": "hot", "url": url, "credentialsSecretRef": {"name": "store-creds"}}],
            "lifecycle": {"retention": "1d", "manage": false},
        },
    }))
    .expect("policy")
}

impl Target for Admissions {
    fn name(&self) -> &'static str {
        "admission"
    }

    fn case(&self, rng: &mut Rng) -> Result<usize, String> {
        let pod = pod(rng);
        let mut review = json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "0d1c5b0e-fuzz", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "operation": "CREATE", "namespace": "default", "userInfo": {},
                "dryRun": rng.chance(0.5), "object": pod,
            },
        });
        if rng.chance(0.3) {
            break_a_field(rng, &mut review);
        }
        let mut body = serde_json::to_vec(&review).map_err(|e| e.to_string())?;
        if rng.chance(0.2) {
            mutate(rng, &mut body);
        }
        alloc::start();
        let Ok(answer) = self.admission.answer(&body) else {
            return Ok(8 * body.len());
        };
        check(&body, &answer)?;
        // A pod is held as sent, decoded, copied into the desired pod, and both turned into
        // JSON for the patch: some tens of times its JSON (the server caps a review at 4 MiB).
        Ok(8 * body.len())
    }
}

fn pod(rng: &mut Rng) -> Value {
    let annotations: serde_json::Map<String, Value> = (0..rng.below(4))
        .map(|_| (rng.pick(&ANNOTATIONS).to_string(), json!(rng.pick(&VALUES))))
        .collect();
    let labels = match rng.chance(0.8) {
        true => json!({"claimcheck.dev/policy": rng.pick(&POLICY_NAMES)}),
        false => json!({"app": "worker"}),
    };
    let count = if rng.chance(0.02) { 2000 } else { 1 + rng.below(4) };
    let containers: Vec<Value> = (0..count).map(|i| container(rng, i)).collect();
    let mut spec = json!({"containers": containers});
    if rng.chance(0.3) {
        spec["initContainers"] = json!([container(rng, 99)]);
    }
    if rng.chance(0.3) {
        let name = rng.pick(&["data", "claimcheck-config", "claimcheck-credentials-hot"]);
        spec["volumes"] = json!([{"name": name, "emptyDir": {}}]);
    }
    json!({"metadata": {"generateName": "worker-", "labels": labels, "annotations": annotations}, "spec": spec})
}

fn container(rng: &mut Rng, index: usize) -> Value {
    let name = match rng.chance(0.1) {
        true => rng.pick(&[SIDECAR, "worker"]).to_string(),
        false => format!("c{index}"),
    };
    let mut container = json!({"name": name, "image": "worker:1"});
    if rng.chance(0.3) {
        container["ports"] = json!([{"containerPort": rng.pick(&[7233, 9090, 8080, -1, 70000])}]);
    }
    if rng.chance(0.3) {
        container["env"] =
            json!([{"name": "TEMPORAL_ADDRESS", "value": "x"}, {"name": "TEMPORAL_ADDRESS", "value": "y"}]);
    }
    if rng.chance(0.3) {
        container["volumeMounts"] =
            json!([{"name": "data", "mountPath": rng.pick(&["/data", "/data/payloads", "/"])}]);
    }
    container
}

/// Replaces a random object or array member with a value of another type.
fn break_a_field(rng: &mut Rng, value: &mut Value) {
    let len = match value {
        Value::Object(map) => map.len(),
        Value::Array(items) => items.len(),
        _ => 0,
    };
    if len > 0 && rng.chance(0.8) {
        let index = rng.below(len);
        let inner = match value {
            Value::Object(map) => map.values_mut().nth(index),
            Value::Array(items) => items.get_mut(index),
            _ => None,
        };
        if let Some(inner) = inner {
            return break_a_field(rng, inner);
        }
    }
    *value = rng
        .pick(&[
            json!(null),
            json!(-1),
            json!("x"),
            json!([]),
            json!({}),
            json!(1e300),
        ])
        .clone();
}

/// What must hold of an answer to the review in `body`.
fn check(body: &[u8], answer: &[u8]) -> Result<(), String> {
    let answer: AdmissionReview<DynamicObject> =
        serde_json::from_slice(answer).map_err(|e| format!("the answer is not a review: {e}"))?;
    let response = answer.response.ok_or("an answer without a response")?;
    if !response.allowed {
        return match response.result.message.is_empty() {
            true => Err("a refusal without a message".to_owned()),
            false => Ok(()),
        };
    }
    let Some(patch) = response.patch else {
        return Ok(());
    };
    // serde_json skips what a typed review does not read without checking its escapes.
    let Ok(sent) = serde_json::from_slice::<Value>(body) else {
        return Ok(());
    };
    let pod = &sent["request"]["object"];
    let patch: json_patch::Patch =
        serde_json::from_slice(&patch).map_err(|e| format!("the patch is not JSON patch: {e}"))?;
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &patch)
        .map_err(|e| format!("the patch does not apply to the pod sent: {e}"))?;
    let patched: Pod =
        serde_json::from_value(patched).map_err(|e| format!("the patched pod is not a pod: {e}"))?;
    let spec = patched.spec.ok_or("the patched pod has no spec")?;
    let sidecars = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .filter(|c| c.name == SIDECAR)
        .count();
    match sidecars {
        1 => Ok(()),
        n => Err(format!("the patched pod has {n} sidecars")),
    }
}
