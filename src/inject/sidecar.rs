//! The proxy container: its command line, probes, resources and a locked-down security
//! context (non-root, read-only root filesystem, no capabilities, seccomp RuntimeDefault).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, HTTPGetAction, Probe, ResourceRequirements,
    SeccompProfile, SecurityContext, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::SIDECAR;
use super::settings::{Defaults, Settings};
use crate::policy::pod::{CONFIG_KEY, CONFIG_MOUNT};

/// The distroless `nonroot` user.
const NONROOT: i64 = 65_532;

pub fn container(settings: &Settings, defaults: &Defaults, mounts: Vec<VolumeMount>) -> Container {
    let env = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    };
    Container {
        name: SIDECAR.into(),
        image: Some(defaults.image.clone()),
        image_pull_policy: Some(defaults.image_pull_policy.clone()),
        args: Some(vec![
            "proxy".into(),
            "--config".into(),
            format!("{CONFIG_MOUNT}/{CONFIG_KEY}"),
            "--listen".into(),
            format!("127.0.0.1:{}", settings.port),
            "--metrics-listen".into(),
            format!("0.0.0.0:{}", settings.metrics_port),
        ]),
        env: Some(vec![
            env("RUST_LOG", &settings.log_level),
            env("CLAIMCHECK_LOG_FORMAT", "json"),
            // A sidecar shares the pod's CPU: two threads are plenty.
            env("CLAIMCHECK_WORKER_THREADS", "2"),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("cc-metrics".into()),
            container_port: i32::from(settings.metrics_port),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        // With a native sidecar, the app containers start only once this succeeds.
        startup_probe: Some(probe("/readyz", settings.metrics_port, 1, 120)),
        liveness_probe: Some(probe("/healthz", settings.metrics_port, 10, 3)),
        readiness_probe: Some(probe("/readyz", settings.metrics_port, 5, 3)),
        resources: Some(resources(&settings.resources)),
        security_context: Some(locked_down()),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

/// Non-root, read-only root filesystem, no capabilities, seccomp RuntimeDefault: what
/// the `restricted` Pod Security Standard asks, for the sidecar and the operator alike.
pub fn locked_down() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(NONROOT),
        run_as_group: Some(NONROOT),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}

/// An HTTP probe of `path` on `port`.
pub fn probe(path: &str, port: u16, period_seconds: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(i32::from(port)),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        failure_threshold: Some(failure_threshold),
        timeout_seconds: Some(1),
        ..Probe::default()
    }
}

/// Requests and limits from quantities; an absent one is left out.
pub fn resources(resources: &crate::policy::SidecarResources) -> ResourceRequirements {
    let quantities = |pairs: [(&str, &Option<String>); 2]| {
        let map: BTreeMap<String, Quantity> = pairs
            .into_iter()
            .filter_map(|(name, value)| Some((name.to_owned(), Quantity(value.clone()?))))
            .collect();
        (!map.is_empty()).then_some(map)
    };
    ResourceRequirements {
        requests: quantities([
            ("cpu", &resources.cpu_request),
            ("memory", &resources.memory_request),
        ]),
        limits: quantities([("cpu", &resources.cpu_limit), ("memory", &resources.memory_limit)]),
        ..ResourceRequirements::default()
    }
}
