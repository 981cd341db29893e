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
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use crate::inject::{Defaults, Outcome, POLICY_LABEL, inject};
use crate::policy::PayloadStoragePolicy;

pub use certs::{CertSource, Certificates, ServingCert};
pub use configuration::{CONFIGURATION, ClientConfig, mutating_webhook_configuration};
pub use server::{WebhookOptions, run};

/// What every admission shares.
pub struct Admission {
    pub policies: Store<PayloadStoragePolicy>,
    pub defaults: Defaults,
    /// Publishes Injected and InjectionSkipped on the policy; absent in unit tests.
    pub recorder: Option<Recorder>,
    pub metrics: Arc<crate::controller::Telemetry>,
}

impl Admission {
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
        let outcome = match inject(pod, &policy, &self.defaults) {
            Ok(outcome) => outcome,
            Err(refusal) => return response.deny(format!("pod {namespace}/{pod_name}: {refusal}")),
        };
        let (patch, event) = match outcome {
            Outcome::Inject(desired) => match diff(pod, &desired) {
                Ok(patch) => (
                    patch,
                    (
                        "Injected",
                        format!("proxy injected into pod {namespace}/{pod_name}"),
                    ),
                ),
                Err(e) => return response.deny(format!("pod {namespace}/{pod_name}: {e}")),
            },
            Outcome::Skip(why) => (
                json_patch::Patch(Vec::new()),
                (
                    "InjectionSkipped",
                    format!("pod {namespace}/{pod_name} left alone: {why}"),
                ),
            ),
        };
        let changed = !patch.0.is_empty();
        if changed || event.0 == "InjectionSkipped" {
            self.announce(&policy, request.dry_run, event);
        }
        if !changed {
            return response;
        }
        match response.with_patch(patch) {
            Ok(response) => response,
            Err(e) => AdmissionResponse::from(request).deny(format!("pod {namespace}/{pod_name}: {e}")),
        }
    }

    /// Events are published off the admission's path; a dry run has no side effects.
    fn announce(&self, policy: &PayloadStoragePolicy, dry_run: bool, (reason, note): (&str, String)) {
        let Some(recorder) = self.recorder.clone().filter(|_| !dry_run) else {
            return;
        };
        let event = Event {
            type_: EventType::Normal,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Admit".to_owned(),
            secondary: None,
        };
        let reference = policy.object_ref(&());
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&event, &reference).await {
                tracing::warn!(error = %e, "cannot publish an Event");
            }
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
