//! Pods the sidecar would make less safe. The proxy holds the policy's store credentials and
//! serves plaintext gRPC on loopback, on two promises: only the pod's own containers reach
//! that port, and no other process reads the proxy's memory or its mounted Secrets.

use k8s_openapi::api::core::v1::{PodSpec, SeccompProfile};

use super::Refusal;

/// Refuses a pod whose settings would break those promises, naming the setting.
pub fn refuse_exposure(spec: &PodSpec) -> Result<(), Refusal> {
    let exposures = [
        (
            spec.host_network,
            "hostNetwork",
            "the proxy's plaintext port would be open to every process on the node",
        ),
        (
            spec.host_pid,
            "hostPID",
            "the node's processes could read the proxy's memory and its store credentials",
        ),
        (
            spec.share_process_namespace,
            "shareProcessNamespace",
            "the app containers could read the proxy's store credentials through /proc",
        ),
    ];
    match exposures.into_iter().find(|(set, ..)| *set == Some(true)) {
        Some((_, field, why)) => Err(Refusal::Exposed { field, why }),
        None => Ok(()),
    }
}

/// A Localhost seccomp profile the pod asks for, which the sidecar keeps: its own
/// RuntimeDefault, set on the container, would otherwise replace it with a looser one.
pub fn pod_seccomp(spec: &PodSpec) -> Option<SeccompProfile> {
    let profile = spec.security_context.as_ref()?.seccomp_profile.as_ref()?;
    (profile.type_ == "Localhost").then(|| profile.clone())
}
