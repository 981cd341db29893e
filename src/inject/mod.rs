//! Sidecar injection as a pure function: from a pod, the policy its label names and the
//! operator's defaults, to the pod as it should be admitted. The webhook turns the
//! difference into a JSON patch; nothing here talks to the cluster, so every rule of
//! injection is unit-tested and golden-tested.

mod settings;
mod sidecar;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, EnvVar, Pod, PodSpec, SecretVolumeSource, Volume, VolumeMount,
};
use kube::ResourceExt;

use crate::controller::{CONFIG_MOUNT, CREDENTIALS_MOUNT, TLS_MOUNT, config_map_name};
use crate::policy::PayloadStoragePolicy;

pub use settings::{Defaults, Settings};

/// The label that opts a pod in, naming the policy.
pub const POLICY_LABEL: &str = "claimcheck.dev/policy";
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
    if !annotations.contains_key(INJECTED) && all_containers(spec).any(|c| c.name == SIDECAR) {
        return Err(Refusal::NameTaken);
    }
    let settings = Settings::resolve(annotations, &policy.spec.sidecar, defaults)?;
    let mut desired = pod.clone();
    let spec = desired.spec.get_or_insert_default();
    let file_mounts = file_store_mounts(spec, policy);
    spec.containers.retain(|c| c.name != SIDECAR);
    if let Some(init) = &mut spec.init_containers {
        init.retain(|c| c.name != SIDECAR);
    }
    if annotations.get(INJECT_ADDRESS).is_none_or(|v| v != "false") {
        let address = format!("localhost:{}", settings.port);
        for container in &mut spec.containers {
            set_env(container, &policy.spec.sidecar.address_env, &address);
        }
    }
    let mut container = sidecar::container(&settings, defaults, mounts(policy, file_mounts));
    if defaults.native_sidecars {
        container.restart_policy = Some("Always".into());
        spec.init_containers.get_or_insert_default().insert(0, container);
    } else {
        spec.containers.insert(0, container);
    }
    for volume in volumes(policy) {
        set_volume(spec, volume);
    }
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
fn file_store_mounts(spec: &PodSpec, policy: &PayloadStoragePolicy) -> Vec<VolumeMount> {
    let dirs: Vec<&str> = policy
        .spec
        .drivers
        .iter()
        .filter_map(|d| d.url.strip_prefix("file://"))
        .collect();
    let mut found: BTreeMap<String, VolumeMount> = BTreeMap::new();
    let app_mounts = spec
        .containers
        .iter()
        .filter(|c| c.name != SIDECAR)
        .flat_map(|c| c.volume_mounts.iter().flatten());
    for mount in app_mounts {
        let covers = |dir: &&str| {
            let base = mount.mount_path.trim_end_matches('/');
            *dir == base || dir.starts_with(&format!("{base}/"))
        };
        if dirs.iter().any(covers) {
            found
                .entry(mount.mount_path.clone())
                .or_insert_with(|| VolumeMount {
                    read_only: None,
                    ..mount.clone()
                });
        }
    }
    found.into_values().collect()
}

/// Sets `name` to `value`, replacing a value the container had.
fn set_env(container: &mut Container, name: &str, value: &str) {
    let env = container.env.get_or_insert_default();
    let var = EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    };
    match env.iter_mut().find(|e| e.name == name) {
        Some(existing) => *existing = var,
        None => env.push(var),
    }
}

/// Adds `volume`, replacing ours of the same name from an earlier pass.
fn set_volume(spec: &mut PodSpec, volume: Volume) {
    let volumes = spec.volumes.get_or_insert_default();
    match volumes.iter_mut().find(|v| v.name == volume.name) {
        Some(existing) => *existing = volume,
        None => volumes.push(volume),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn policy() -> PayloadStoragePolicy {
        serde_json::from_value(json!({
            "apiVersion": "claimcheck.dev/v1alpha1", "kind": "PayloadStoragePolicy",
            "metadata": {"name": "billing", "namespace": "workers", "generation": 2},
            "spec": {
                "temporal": {"address": "temporal:7233", "namespace": "billing", "tls": {"secretName": "temporal-tls"}},
                "drivers": [
                    {"name": "hot", "url": "s3://payloads/", "credentialsSecretRef": {"name": "s3-creds"}},
                    {"name": "local", "url": "file:///data/payloads", "minBytes": 1048576},
                ],
            },
        }))
        .unwrap()
    }

    fn pod(annotations: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"generateName": "worker-", "labels": {POLICY_LABEL: "billing"}, "annotations": annotations},
            "spec": {
                "containers": [{
                    "name": "worker", "image": "worker:1",
                    "env": [{"name": "TEMPORAL_ADDRESS", "value": "temporal:7233"}],
                    "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": true}],
                }],
                "volumes": [{"name": "data", "emptyDir": {}}],
            },
        }))
        .unwrap()
    }

    fn injected(pod: &Pod, defaults: &Defaults) -> Pod {
        match inject(pod, &policy(), defaults).unwrap() {
            Outcome::Inject(pod) => *pod,
            Outcome::Skip(why) => panic!("skipped: {why}"),
        }
    }

    /// Compares with tests/golden/NAME; `UPDATE_GOLDEN=1` writes it instead.
    fn golden(name: &str, pod: &Pod) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name);
        let yaml = serde_yaml::to_string(pod).unwrap();
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &yaml).unwrap();
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            yaml,
            expected,
            "{} differs (UPDATE_GOLDEN=1 rewrites it)",
            path.display()
        );
    }

    #[test]
    fn a_native_sidecar_comes_first_with_its_mounts_and_the_address() {
        let pod = injected(&pod(json!({})), &Defaults::default());
        golden("inject-native.yaml", &pod);
        let spec = pod.spec.as_ref().unwrap();
        let sidecar = &spec.init_containers.as_ref().unwrap()[0];
        assert_eq!(
            (sidecar.name.as_str(), sidecar.restart_policy.as_deref()),
            (SIDECAR, Some("Always"))
        );
        let env = spec.containers[0].env.as_ref().unwrap();
        assert_eq!(
            env[0].value.as_deref(),
            Some("localhost:7233"),
            "the worker dials the sidecar"
        );
        let data = sidecar
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.name == "data")
            .unwrap();
        assert_eq!(
            data.read_only, None,
            "the file store's volume, writable for the proxy"
        );
        assert_eq!(
            pod.annotations()[INJECTED],
            format!(
                "policy=billing,generation=2,claimcheck={}",
                env!("CARGO_PKG_VERSION")
            )
        );
    }

    #[test]
    fn without_native_sidecars_the_proxy_is_the_first_container() {
        let defaults = Defaults {
            native_sidecars: false,
            ..Defaults::default()
        };
        let pod = injected(&pod(json!({})), &defaults);
        golden("inject-plain.yaml", &pod);
        let spec = pod.spec.unwrap();
        assert_eq!(spec.containers[0].name, SIDECAR);
        assert_eq!(spec.containers[0].restart_policy, None);
        assert!(spec.init_containers.is_none());
    }

    #[test]
    fn a_second_pass_changes_nothing() {
        let once = injected(&pod(json!({})), &Defaults::default());
        assert_eq!(injected(&once, &Defaults::default()), once);
    }

    #[test]
    fn annotations_override_port_and_resources_and_opt_out_of_the_address() {
        let annotations = json!({
            settings::PORT: "7300",
            settings::MEMORY_LIMIT: "1Gi",
            INJECT_ADDRESS: "false",
        });
        let pod = injected(&pod(annotations), &Defaults::default());
        let spec = pod.spec.unwrap();
        let sidecar = &spec.init_containers.unwrap()[0];
        assert!(
            sidecar
                .args
                .as_ref()
                .unwrap()
                .contains(&"127.0.0.1:7300".to_owned())
        );
        let limits = sidecar.resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert_eq!(limits["memory"].0, "1Gi");
        let env = spec.containers[0].env.as_ref().unwrap();
        assert_eq!(
            env[0].value.as_deref(),
            Some("temporal:7233"),
            "opted out: left as it was"
        );
    }

    #[test]
    fn refusals_and_skips_say_why() {
        let mut taken = pod(json!({}));
        taken.spec.as_mut().unwrap().containers.push(Container {
            name: SIDECAR.into(),
            ..Container::default()
        });
        let refusal = inject(&taken, &policy(), &Defaults::default()).unwrap_err();
        assert!(refusal.to_string().contains("rename that container"), "{refusal}");

        let bad = inject(
            &pod(json!({settings::CPU_REQUEST: "fast"})),
            &policy(),
            &Defaults::default(),
        )
        .unwrap_err();
        assert!(
            bad.to_string().contains("claimcheck.dev/proxy-cpu-request"),
            "{bad}"
        );

        let skipped = inject(&pod(json!({INJECT: "false"})), &policy(), &Defaults::default()).unwrap();
        assert!(matches!(skipped, Outcome::Skip(why) if why.contains(INJECT)));
    }
}
