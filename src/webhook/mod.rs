//! The admission webhook: every replica serves it over HTTPS. A pod labelled
//! `claimcheck.dev/policy` is answered with the JSON patch that injects the proxy sidecar
//! ([`crate::inject`] decides, this module only looks the policy up and answers).

mod certs;
mod configuration;
mod patch;
mod server;

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::inject::{Defaults, Outcome, inject};
use crate::policy::PayloadStoragePolicy;
use crate::policy::pod::POLICY_LABEL;

pub use certs::{CertSource, Certificates};
pub use configuration::{CONFIGURATION, ClientConfig, mutating_webhook_configuration};
pub use server::{WebhookOptions, run};

/// Why a request's body got no AdmissionReview back.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("not an AdmissionReview: {0}")]
    NotAReview(serde_json::Error),
    #[error("cannot encode the answer: {0}")]
    Encode(serde_json::Error),
}

/// What every admission shares.
pub struct Admission {
    pub policies: Store<PayloadStoragePolicy>,
    pub defaults: Defaults,
    /// Publishes Injected and InjectionSkipped on the policy; absent in unit tests.
    pub recorder: Option<Recorder>,
    pub metrics: Arc<crate::controller::Telemetry>,
}

impl Admission {
    /// The answer to a request's body, as the API server sent it.
    pub fn answer(&self, body: &[u8]) -> Result<Vec<u8>, AnswerError> {
        let review = serde_json::from_slice(body).map_err(AnswerError::NotAReview)?;
        serde_json::to_vec(&self.review(review)).map_err(AnswerError::Encode)
    }

    /// The answer to one AdmissionReview: never an error, a denial says what to fix.
    pub fn review(&self, review: AdmissionReview<Pod>) -> AdmissionReview<DynamicObject> {
        let started = Instant::now();
        let request: AdmissionRequest<Pod> = match review.try_into() {
            Ok(request) => request,
            Err(e) => return AdmissionResponse::invalid(e.to_string()).into_review(),
        };
        let response = self.decide(&request);
        self.metrics.admitted(started.elapsed(), response.allowed);
        response.into_review()
    }

    fn decide(&self, request: &AdmissionRequest<Pod>) -> AdmissionResponse {
        let response = AdmissionResponse::from(request);
        let Some(pod) = &request.object else {
            return response;
        };
        let Some(name) = pod.labels().get(POLICY_LABEL) else {
            return response;
        };
        let namespace = request.namespace.clone().unwrap_or_default();
        let pod_name = pod_name(pod);
        let Some(policy) = self.policies.get(&ObjectRef::new(name).within(&namespace)) else {
            return response.deny(format!(
                "pod {namespace}/{pod_name} names PayloadStoragePolicy {name:?} (label {POLICY_LABEL}), which does not exist in namespace {namespace}: create it, or fix the label"
            ));
        };
        let note = |what: &str| format!("pod {namespace}/{pod_name}: {what}");
        let patch = match inject(pod, &policy, &self.defaults) {
            Err(refusal) => return response.deny(note(&refusal.to_string())),
            Ok(Outcome::Skip(why)) => {
                let skipped = note(&format!("left alone: {why}"));
                self.announce(&policy, request.dry_run, "InjectionSkipped", skipped);
                return response;
            }
            Ok(Outcome::Inject(desired)) => match diff(pod, &desired) {
                Ok(patch) => patch,
                Err(e) => return response.deny(note(&e.to_string())),
            },
        };
        if patch.0.is_empty() {
            return response;
        }
        self.announce(&policy, request.dry_run, "Injected", note("proxy injected"));
        response
            .with_patch(patch)
            .unwrap_or_else(|e| AdmissionResponse::from(request).deny(note(&e.to_string())))
    }

    /// Events are published off the admission's path; a dry run has no side effects.
    fn announce(&self, policy: &PayloadStoragePolicy, dry_run: bool, reason: &'static str, note: String) {
        let Some(recorder) = self.recorder.clone().filter(|_| !dry_run) else {
            return;
        };
        let policy = policy.clone();
        tokio::spawn(async move {
            crate::events::publish(&recorder, &policy, (EventType::Normal, reason, "Admit"), &note).await;
        });
    }
}

/// A pod's name for messages: at admission a pod may only have a generateName.
fn pod_name(pod: &Pod) -> String {
    match (&pod.metadata.name, &pod.metadata.generate_name) {
        (Some(name), _) => name.clone(),
        (None, Some(prefix)) => format!("{prefix}*"),
        (None, None) => "(unnamed)".to_owned(),
    }
}

fn diff(pod: &Pod, desired: &Pod) -> Result<json_patch::Patch, serde_json::Error> {
    Ok(patch::patch(
        &serde_json::to_value(pod)?,
        &serde_json::to_value(desired)?,
    ))
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;
    use serde_json::json;

    use super::*;

    fn admission_with_policy_in(namespace: &str) -> Admission {
        let policy: PayloadStoragePolicy = serde_json::from_value(json!({
            "apiVersion": "claimcheck.dev/v1alpha1", "kind": "PayloadStoragePolicy",
            "metadata": {"name": "billing", "namespace": namespace},
            "spec": {
                "temporal": {"address": "temporal:7233", "namespace": "default"},
                "drivers": [{"name": "hot", "url": "s3://payloads/", "credentialsSecretRef": {"name": "creds"}}],
            },
        }))
        .unwrap();
        let mut writer = Writer::default();
        writer.apply_watcher_event(&Event::Apply(policy));
        Admission {
            policies: writer.as_reader(),
            defaults: Defaults::default(),
            recorder: None,
            metrics: Arc::new(crate::controller::Telemetry::default()),
        }
    }

    fn review(namespace: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "operation": "CREATE", "namespace": namespace, "userInfo": {},
                "object": {
                    "metadata": {"name": "worker", "labels": {POLICY_LABEL: "billing"}},
                    "spec": {"containers": [{"name": "worker", "image": "worker:1"}]},
                },
            },
        }))
        .unwrap()
    }

    /// A team's pod reaches only its own namespace's policies, hence only its own stores and
    /// Secrets: naming another team's policy is refused, never injected.
    #[test]
    fn a_pod_can_use_only_a_policy_of_its_own_namespace() {
        let admission = admission_with_policy_in("team-a");
        let answer = |namespace: &str| -> AdmissionReview<DynamicObject> {
            serde_json::from_slice(&admission.answer(&review(namespace)).unwrap()).unwrap()
        };
        let own = answer("team-a").response.unwrap();
        assert!(own.allowed && own.patch.is_some());
        let other = answer("team-b").response.unwrap();
        assert!(!other.allowed && other.patch.is_none());
        assert!(
            other
                .result
                .message
                .contains("does not exist in namespace team-b"),
            "{}",
            other.result.message
        );
    }
}
