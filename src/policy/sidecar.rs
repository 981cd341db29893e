//! The `sidecar` part of a policy: how the injected proxy runs in the workers' pods. Pod
//! annotations override it per pod; the operator's defaults fill what neither sets.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// A Kubernetes quantity such as 100m, 128Mi or 1.5G.
pub const QUANTITY: &str = "^[0-9]+([.][0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$";

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SidecarSpec {
    /// The environment variable set in the app containers to the proxy's address
    /// (localhost:port). Default TEMPORAL_ADDRESS.
    #[serde(default = "default_address_env")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z_][A-Za-z0-9_]*$')").message("sidecar.addressEnv must be an environment variable name"))]
    pub address_env: String,
    /// The proxy's gRPC port on localhost, which the workers dial. Default 7233.
    #[serde(default = "default_port")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 65535").message("sidecar.port must be between 1 and 65535"))]
    pub port: i32,
    /// The proxy's log level (RUST_LOG syntax, for example info or claimcheck=debug).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub log_level: Option<String>,
    /// The proxy container's resources; absent fields take the operator's defaults.
    #[serde(default)]
    pub resources: SidecarResources,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SidecarResources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(format!("self.matches('{QUANTITY}')")).message("must be a quantity such as 100m"))]
    pub cpu_request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(format!("self.matches('{QUANTITY}')")).message("must be a quantity such as 128Mi"))]
    pub memory_request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(format!("self.matches('{QUANTITY}')")).message("must be a quantity such as 1"))]
    pub cpu_limit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(format!("self.matches('{QUANTITY}')")).message("must be a quantity such as 512Mi"))]
    pub memory_limit: Option<String>,
}

fn default_address_env() -> String {
    "TEMPORAL_ADDRESS".into()
}
fn default_port() -> i32 {
    7233
}

impl Default for SidecarSpec {
    fn default() -> Self {
        SidecarSpec {
            address_env: default_address_env(),
            port: default_port(),
            log_level: None,
            resources: SidecarResources::default(),
        }
    }
}
