//! The webhook, served in the test process on a loopback port the real API server dials,
//! and the policies and pods the webhook tests and the admission bench admit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use claimcheck::controller::Telemetry;
use claimcheck::inject::Defaults;
use claimcheck::policy::PayloadStoragePolicy;
use claimcheck::webhook::{
    CONFIGURATION, CertSource, ClientConfig, WebhookOptions, mutating_webhook_configuration,
};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::wait::{await_condition, conditions};

const WAIT: Duration = Duration::from_secs(60);
pub const OPERATOR_NAMESPACE: &str = "claimcheck-system";
pub const TLS_SECRET: &str = "claimcheck-webhook-tls";

/// The CRD, the operator's namespace and `default`.
pub async fn install(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &claimcheck::policy::crd())
        .await
        .unwrap();
    let established = await_condition(
        crds,
        "payloadstoragepolicies.claimcheck.dev",
        conditions::is_crd_established(),
    );
    tokio::time::timeout(WAIT, established).await.unwrap().unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in [OPERATOR_NAMESPACE, "default"] {
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        // `default` may exist already.
        let _ = namespaces.create(&PostParams::default(), &namespace).await;
    }
}

/// Serves the webhook with a serving certificate of `lifetime`, until the task is aborted.
pub async fn start_webhook(
    client: &Client,
    lifetime: Duration,
) -> (tokio::task::JoinHandle<()>, Arc<Telemetry>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    install_configuration(client, &format!("https://127.0.0.1:{port}")).await;
    let options = WebhookOptions {
        certs: CertSource::Managed {
            namespace: OPERATOR_NAMESPACE.into(),
            name: TLS_SECRET.into(),
            lifetime,
            dns_names: vec!["127.0.0.1".into()],
            configuration: CONFIGURATION.into(),
        },
        identity: "test".into(),
        defaults: Defaults {
            image: "ghcr.io/claimcheck/claimcheck:test".into(),
            ..Defaults::default()
        },
    };
    let telemetry = Arc::new(Telemetry::default());
    let webhook = tokio::spawn({
        let (client, telemetry) = (client.clone(), telemetry.clone());
        async move {
            if let Err(e) = claimcheck::webhook::run(client, listener, options, telemetry).await {
                panic!("the webhook stopped: {e:#}");
            }
        }
    });
    let started = Instant::now();
    while !telemetry.webhook_ready() {
        assert!(started.elapsed() < WAIT, "the webhook did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (webhook, telemetry)
}

/// The MutatingWebhookConfiguration, calling the webhook at `url`, installed as the chart
/// installs it: with no caBundle, which the webhook writes.
pub async fn install_configuration(client: &Client, url: &str) {
    let url = ClientConfig::Url(url.to_owned());
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(
            &PostParams::default(),
            &mutating_webhook_configuration(&url, None, OPERATOR_NAMESPACE),
        )
        .await
        .unwrap();
}

/// As [`cluster_with_policy`], with the webhook serving.
pub async fn webhook_with_policy(
    lifetime: Duration,
) -> (
    super::cluster::Cluster,
    Client,
    tokio::task::JoinHandle<()>,
    Arc<Telemetry>,
) {
    let (cluster, client) = cluster_with_policy().await;
    let (webhook, telemetry) = start_webhook(&client, lifetime).await;
    (cluster, client, webhook, telemetry)
}

/// A cluster (API server and etcd) with the CRD and policy `billing` in place.
pub async fn cluster_with_policy() -> (super::cluster::Cluster, Client) {
    let cluster = super::cluster::Cluster::up("kube");
    let client = cluster.kube().await;
    install(&client).await;
    let policies: Api<PayloadStoragePolicy> = Api::namespaced(client.clone(), "default");
    policies
        .create(
            &PostParams::default(),
            &policy("127.0.0.1:7233", "s3://payloads/"),
        )
        .await
        .unwrap();
    (cluster, client)
}

/// Policy `billing` in `default`, for Temporal at `temporal`, on the store at `url` (the
/// webhook itself reaches neither).
pub fn policy(temporal: &str, url: &str) -> PayloadStoragePolicy {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "claimcheck.dev/v1alpha1", "kind": "PayloadStoragePolicy",
        "metadata": {"name": "billing", "namespace": "default"},
        "spec": {
            "temporal": {"address": temporal, "namespace": "default"},
            "drivers": [{"name": "hot", "url": url, "credentialsSecretRef": {"name": "store-creds"}}],
            "lifecycle": {"retention": "1d", "manage": false},
        },
    }))
    .unwrap()
}

/// A one-container pod, labelled for `policy` if any.
pub fn pod(name: &str, namespace: &str, policy: Option<&str>) -> Pod {
    let labels = policy.map(|p| BTreeMap::from([("claimcheck.dev/policy".to_owned(), p.to_owned())]));
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            // No token volume with a random name: the stored spec stays comparable.
            "automountServiceAccountToken": false,
            "containers": [{"name": "worker", "image": "worker:1"}],
        },
    }))
    .unwrap()
}

/// The pod's containers by name, init containers first.
pub fn containers(pod: &Pod) -> Vec<String> {
    let spec = pod.spec.as_ref().unwrap();
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .map(|c| c.name.clone())
        .collect()
}

/// The upper bound of the bucket of the webhook's handling-time histogram that holds
/// quantile `q`, from the metrics text.
pub fn admission_quantile(metrics: &str, q: f64) -> String {
    let buckets: Vec<(String, f64)> = metrics
        .lines()
        .filter_map(|line| line.strip_prefix("claimcheck_controller_admission_seconds_bucket{le=\""))
        .filter_map(|rest| {
            let (bound, count) = rest.split_once("\"} ")?;
            Some((bound.to_owned(), count.parse().ok()?))
        })
        .collect();
    let total = buckets.last().map_or(0.0, |b| b.1);
    buckets
        .into_iter()
        .find(|(_, count)| *count >= q * total)
        .map_or_else(|| "?".to_owned(), |(bound, _)| bound)
}
