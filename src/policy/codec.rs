//! The `codec` part of a policy: a codec server for the Temporal Web UI and CLI, run by the
//! operator with the policy's stores and credentials, so that operators see the payloads the
//! sidecars offloaded. It hands out plaintext payloads, so it serves HTTPS only and every
//! caller must authenticate.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// A Deployment and a Service named `{policy}-claimcheck-codec` in the policy's namespace,
/// serving HTTPS on `port`; put an Ingress in front for the Web UI (docs/codec-server.md).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.tokensSecretName) || has(self.oidc)").message("codec needs tokensSecretName or oidc: callers of a codec server must authenticate"))]
pub struct CodecSpec {
    /// A kubernetes.io/tls Secret (tls.crt, tls.key) in the policy's namespace: the
    /// certificate the codec server presents.
    #[schemars(length(max = 253))]
    pub tls_secret_name: String,
    /// A Secret whose key `tokens` holds lines SUBJECT:TOKEN[:NAMESPACE,...]: bearer tokens
    /// and the Temporal namespaces each may read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub tokens_secret_name: Option<String>,
    /// OIDC access tokens, verified against the identity provider's keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcSpec>,
    /// Browser origins allowed to call it: the Web UI's, exactly (https://temporal.example.com).
    #[serde(default)]
    #[schemars(length(max = 16), inner(length(max = 256)))]
    #[x_kube(validation = Rule::new("self.all(o, o.matches('^https?://[^/*]+$'))").message("codec.allowedOrigins must be exact origins such as https://temporal.example.com (no path, no *)"))]
    pub allowed_origins: Vec<String>,
    /// /decode resolves references up to this many bytes; larger ones stay references that
    /// the Web UI offers to download. Default 4194304 (4 MiB).
    #[serde(default = "default_decode_max_bytes")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 67108864").message("codec.decodeMaxBytes must be between 0 and 64 MiB"))]
    pub decode_max_bytes: i64,
    /// Replicas of the codec server. Default 1.
    #[serde(default = "default_replicas")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 10").message("codec.replicas must be between 1 and 10"))]
    pub replicas: i32,
    /// The HTTPS port of the Deployment and the Service. Default 8443.
    #[serde(default = "default_port")]
    #[x_kube(validation = Rule::new("self >= 1024 && self <= 65535 && self != 9090").message("codec.port must be between 1024 and 65535, and not 9090 (metrics)"))]
    pub port: i32,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OidcSpec {
    /// The provider's JWKS, for example https://idp.example.com/.well-known/jwks.json.
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('https://')").message("codec.oidc.jwksUrl must be https://"))]
    pub jwks_url: String,
    /// Must appear in the token's `aud`.
    #[schemars(length(max = 256))]
    pub audience: String,
    /// When set, must equal the token's `iss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub issuer: Option<String>,
    /// The claim naming the Temporal namespaces, as Temporal's own authorizer reads it
    /// (`["billing:read"]`). Default permissions.
    #[serde(default = "default_namespaces_claim")]
    #[schemars(length(max = 128))]
    pub namespaces_claim: String,
}

fn default_decode_max_bytes() -> i64 {
    4 << 20
}
fn default_replicas() -> i32 {
    1
}
fn default_port() -> i32 {
    8443
}
fn default_namespaces_claim() -> String {
    "permissions".into()
}

impl OidcSpec {
    pub fn to_config(&self) -> crate::codec::jwt::JwtConfig {
        crate::codec::jwt::JwtConfig {
            jwks_url: self.jwks_url.clone(),
            audience: self.audience.clone(),
            issuer: self.issuer.clone(),
            namespaces_claim: self.namespaces_claim.clone(),
        }
    }
}
