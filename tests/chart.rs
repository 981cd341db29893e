//! The Helm chart against the Rust types it must agree with: the CRD, the controller's
//! exact permissions, the webhook configuration, the sidecar defaults and the operator's
//! flags. And deploy/operator.yaml is the chart rendered, nothing else. Rendered by the real
//! `helm template`; the static checks of the chart (lint, schemas) are in tests/chart/.

mod support;

use std::path::Path;
use std::process::Command;

use claimcheck::controller::{WEBHOOK_SECRET, cluster_role, role};
use claimcheck::inject::{Defaults, locked_down};
use claimcheck::webhook::{CONFIGURATION, ClientConfig, mutating_webhook_configuration};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Container;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::de::DeserializeOwned;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const NAMESPACE: &str = "claimcheck-system";

/// `helm template` of the chart as release `claimcheck` in NAMESPACE, with `--set` values.
fn render(set: &[&str]) -> Vec<Value> {
    let mut helm = Command::new(support::installed("helm"));
    helm.args(["template", "claimcheck", &format!("{ROOT}/charts/claimcheck")])
        .args(["--namespace", NAMESPACE]);
    for value in set {
        helm.args(["--set", value]);
    }
    let out = helm.output().expect("helm runs");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    documents(&String::from_utf8_lossy(&out.stdout))
}

fn documents(yaml: &str) -> Vec<Value> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(yaml).expect("rendered YAML parses");
    documents
        .into_iter()
        .filter(|document| !document.is_null())
        .collect()
}

/// The one rendered object of `kind`.
fn one<T: DeserializeOwned>(objects: &[Value], kind: &str) -> T {
    only(objects.iter().filter(|o| o["kind"] == kind), kind)
}

/// The rendered object of `kind` named `name` (the `helm test` hook has RBAC of its own).
fn named<T: DeserializeOwned>(objects: &[Value], kind: &str, name: &str) -> T {
    let matching = objects
        .iter()
        .filter(|o| o["kind"] == kind && o["metadata"]["name"] == name);
    only(matching, &format!("{kind} {name}"))
}

fn only<'a, T: DeserializeOwned>(mut found: impl Iterator<Item = &'a Value>, what: &str) -> T {
    let first = found.next().unwrap_or_else(|| panic!("no {what} rendered"));
    assert!(found.next().is_none(), "more than one {what} rendered");
    serde_json::from_value(first.clone()).unwrap_or_else(|e| panic!("{what}: {e}"))
}

#[test]
fn the_crd_template_is_generated_from_the_types() {
    let generated = claimcheck::chart::crd_template(&claimcheck::policy::crd()).unwrap();
    let committed = std::fs::read_to_string(format!("{ROOT}/charts/claimcheck/templates/crd.yaml")).unwrap();
    assert!(
        committed == generated,
        "charts/claimcheck/templates/crd.yaml drifted from the Rust types: run `make crds`"
    );
}

#[test]
fn the_chart_installs_the_crd_of_the_types_and_upgrades_it() {
    let objects = render(&[]);
    let crd: CustomResourceDefinition = one(&objects, "CustomResourceDefinition");
    assert_eq!(crd.spec, claimcheck::policy::crd().spec);
    let annotations = crd.metadata.annotations.unwrap_or_default();
    assert_eq!(
        annotations.get("helm.sh/resource-policy").map(String::as_str),
        Some("keep")
    );

    let unkept = render(&["crds.keep=false"]);
    let crd: CustomResourceDefinition = one(&unkept, "CustomResourceDefinition");
    assert!(crd.metadata.annotations.is_none());
    let without = render(&["crds.enabled=false"]);
    assert!(!without.iter().any(|o| o["kind"] == "CustomResourceDefinition"));
}

#[test]
fn the_chart_grants_exactly_the_controllers_permissions() {
    let objects = render(&[]);
    let expected = cluster_role(Some(CONFIGURATION));
    let name = expected.metadata.name.as_deref().unwrap();
    let cluster: ClusterRole = named(&objects, "ClusterRole", name);
    assert_eq!(cluster.rules, expected.rules);
    let own: Role = named(&objects, "Role", name);
    assert_eq!(own.rules, role(NAMESPACE).rules);

    // With cert-manager the operator writes neither the caBundle nor a Secret.
    let objects = render(&["certManager.enabled=true"]);
    let cluster: ClusterRole = named(&objects, "ClusterRole", name);
    assert_eq!(cluster.rules, cluster_role(None).rules);
    assert!(
        !objects
            .iter()
            .any(|o| o["kind"] == "Role" && o["metadata"]["name"] == name)
    );
}

#[test]
fn the_chart_installs_the_webhook_configuration_without_a_ca_bundle() {
    let objects = render(&[]);
    let installed: MutatingWebhookConfiguration = one(&objects, "MutatingWebhookConfiguration");
    let service = ClientConfig::Service {
        namespace: NAMESPACE.into(),
        name: "claimcheck-webhook".into(),
        port: 443,
    };
    let expected = mutating_webhook_configuration(&service, None, NAMESPACE);
    assert_eq!(installed.metadata.name, expected.metadata.name);
    assert_eq!(installed.webhooks, expected.webhooks);

    // cert-manager's CA injector fills the caBundle instead of the operator.
    let objects = render(&["certManager.enabled=true"]);
    let installed: MutatingWebhookConfiguration = one(&objects, "MutatingWebhookConfiguration");
    let annotations = installed.metadata.annotations.unwrap_or_default();
    assert_eq!(
        annotations
            .get("cert-manager.io/inject-ca-from")
            .map(String::as_str),
        Some("claimcheck-system/claimcheck-webhook")
    );
    assert!(installed.webhooks.unwrap()[0].client_config.ca_bundle.is_none());
}

fn controller(objects: &[Value]) -> Container {
    let deployment: Deployment = one(objects, "Deployment");
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.containers.len(), 1);
    pod.containers.into_iter().next().unwrap()
}

/// The value of `--flag=value` in the controller's arguments.
fn flag<'a>(container: &'a Container, name: &str) -> Option<&'a str> {
    let prefix = format!("--{name}=");
    container
        .args
        .iter()
        .flatten()
        .find_map(|arg| arg.strip_prefix(&prefix))
}

#[test]
fn the_operator_runs_locked_down_with_the_names_the_chart_gives_it() {
    let objects = render(&[]);
    let container = controller(&objects);
    assert_eq!(container.security_context, Some(locked_down()));
    assert_eq!(flag(&container, "webhook-configuration"), Some(CONFIGURATION));
    assert_eq!(flag(&container, "webhook-secret"), Some(WEBHOOK_SECRET));
    assert_eq!(flag(&container, "webhook-service"), Some("claimcheck-webhook"));
    // The sidecar is the operator's own image unless the values say otherwise.
    assert_eq!(flag(&container, "sidecar-image"), container.image.as_deref());
}

#[test]
fn the_charts_sidecar_defaults_are_the_operators() {
    let container = controller(&render(&[]));
    let defaults = Defaults::default();
    let resources = &defaults.resources;
    let expected = [
        ("sidecar-pull-policy", Some(defaults.image_pull_policy.as_str())),
        ("sidecar-log-level", Some(defaults.log_level.as_str())),
        ("native-sidecars", Some("true")),
        ("sidecar-cpu-request", resources.cpu_request.as_deref()),
        ("sidecar-memory-request", resources.memory_request.as_deref()),
        (
            "sidecar-cpu-limit",
            Some(resources.cpu_limit.as_deref().unwrap_or("")),
        ),
        ("sidecar-memory-limit", resources.memory_limit.as_deref()),
    ];
    for (name, value) in expected {
        assert_eq!(flag(&container, name), value, "--{name}");
    }
}

#[test]
fn deploy_is_the_chart_rendered() {
    let out = Command::new(Path::new(ROOT).join("deploy/render.sh"))
        .env("HELM", support::installed("helm"))
        .output()
        .expect("deploy/render.sh runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let committed = std::fs::read_to_string(format!("{ROOT}/deploy/operator.yaml")).unwrap();
    assert!(
        committed.as_bytes() == out.stdout,
        "deploy/operator.yaml drifted from the chart: run `make crds`"
    );
}

#[test]
fn the_charts_sidecar_quantities_are_the_policys() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{ROOT}/charts/claimcheck/values.schema.json")).unwrap(),
    )
    .unwrap();
    let resources = &schema["properties"]["sidecar"]["properties"]["resources"]["properties"];
    for part in ["requests", "limits"] {
        for quantity in ["cpu", "memory"] {
            let pattern = &resources[part]["properties"][quantity]["pattern"];
            assert_eq!(
                pattern,
                claimcheck::policy::QUANTITY,
                "sidecar.resources.{part}.{quantity}"
            );
        }
    }
}

/// Every `claimcheck_*` metric an alert or the dashboard queries is one the operator or the
/// proxy exports: a renamed metric would otherwise silence its alert.
#[test]
fn the_alerts_and_the_dashboard_query_metrics_that_exist() {
    let exported = format!("{}{}", controller_metrics(), proxy_metrics());
    let rendered = render(&["prometheusRule.enabled=true", "grafanaDashboard.enabled=true"]);
    let queries = serde_json::to_string(&rendered).unwrap();
    let names: std::collections::BTreeSet<&str> = queries
        .match_indices("claimcheck_")
        .map(|(at, _)| {
            let name = &queries[at..];
            let end = name
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(name.len());
            &name[..end]
        })
        .collect();
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        let family = ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        assert!(
            exported.contains(&format!("# TYPE {family} ")),
            "{name} is queried by the chart but not exported"
        );
    }
}

/// The operator's metrics, a sample in every family (an empty family is not exported).
fn controller_metrics() -> String {
    let telemetry = claimcheck::controller::Telemetry::default();
    telemetry.admitted(std::time::Duration::ZERO, true);
    telemetry.policy_ready("team", "policy", true);
    let failed = claimcheck::controller::Error::Finalizer("a failure".into());
    telemetry.reconciled(std::time::Duration::ZERO, Some(&failed));
    telemetry.encode()
}

/// The proxy's metrics, a sample in every family.
fn proxy_metrics() -> String {
    use claimcheck::metrics::{CodeLabel, MethodLabel, OpLabel};
    let metrics = claimcheck::metrics::Metrics::new();
    let code = CodeLabel {
        code: "DataLoss".into(),
    };
    metrics.errors.get_or_create(&code).inc();
    metrics
        .store_seconds
        .get_or_create(&OpLabel { op: "put" })
        .observe(0.1);
    let method = MethodLabel {
        method: "PollWorkflowTaskQueue".into(),
    };
    metrics.rpc_seconds.get_or_create(&method).observe(0.1);
    metrics.encode()
}
