//! Sidecar injection as a pure function: from a pod, the policy its label names and the
//! operator's defaults, to the pod as it should be admitted. The webhook turns the
//! difference into a JSON patch; nothing here talks to the cluster, so every rule of
//! injection is unit-tested and golden-tested.

mod exposure;
pub mod settings;
mod sidecar;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, EnvVar, Pod, PodSpec, SecretVolumeSource, Volume, VolumeMount,
};
use kube::ResourceExt;

use crate::policy::PayloadStoragePolicy;
use crate::policy::pod::{CONFIG_MOUNT, CREDENTIALS_MOUNT, POLICY_LABEL, TLS_MOUNT, config_map_name};

pub use settings::{Defaults, Settings};
pub use sidecar::{locked_down, probe, resources};

/// Records what was injected: policy, its generation, claimcheck's version.
pub const INJECTED: &str = "claimcheck.dev/injected";
/// `"false"`: the pod keeps its label but is left alone.
pub const INJECT: &str = "claimcheck.dev/inject";
/// `"false"`: the app containers do not get the proxy's address.
pub const INJECT_ADDRESS: &str = "claimcheck.dev/inject-address";
/// The sidecar's container name.
pub const SIDECAR: &str = "claimcheck-proxy";

const CONFIG_VOLUME: &str = "claimcheck-config";
const TLS_VOLUME: &str = "claimcheck-temporal-tls";
const CREDENTIALS_VOLUME: &str = "claimcheck-credentials-";

/// What to do with an admitted pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Admit this pod: the input with the sidecar in it (equal to the input on a second pass).
    Inject(Box<Pod>),
    /// Admit the pod unchanged, for this reason.
    Skip(String),
}

/// Why a pod is refused; each says what to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "the pod already has a container named {SIDECAR:?} that claimcheck did not inject: rename that container, or remove the {POLICY_LABEL} label"
    )]
    NameTaken,
    #[error(
        "the pod already has a volume named {0:?}, a name claimcheck uses: rename that volume, or remove the {POLICY_LABEL} label"
    )]
    VolumeTaken(String),
    #[error(
        "container {container:?} uses port {port}, which the proxy needs: set annotation {annotation} to a free port"
    )]
    PortTaken {
        container: String,
        port: u16,
        annotation: &'static str,
    },
    #[error(
        "driver {driver:?} stores payloads in {dir}, but no container of the pod mounts a volume there: mount one, so that the proxy can share it"
    )]
    NoFileVolume { driver: String, dir: String },
    #[error(
        "the pod sets {field}: {why}; claimcheck does not inject there: remove {field}, or the {POLICY_LABEL} label"
    )]
    Exposed { field: &'static str, why: &'static str },
    #[error("annotation {annotation}: {value:?} {why}")]
    BadAnnotation {
        annotation: String,
        value: String,
        why: &'static str,
    },
}

/// The pod with the proxy of `policy` injected.
pub fn inject(pod: &Pod, policy: &PayloadStoragePolicy, defaults: &Defaults) -> Result<Outcome, Refusal> {
    let annotations = pod.annotations();
    if annotations.get(INJECT).is_some_and(|v| v == "false") {
        return Ok(Outcome::Skip(format!("the pod is annotated {INJECT}: \"false\"")));
    }
    let Some(spec) = &pod.spec else {
        return Ok(Outcome::Skip("the pod has no spec".into()));
    };
    exposure::refuse_exposure(spec)?;
    if !annotations.contains_key(INJECTED) {
        refuse_taken_names(spec)?;
    }
    let pod_seccomp = exposure::pod_seccomp(spec);
    let settings = Settings::resolve(annotations, &policy.spec.sidecar, defaults)?;
    refuse_taken_ports(spec, &settings)?;
    let file_mounts = file_store_mounts(spec, policy)?;
    let mut desired = pod.clone();
    let spec = desired.spec.get_or_insert_default();
    // Ours from an earlier pass go: what the policy says now is put back below.
    spec.containers.retain(|c| c.name != SIDECAR);
    if let Some(init) = &mut spec.init_containers {
        init.retain(|c| c.name != SIDECAR);
    }
    if let Some(volumes) = &mut spec.volumes {
        volumes.retain(|v| !is_ours(&v.name));
    }
    if annotations.get(INJECT_ADDRESS).is_none_or(|v| v != "false") {
        let address = format!("localhost:{}", settings.port);
        for container in &mut spec.containers {
            set_env(container, &policy.spec.sidecar.address_env, &address);
        }
    }
    let mut container = sidecar::container(&settings, defaults, mounts(policy, file_mounts));
    if let Some(context) = container
        .security_context
        .as_mut()
        .filter(|_| pod_seccomp.is_some())
    {
        context.seccomp_profile = pod_seccomp;
    }
    if defaults.native_sidecars {
        container.restart_policy = Some("Always".into());
        spec.init_containers.get_or_insert_default().insert(0, container);
    } else {
        spec.containers.insert(0, container);
    }
    spec.volumes.get_or_insert_default().extend(volumes(policy));
    desired
        .annotations_mut()
        .insert(INJECTED.into(), injected_by(policy));
    Ok(Outcome::Inject(Box::new(desired)))
}

fn injected_by(policy: &PayloadStoragePolicy) -> String {
    format!(
        "policy={},generation={},claimcheck={}",
        policy.name_any(),
        policy.metadata.generation.unwrap_or_default(),
        env!("CARGO_PKG_VERSION")
    )
}

fn all_containers(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
}

/// Every volume claimcheck adds is named `claimcheck-...`.
fn is_ours(volume: &str) -> bool {
    volume.starts_with("claimcheck-")
}

fn refuse_taken_names(spec: &PodSpec) -> Result<(), Refusal> {
    if all_containers(spec).any(|c| c.name == SIDECAR) {
        return Err(Refusal::NameTaken);
    }
    match spec.volumes.iter().flatten().find(|v| is_ours(&v.name)) {
        Some(volume) => Err(Refusal::VolumeTaken(volume.name.clone())),
        None => Ok(()),
    }
}

/// The pod's network is shared: a container on the proxy's port would stop it starting.
fn refuse_taken_ports(spec: &PodSpec, settings: &Settings) -> Result<(), Refusal> {
    let ours = [
        (settings.port, settings::PORT),
        (settings.metrics_port, settings::METRICS_PORT_ANNOTATION),
    ];
    for container in all_containers(spec).filter(|c| c.name != SIDECAR) {
        for declared in container.ports.iter().flatten() {
            if let Some((port, annotation)) = ours
                .iter()
                .find(|(p, _)| i32::from(*p) == declared.container_port)
            {
                return Err(Refusal::PortTaken {
                    container: container.name.clone(),
                    port: *port,
                    annotation,
                });
            }
        }
    }
    Ok(())
}

/// The Secrets the sidecar mounts, by volume name: each driver's credentials, Temporal's TLS.
fn secrets(policy: &PayloadStoragePolicy) -> Vec<(String, String, String)> {
    let credentials = policy.spec.drivers.iter().filter_map(|d| {
        let secret = d.credentials_secret_ref.as_ref()?;
        Some((
            format!("{CREDENTIALS_VOLUME}{}", d.name),
            secret.name.clone(),
            format!("{CREDENTIALS_MOUNT}/{}", d.name),
        ))
    });
    let tls = policy.spec.temporal.tls.iter().map(|tls| {
        (
            TLS_VOLUME.to_owned(),
            tls.secret_name.clone(),
            TLS_MOUNT.to_owned(),
        )
    });
    credentials.chain(tls).collect()
}

fn volumes(policy: &PayloadStoragePolicy) -> Vec<Volume> {
    let config = Volume {
        name: CONFIG_VOLUME.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map_name(&policy.name_any()),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    };
    let secrets = secrets(policy).into_iter().map(|(volume, secret, _)| Volume {
        name: volume,
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    });
    std::iter::once(config).chain(secrets).collect()
}

fn mounts(policy: &PayloadStoragePolicy, file_mounts: Vec<VolumeMount>) -> Vec<VolumeMount> {
    let read_only = |name: String, path: String| VolumeMount {
        name,
        mount_path: path,
        read_only: Some(true),
        ..VolumeMount::default()
    };
    let config = read_only(CONFIG_VOLUME.into(), CONFIG_MOUNT.into());
    let secrets = secrets(policy)
        .into_iter()
        .map(|(volume, _, path)| read_only(volume, path));
    std::iter::once(config)
        .chain(secrets)
        .chain(file_mounts)
        .collect()
}

/// A `file://` store is a volume the pod already mounts in an app container: the sidecar
/// gets the same mount, writable, so that both see one directory.
fn file_store_mounts(spec: &PodSpec, policy: &PayloadStoragePolicy) -> Result<Vec<VolumeMount>, Refusal> {
    let app_mounts: Vec<&VolumeMount> = spec
        .containers
        .iter()
        .filter(|c| c.name != SIDECAR)
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .collect();
    let mut found: BTreeMap<String, VolumeMount> = BTreeMap::new();
    for driver in &policy.spec.drivers {
        let Some(dir) = driver.url.strip_prefix("file://") else {
            continue;
        };
        let covers = |mount: &&&VolumeMount| {
            let base = mount.mount_path.trim_end_matches('/');
            dir == base || dir.starts_with(&format!("{base}/"))
        };
        let Some(mount) = app_mounts.iter().find(covers) else {
            return Err(Refusal::NoFileVolume {
                driver: driver.name.clone(),
                dir: dir.to_owned(),
            });
        };
        found
            .entry(mount.mount_path.clone())
            .or_insert_with(|| VolumeMount {
                read_only: None,
                ..(*mount).clone()
            });
    }
    Ok(found.into_values().collect())
}

/// Sets `name` to `value`, replacing what the container had: every definition of it, as
/// the last of several is the one that counts.
fn set_env(container: &mut Container, name: &str, value: &str) {
    let env = container.env.get_or_insert_default();
    let var = EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    };
    match env.iter().position(|e| e.name == name) {
        Some(first) => {
            env[first] = var;
            let mut index = 0;
            env.retain(|e| {
                index += 1;
                index - 1 == first || e.name != name
            });
        }
        None => env.push(var),
    }
}
