//! `PayloadStoragePolicy` (`claimcheck.dev/v1alpha1`): what a team applies to have its
//! Temporal payloads offloaded, verified and expired. The schema, its CEL rules and the
//! field documentation that `kubectl explain` shows all come from these types.

mod codec;
mod duration;
pub mod pod;
mod sidecar;

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{CustomResourceDefinition, JSON};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use serde::{Deserialize, Serialize};

pub use codec::{CodecSpec, OidcSpec};
pub use duration::{DurationError, parse_duration};
pub use sidecar::{QUANTITY, SidecarResources, SidecarSpec};

/// A duration such as `14d`, `36h`, `90m` or `30s`.
const DURATION: &str = "^[0-9]+(s|m|h|d)$";
/// Store option keys that name a credential: those belong in the Secret, not in options,
/// which are rendered into a ConfigMap that more people may read.
const CREDENTIAL_KEY: &str = "(?i)(secret|token|password|credential|sas|access_key|account_key|private)";

/// Offload the large payloads of one Temporal namespace to object storage, with bucket
/// lifecycle rules that outlive every workflow that may read them, proven by a round-trip
/// probe before the policy is Ready.
// clippy reads the printcolumn(...) arguments as repeated attributes; they are kube's.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "claimcheck.dev",
    version = "v1alpha1",
    kind = "PayloadStoragePolicy",
    namespaced,
    status = "PayloadStoragePolicyStatus",
    shortname = "pspolicy",
    category = "claimcheck",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "TTL", type_ = "string", json_path = ".status.effectiveTTL"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.codec) || self.drivers.all(d, !d.url.startsWith('file://'))").message("codec cannot serve a file:// driver: its objects are in the workers' volume"))]
pub struct PayloadStoragePolicySpec {
    /// The Temporal frontend the injected proxies forward to, and the namespace whose
    /// payloads this policy stores.
    pub temporal: TemporalTarget,
    /// Payloads whose serialized size is at least this many bytes are offloaded; smaller
    /// ones stay inline in history. 0 offloads every payload. Default 262144 (256 KiB).
    #[serde(default = "default_threshold")]
    #[x_kube(validation = Rule::new("self >= 0").message("thresholdBytes must not be negative"))]
    pub threshold_bytes: i64,
    /// The stores payloads go to. A payload goes to the driver with the largest minBytes
    /// not above its size (hot and cold tiers); any driver can fetch what any wrote.
    #[schemars(length(max = 8))]
    #[x_kube(validation = Rule::new("size(self) >= 1").message("at least one driver is required"))]
    #[x_kube(validation = Rule::new("self.all(d, self.exists_one(e, e.name == d.name))").message("driver names must be unique"))]
    pub drivers: Vec<DriverSpec>,
    /// How long stored payloads live, and whether claimcheck manages the bucket rule.
    #[serde(default)]
    pub lifecycle: LifecycleSpec,
    /// The round-trip probe that proves the policy before it is Ready.
    #[serde(default)]
    pub probe: ProbeSpec,
    /// How the injected proxy sidecar runs in the pods labelled `claimcheck.dev/policy`.
    #[serde(default)]
    pub sidecar: SidecarSpec,
    /// A codec server for the Temporal Web UI and CLI, with this policy's stores. Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<CodecSpec>,
}

fn default_threshold() -> i64 {
    256 * 1024
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TemporalTarget {
    /// The Temporal frontend, host:port (for example temporal-frontend.temporal:7233).
    #[x_kube(validation = Rule::new("self != ''").message("temporal.address is required"))]
    pub address: String,
    /// The Temporal namespace whose payloads this policy stores.
    #[x_kube(validation = Rule::new("self != ''").message("temporal.namespace is required"))]
    pub namespace: String,
    /// TLS to the frontend. Absent: plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TemporalTls>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TemporalTls {
    /// A Secret in the policy's namespace with `ca.crt` and, for mutual TLS, `tls.crt`
    /// and `tls.key`.
    pub secret_name: String,
    /// The name to verify the frontend's certificate against, if not the address's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DriverSpec {
    /// Name of this tier, unique within the policy (for example hot or cold). At most 40
    /// characters: the sidecar's volume for its credentials is named after it.
    #[schemars(length(max = 40))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("driver name must be a DNS label"))]
    pub name: String,
    /// Where payloads are stored: s3://bucket/prefix/, gs://bucket/prefix/,
    /// az://container/prefix/ or file:///directory (a volume shared by the pod).
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("self.matches('^(s3|gs|az|azure)://[^/]+(/.*)?$') || self.matches('^file:///.+')").message("url must start with s3://, gs://, az://, azure:// or file:///"))]
    pub url: String,
    /// Payloads at least this large go to this driver rather than one with a smaller minBytes.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self >= 0").message("minBytes must not be negative"))]
    pub min_bytes: i64,
    /// A Secret in the policy's namespace whose keys become the store client's environment
    /// (AWS_ACCESS_KEY_ID, GOOGLE_SERVICE_ACCOUNT_KEY, AZURE_STORAGE_ACCOUNT_KEY, ...).
    /// Absent: the workload's own identity (IRSA, workload identity, instance metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
    /// Store client options by object_store key (endpoint, region, ...); never credentials.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    #[x_kube(validation = Rule::new(format!("self.all(k, !k.matches('{CREDENTIAL_KEY}'))")).message("options must not hold credentials (keys, secrets, tokens): put them in the Secret named by credentialsSecretRef"))]
    pub options: BTreeMap<String, String>,
    /// Accept references to `v0/d/sha256/{hex}`, the key the SDKs write for payloads of no
    /// namespace (Nexus results, a codec server's /encode). Off by default: any namespace that
    /// knows an object's hash could read it. Turn it on for a store that serves one namespace.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accept_unscoped_keys: bool,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SecretRef {
    /// Name of a Secret in the policy's namespace.
    pub name: String,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleSpec {
    /// The longest run timeout of any workflow in the namespace (for example 14d). Payloads
    /// must outlive it plus the namespace's retention.
    #[serde(default = "default_run_timeout")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new(format!("self.matches('{DURATION}')")).message("maxWorkflowRunTimeout must be a duration such as 14d, 36h or 90m"))]
    pub max_workflow_run_timeout: String,
    /// The namespace's retention period, or `auto` to read it from Temporal and follow it.
    #[serde(default = "default_retention")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new(format!("self == 'auto' || self.matches('{DURATION}')")).message("retention must be auto or a duration such as 30d"))]
    pub retention: String,
    /// Extra time on top, for debugging and recovery (for example 1d).
    #[serde(default = "default_grace")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new(format!("self.matches('{DURATION}')")).message("grace must be a duration such as 1d"))]
    pub grace: String,
    /// Whether claimcheck installs and maintains the bucket lifecycle rule.
    #[serde(default = "default_true")]
    pub manage: bool,
}

fn default_run_timeout() -> String {
    "14d".into()
}
fn default_retention() -> String {
    "auto".into()
}
fn default_grace() -> String {
    "1d".into()
}
fn default_true() -> bool {
    true
}

impl Default for LifecycleSpec {
    fn default() -> Self {
        LifecycleSpec {
            max_workflow_run_timeout: default_run_timeout(),
            retention: default_retention(),
            grace: default_grace(),
            manage: true,
        }
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProbeSpec {
    /// How often the round-trip probe runs again (for example 5m).
    #[serde(default = "default_interval")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new(format!("self.matches('{DURATION}')")).message("probe.interval must be a duration such as 5m"))]
    pub interval: String,
    /// Size of the probe's large payload, which must be offloaded. Default 2 MiB.
    #[serde(default = "default_large_bytes")]
    #[x_kube(validation = Rule::new("self > 0").message("probe.largeBytes must be positive"))]
    pub large_bytes: i64,
}

fn default_interval() -> String {
    "5m".into()
}
fn default_large_bytes() -> i64 {
    2 << 20
}

impl Default for ProbeSpec {
    fn default() -> Self {
        ProbeSpec {
            interval: default_interval(),
            large_bytes: default_large_bytes(),
        }
    }
}

/// The CustomResourceDefinition: what kube derives from the types, with one addition. A new
/// policy reads `status: {observedGeneration: 0}` until the controller writes its status, so
/// that kstatus (Flux's health checks, `helm --wait`) sees it in progress: without a status it
/// cannot tell the policy from a resource that has none, and calls it Current.
pub fn crd() -> CustomResourceDefinition {
    let mut crd = PayloadStoragePolicy::crd();
    for version in &mut crd.spec.versions {
        let properties = version
            .schema
            .as_mut()
            .and_then(|schema| schema.open_api_v3_schema.as_mut())
            .and_then(|schema| schema.properties.as_mut());
        if let Some(status) = properties.and_then(|properties| properties.get_mut("status")) {
            status.default = Some(JSON(serde_json::json!({"observedGeneration": 0})));
        }
    }
    crd
}

/// What the controller last observed and concluded (kstatus conventions).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PayloadStoragePolicyStatus {
    /// The generation these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling, Stalled, StorageVerified, LifecycleConfigured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// How long stored payloads live, in whole days.
    #[serde(default, rename = "effectiveTTL", skip_serializing_if = "Option::is_none")]
    pub effective_ttl: Option<String>,
    /// How the TTL was derived, for example `14d run timeout + 30d retention (namespace) + 1d grace`.
    #[serde(default, rename = "ttlDerivation", skip_serializing_if = "Option::is_none")]
    pub ttl_derivation: Option<String>,
    /// The last round-trip probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe: Option<crate::probe::ProbeReport>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    /// A CamelCase reason a user can act on.
    pub reason: String,
    pub message: String,
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl DriverSpec {
    /// The proxy configuration of this driver.
    pub fn proxy_driver(&self) -> crate::config::DriverConfig {
        crate::config::DriverConfig {
            url: self.url.clone(),
            prefix: String::new(),
            min_bytes: u64::try_from(self.min_bytes).unwrap_or(0),
            options: self.options.clone(),
            credentials_dir: None,
            expire_after_days: None,
            accept_unscoped_keys: self.accept_unscoped_keys,
        }
    }
}
