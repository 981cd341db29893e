//! The exact permissions the controller needs, kept beside the code that uses them. The
//! chart writes them out (a test fails when they drift), and a test runs the controller
//! with nothing more.

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use kube::api::ObjectMeta;

pub const CLUSTER_ROLE: &str = "claimcheck-controller";

fn rule(group: &str, resource: &str, verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(vec![resource.to_owned()]),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        ..PolicyRule::default()
    }
}

/// The ClusterRole, with the webhook configuration whose caBundle the replicas keep (none
/// when cert-manager's CA injector keeps it).
pub fn cluster_role(webhook_configuration: Option<&str>) -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(CLUSTER_ROLE.to_owned()),
            ..ObjectMeta::default()
        },
        rules: Some(
            [
                // Watch policies; the finalizer is added and removed with a patch.
                rule(
                    "claimcheck.dev",
                    "payloadstoragepolicies",
                    &["get", "list", "watch", "patch"],
                ),
                rule(
                    "claimcheck.dev",
                    "payloadstoragepolicies/status",
                    &["get", "patch"],
                ),
                // The rendered proxy configuration, applied server-side and watched as owned;
                // the codec server's is deleted with the policy's `codec`.
                rule(
                    "",
                    "configmaps",
                    &["get", "list", "watch", "create", "patch", "delete"],
                ),
                // The codec server a policy asks for: applied server-side, deleted without it.
                rule("apps", "deployments", &["get", "create", "patch", "delete"]),
                rule("", "services", &["get", "create", "patch", "delete"]),
                // Driver credentials and Temporal TLS, which policies name: get, never list or watch.
                rule("", "secrets", &["get"]),
                // Events on policies: Ready changes, rules removed.
                rule("events.k8s.io", "events", &["create", "patch"]),
                // Leader election.
                rule(
                    "coordination.k8s.io",
                    "leases",
                    &["get", "list", "watch", "create", "patch", "update"],
                ),
            ]
            .into_iter()
            // The caBundle of the installed webhook configuration, and nothing else of it: a
            // replica never creates one (see webhook::server::keep_ca_bundle).
            .chain(webhook_configuration.map(|name| PolicyRule {
                resource_names: Some(vec![name.to_owned()]),
                ..rule(
                    "admissionregistration.k8s.io",
                    "mutatingwebhookconfigurations",
                    &["get", "patch"],
                )
            }))
            .collect(),
        ),
        ..ClusterRole::default()
    }
}

/// The Secret of the webhook's CA and certificate, in the operator's namespace.
pub const WEBHOOK_SECRET: &str = "claimcheck-webhook-tls";

/// What the operator may do in its own namespace only: keep the webhook's certificate
/// (create cannot be limited to a name; reading and replacing are).
pub fn role(namespace: &str) -> Role {
    Role {
        metadata: ObjectMeta {
            name: Some(CLUSTER_ROLE.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        rules: Some(vec![
            rule("", "secrets", &["create"]),
            PolicyRule {
                resource_names: Some(vec![WEBHOOK_SECRET.to_owned()]),
                ..rule("", "secrets", &["get", "update"])
            },
        ]),
    }
}
