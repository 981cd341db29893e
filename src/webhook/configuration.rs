//! The MutatingWebhookConfiguration: pods labelled `claimcheck.dev/policy`, outside
//! kube-system and the operator's own namespace, on create; fail closed, no side effects,
//! re-invoked when a later webhook changes the pod, a short timeout. The chart installs it
//! (a test fails when they drift); the operator writes only its caBundle.

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::api::ObjectMeta;

use crate::policy::pod::POLICY_LABEL;

/// The configuration's name, as the chart installs it under the release name `claimcheck`.
pub const CONFIGURATION: &str = "claimcheck";
pub const PATH: &str = "/mutate";

/// How the API server reaches the webhook.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientConfig {
    /// The operator's Service (in the cluster).
    Service {
        namespace: String,
        name: String,
        port: i32,
    },
    /// A URL (a webhook outside the cluster, as in the tests).
    Url(String),
}

pub fn mutating_webhook_configuration(
    client: &ClientConfig,
    ca_bundle: Option<&str>,
    operator_namespace: &str,
) -> MutatingWebhookConfiguration {
    let (service, url) = match client {
        ClientConfig::Service {
            namespace,
            name,
            port,
        } => (
            Some(ServiceReference {
                namespace: namespace.clone(),
                name: name.clone(),
                path: Some(PATH.to_owned()),
                port: Some(*port),
            }),
            None,
        ),
        ClientConfig::Url(url) => (None, Some(format!("{}{PATH}", url.trim_end_matches('/')))),
    };
    let requirement = |key: &str, operator: &str, values: Option<Vec<String>>| LabelSelectorRequirement {
        key: key.to_owned(),
        operator: operator.to_owned(),
        values,
    };
    let selector = |requirement| LabelSelector {
        match_expressions: Some(vec![requirement]),
        match_labels: None,
    };
    let excluded = vec!["kube-system".to_owned(), operator_namespace.to_owned()];
    MutatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(CONFIGURATION.to_owned()),
            ..ObjectMeta::default()
        },
        webhooks: Some(vec![MutatingWebhook {
            name: "inject.claimcheck.dev".to_owned(),
            admission_review_versions: vec!["v1".to_owned()],
            client_config: WebhookClientConfig {
                ca_bundle: ca_bundle.map(|pem| ByteString(pem.as_bytes().to_vec())),
                service,
                url,
            },
            rules: Some(vec![RuleWithOperations {
                api_groups: Some(vec![String::new()]),
                api_versions: Some(vec!["v1".to_owned()]),
                operations: Some(vec!["CREATE".to_owned()]),
                resources: Some(vec!["pods".to_owned()]),
                scope: Some("Namespaced".to_owned()),
            }]),
            object_selector: Some(selector(requirement(POLICY_LABEL, "Exists", None))),
            namespace_selector: Some(selector(requirement(
                "kubernetes.io/metadata.name",
                "NotIn",
                Some(excluded),
            ))),
            failure_policy: Some("Fail".to_owned()),
            side_effects: "None".to_owned(),
            reinvocation_policy: Some("IfNeeded".to_owned()),
            match_policy: Some("Equivalent".to_owned()),
            timeout_seconds: Some(5),
            ..MutatingWebhook::default()
        }]),
    }
}
