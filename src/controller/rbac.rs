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

/// The ClusterRole, with the webhook configuration whose caBundle the replicas keep.
pub fn cluster_role(webhook_configuration: &str) -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(CLUSTER_ROLE.to_owned()),
            ..ObjectMeta::default()
        },
        rules: Some(vec![
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
            // The rendered proxy configuration, applied server-side and watched as owned.
            rule("", "configmaps", &["get", "list", "watch", "create", "patch"]),
            // Driver credentials and Temporal TLS, read by name only.
            rule("", "secrets", &["get"]),
            // Events on policies: Ready changes, rules removed.
            rule("events.k8s.io", "events", &["create", "patch"]),
            // The caBundle of the installed webhook configuration, and nothing else of it:
            // a replica never creates one (see webhook::server::keep_ca_bundle).
            PolicyRule {
                resource_names: Some(vec![webhook_configuration.to_owned()]),
                ..rule(
                    "admissionregistration.k8s.io",
                    "mutatingwebhookconfigurations",
                    &["get", "patch"],
                )
            },
            // Leader election.
            rule(
                "coordination.k8s.io",
                "leases",
                &["get", "list", "watch", "create", "patch", "update"],
            ),
        ]),
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
