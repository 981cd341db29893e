//! The codec server a policy asks for (`spec.codec`): a ConfigMap with its configuration, a
//! Deployment running `claimcheck codec` with the policy's store credentials, and a Service,
//! all named `{policy}-claimcheck-codec` and owned by the policy.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, ContainerPort, EnvVar, PodSpec, PodTemplateSpec, SecretVolumeSource,
    Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;
use sha2::{Digest, Sha256};

use super::render::{beside_config, proxy_config};
use crate::config::{CodecConfig, ProxyConfig, ServerTlsFiles};
use crate::inject::{Defaults, locked_down, probe, resources};
use crate::policy::pod::{CONFIG_KEY, CONFIG_MOUNT, CREDENTIALS_MOUNT, METRICS_PORT};
use crate::policy::{CodecSpec, PayloadStoragePolicySpec};

/// Selects the codec's pods. Not the policy label: that one asks for a sidecar.
pub const CODEC_LABEL: &str = "claimcheck.dev/codec";
const TLS_MOUNT: &str = "/etc/claimcheck/codec-tls";
const TOKENS_MOUNT: &str = "/etc/claimcheck/codec-tokens";
const TOKENS_KEY: &str = "tokens";
const CONTAINER: &str = "codec";
const CONFIG_DIGEST: &str = "claimcheck.dev/config-sha256";
/// The codec's in-flight budget: 64 MiB downloads held four times over, within the 512Mi
/// memory limit the operator's defaults give it, with room for the cache.
const CODEC_INFLIGHT_BYTES: usize = 256 << 20;

/// The name of the codec's ConfigMap, Deployment and Service.
pub fn codec_name(policy: &str) -> String {
    format!("{policy}-claimcheck-codec")
}

/// The codec's configuration: the sidecar's stores, and a codec listening on every address
/// over TLS, with the policy's callers.
pub fn codec_config(spec: &PayloadStoragePolicySpec, codec: &CodecSpec) -> ProxyConfig {
    let port = u16::try_from(codec.port).unwrap_or(8443);
    let mut config = proxy_config(spec, None);
    // Within the pod's memory: an original is held four times over while it is answered.
    config.limits.inflight_bytes = CODEC_INFLIGHT_BYTES;
    config.limits.max_message_bytes = config.limits.max_message_bytes.min(CODEC_INFLIGHT_BYTES);
    config.codec = Some(CodecConfig {
        allowed_origins: codec.allowed_origins.clone(),
        // A policy's codec reads its own namespace's objects, whatever a token allows.
        namespaces: vec![spec.temporal.namespace.clone()],
        decode_max_bytes: u64::try_from(codec.decode_max_bytes).unwrap_or(0),
        tls: Some(ServerTlsFiles {
            cert_file: beside_config(TLS_MOUNT).join("tls.crt"),
            key_file: beside_config(TLS_MOUNT).join("tls.key"),
        }),
        tokens_file: codec
            .tokens_secret_name
            .as_ref()
            .map(|_| beside_config(TOKENS_MOUNT).join(TOKENS_KEY)),
        oidc: codec.oidc.as_ref().map(|o| o.to_config()),
        ..CodecConfig::new(SocketAddr::from(([0, 0, 0, 0], port)))
    });
    config
}

pub fn config_map_data(
    spec: &PayloadStoragePolicySpec,
    codec: &CodecSpec,
) -> Result<BTreeMap<String, String>, crate::yaml::WriteError> {
    let config = crate::yaml::to_string(&codec_config(spec, codec))?;
    Ok(BTreeMap::from([(CONFIG_KEY.to_owned(), config)]))
}

fn labels(policy: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "claimcheck-codec".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), policy.to_owned()),
        (CODEC_LABEL.to_owned(), policy.to_owned()),
    ])
}

/// The Deployment; `config` is its ConfigMap's data, whose digest on the pod template rolls
/// the pods when it changes (the listener, origins and credentials' paths are read at start).
pub fn deployment(
    policy: &str,
    spec: &PayloadStoragePolicySpec,
    codec: &CodecSpec,
    config: &BTreeMap<String, String>,
    defaults: &Defaults,
) -> Deployment {
    let labels = labels(policy);
    let (volumes, mounts) = volumes(policy, spec, codec);
    let env = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    };
    let container = Container {
        name: CONTAINER.into(),
        image: Some(defaults.image.clone()),
        image_pull_policy: Some(defaults.image_pull_policy.clone()),
        args: Some(vec![
            "codec".into(),
            "--config".into(),
            format!("{CONFIG_MOUNT}/{CONFIG_KEY}"),
        ]),
        env: Some(vec![
            env("RUST_LOG", &defaults.log_level),
            env("CLAIMCHECK_LOG_FORMAT", "json"),
        ]),
        ports: Some(vec![
            port("https", codec.port),
            port("metrics", i32::from(METRICS_PORT)),
        ]),
        readiness_probe: Some(probe("/readyz", METRICS_PORT, 5, 3)),
        liveness_probe: Some(probe("/healthz", METRICS_PORT, 10, 3)),
        resources: Some(resources(&defaults.resources)),
        security_context: Some(locked_down()),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    Deployment {
        metadata: ObjectMeta {
            name: Some(codec_name(policy)),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(codec.replicas),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(BTreeMap::from([(CONFIG_DIGEST.to_owned(), digest(config))])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(volumes),
                    automount_service_account_token: Some(false),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

pub fn service(policy: &str, codec: &CodecSpec) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(codec_name(policy)),
            labels: Some(labels(policy)),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(labels(policy)),
            ports: Some(vec![ServicePort {
                name: Some("https".into()),
                port: codec.port,
                target_port: Some(IntOrString::String("https".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn digest(config: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    for (key, value) in config {
        hasher.update(key.as_bytes());
        hasher.update([0]);
        hasher.update(value.as_bytes());
        hasher.update([0]);
    }
    hex::encode(hasher.finalize())
}

fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: number,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

/// The configuration, each driver's credentials, the certificate and the tokens.
fn volumes(
    policy: &str,
    spec: &PayloadStoragePolicySpec,
    codec: &CodecSpec,
) -> (Vec<Volume>, Vec<VolumeMount>) {
    let secret = |volume: String, name: &str, path: String| {
        let source = Volume {
            name: volume.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(name.to_owned()),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        };
        (source, read_only(volume, path))
    };
    let config = Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: codec_name(policy),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    };
    let credentials = spec.drivers.iter().filter_map(|d| {
        let name = &d.credentials_secret_ref.as_ref()?.name;
        Some(secret(
            format!("credentials-{}", d.name),
            name,
            format!("{CREDENTIALS_MOUNT}/{}", d.name),
        ))
    });
    let tls = secret("tls".into(), &codec.tls_secret_name, TLS_MOUNT.into());
    let tokens = codec
        .tokens_secret_name
        .as_ref()
        .map(|name| secret("tokens".into(), name, TOKENS_MOUNT.into()));
    std::iter::once((config, read_only("config".into(), CONFIG_MOUNT.into())))
        .chain(credentials)
        .chain(std::iter::once(tls))
        .chain(tokens)
        .unzip()
}

fn read_only(name: String, path: String) -> VolumeMount {
    VolumeMount {
        name,
        mount_path: path,
        read_only: Some(true),
        ..VolumeMount::default()
    }
}
