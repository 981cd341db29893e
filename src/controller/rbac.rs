//! The exact permissions the controller needs, kept beside the code that uses them; the
//! chart and deploy/ render this, and a test runs the controller with nothing more.

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

pub fn cluster_role() -> ClusterRole {
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
            // The webhook's configuration, whose caBundle every replica keeps.
            rule(
                "admissionregistration.k8s.io",
                "mutatingwebhookconfigurations",
                &["get", "create", "patch"],
            ),
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
