//! What a policy means inside a worker's pod: the names that the operator renders and the
//! injected sidecar reads. The controller writes the ConfigMap and the webhook mounts it, so
//! both take these from here rather than from each other.

/// The label that opts a pod in, naming the policy.
pub const POLICY_LABEL: &str = "claimcheck.dev/policy";
/// The key of the proxy configuration in the ConfigMap, and the file the sidecar reads.
pub const CONFIG_KEY: &str = "proxy.yaml";
/// Where the sidecar mounts the ConfigMap.
pub const CONFIG_MOUNT: &str = "/etc/claimcheck/proxy";
/// Where the sidecar mounts the Temporal TLS Secret.
pub const TLS_MOUNT: &str = "/etc/claimcheck/temporal-tls";
/// Where the sidecar mounts each driver's credential Secret, in a directory named after
/// the driver.
pub const CREDENTIALS_MOUNT: &str = "/etc/claimcheck/credentials";
/// The sidecar's default gRPC port on localhost, which the workers dial.
pub const SIDECAR_PORT: u16 = 7233;
pub const METRICS_PORT: u16 = 9090;

/// The name of the ConfigMap that holds a policy's proxy configuration.
pub fn config_map_name(policy: &str) -> String {
    format!("{policy}-claimcheck-proxy")
}
