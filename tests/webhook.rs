//! The admission webhook through the real API server, which calls it over TLS to admit
//! pods; with MinIO and a Temporal dev server for the injected sidecar's own run.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use claimcheck::controller::Telemetry;
use claimcheck::inject::{Defaults, SIDECAR};
use claimcheck::policy::PayloadStoragePolicy;
use claimcheck::webhook::{CertSource, ClientConfig, WebhookOptions};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, CustomResourceExt};
use support::cluster::{Cluster, Store};
use support::{DevServer, Expect};

const WAIT: Duration = Duration::from_secs(60);
const OPERATOR_NAMESPACE: &str = "claimcheck-system";
const TLS_SECRET: &str = "claimcheck-webhook-tls";

async fn install(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &PayloadStoragePolicy::crd())
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

/// The webhook, served in this process on a loopback port the API server dials.
async fn start_webhook(client: &Client, lifetime: Duration) -> (tokio::task::JoinHandle<()>, Arc<Telemetry>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let options = WebhookOptions {
        client_config: ClientConfig::Url(format!("https://127.0.0.1:{port}")),
        certs: CertSource::Managed {
            namespace: OPERATOR_NAMESPACE.into(),
            name: TLS_SECRET.into(),
            lifetime,
            dns_names: vec!["127.0.0.1".into()],
        },
        manage_configuration: true,
        operator_namespace: OPERATOR_NAMESPACE.into(),
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

/// A policy on the store at `url` (the webhook itself never reaches the store).
fn policy(server: &DevServer, url: &str) -> PayloadStoragePolicy {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "claimcheck.dev/v1alpha1", "kind": "PayloadStoragePolicy",
        "metadata": {"name": "billing", "namespace": "default"},
        "spec": {
            "temporal": {"address": format!("127.0.0.1:{}", server.port), "namespace": "default"},
            "drivers": [{"name": "hot", "url": url, "credentialsSecretRef": {"name": "store-creds"}}],
            "lifecycle": {"retention": "1d", "manage": false},
        },
    }))
    .unwrap()
}

fn pod(name: &str, namespace: &str, policy: Option<&str>) -> Pod {
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

fn secret(name: &str, env: &BTreeMap<String, String>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        data: Some(
            env.iter()
                .map(|(k, v)| (k.clone(), ByteString(v.clone().into_bytes())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// Compares with tests/golden/NAME; `UPDATE_GOLDEN=1` writes it instead.
fn golden(name: &str, value: &impl serde::Serialize) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let yaml = serde_yaml::to_string(value).unwrap();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &yaml).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        yaml,
        expected,
        "{} differs (UPDATE_GOLDEN=1 rewrites it)",
        path.display()
    );
}

fn containers(pod: &Pod) -> Vec<String> {
    let spec = pod.spec.as_ref().unwrap();
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .map(|c| c.name.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn labelled_pods_get_the_sidecar_which_runs_and_follows_its_policy() {
    let cluster = Cluster::up("kube,s3");
    let server = DevServer::start().await;
    let client = cluster.kube().await;
    install(&client).await;
    let (_webhook, _) = start_webhook(&client, Duration::from_secs(3600)).await;
    let controller = tokio::spawn(claimcheck::controller::run(
        client.clone(),
        "test",
        Default::default(),
    ));
    let env = cluster.user_env(Store::S3);
    Api::<Secret>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &secret("store-creds", &env))
        .await
        .unwrap();
    let policies: Api<PayloadStoragePolicy> = Api::namespaced(client.clone(), "default");
    policies
        .create(
            &PostParams::default(),
            &policy(&server, &cluster.url(Store::S3, "billing/")),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // Injected, exactly as the golden file says, as the API server stores it.
    let stored = pods
        .create(&PostParams::default(), &pod("worker", "default", Some("billing")))
        .await
        .unwrap();
    golden("webhook-stored-pod-spec.yaml", &stored.spec);
    assert_eq!(containers(&stored), [SIDECAR, "worker"]);
    let started = Instant::now();
    while !support::event_reasons(&client, "billing")
        .await
        .contains(&"Injected".to_owned())
    {
        assert!(started.elapsed() < WAIT, "no Injected event on the policy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Re-admitting the injected pod changes nothing.
    let mut again = stored.clone();
    again.metadata = ObjectMeta {
        name: Some("worker-again".into()),
        labels: stored.metadata.labels.clone(),
        annotations: stored.metadata.annotations.clone(),
        ..ObjectMeta::default()
    };
    let readmitted = pods
        .create(
            &PostParams {
                dry_run: true,
                ..PostParams::default()
            },
            &again,
        )
        .await
        .unwrap();
    assert_eq!(readmitted.spec, stored.spec);

    // Unlabelled pods, and labelled pods in an excluded namespace, are left alone.
    let plain = pods
        .create(&PostParams::default(), &pod("plain", "default", None))
        .await
        .unwrap();
    assert_eq!(containers(&plain), ["worker"]);
    let operator_pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let excluded = operator_pods
        .create(
            &PostParams::default(),
            &pod("excluded", OPERATOR_NAMESPACE, Some("billing")),
        )
        .await
        .unwrap();
    assert_eq!(containers(&excluded), ["worker"]);

    // A policy that does not exist: refused, with the webhook's message.
    let refused = pods
        .create(&PostParams::default(), &pod("lost", "default", Some("payroll")))
        .await
        .unwrap_err();
    let message = refused.to_string();
    assert!(
        message.contains("names PayloadStoragePolicy \"payroll\""),
        "{message}"
    );
    assert!(message.contains("create it, or fix the label"), "{message}");

    // The sidecar, materialised from the stored pod, runs the real proxy.
    let root = tempfile::tempdir().unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let rendered = wait_for_config(&config_maps, |_| true).await;
    let sidecar = Sidecar::materialise(&stored, &rendered, &env, root.path());
    let _proxy = sidecar.start();
    let address = sidecar.worker_address(&stored);
    support::run_scenario(&address, server.port, 512 * 1024, Expect::Offloaded);
    support::run_scenario(&address, server.port, 3 << 20, Expect::Offloaded);

    // A new threshold reaches the running proxy through its mounted file.
    let threshold = serde_json::json!({"spec": {"thresholdBytes": 1 << 20}});
    policies
        .patch("billing", &PatchParams::default(), &Patch::Merge(&threshold))
        .await
        .unwrap();
    let rendered = wait_for_config(&config_maps, |yaml| yaml.contains("thresholdBytes: 1048576")).await;
    sidecar.remount_config(&rendered);
    let reloaded = Instant::now();
    // The proxy reads its file every 2 s: the first scenario after that sees the new threshold.
    tokio::time::sleep(Duration::from_secs(3)).await;
    support::run_scenario(&address, server.port, 512 * 1024, Expect::Inline);
    println!("threshold change picked up within {:?}", reloaded.elapsed());
    controller.abort();
}

async fn wait_for_config(api: &Api<ConfigMap>, check: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let found = api.get_opt("billing-claimcheck-proxy").await.unwrap();
        let yaml = found
            .and_then(|c| c.data)
            .and_then(|d| d.get("proxy.yaml").cloned());
        if let Some(yaml) = yaml.filter(|y| check(y)) {
            return yaml;
        }
        assert!(
            started.elapsed() < WAIT,
            "the rendered configuration did not come"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The sidecar of a stored pod, laid out under a local root as the kubelet would mount it.
struct Sidecar {
    root: std::path::PathBuf,
    config_dir: std::path::PathBuf,
    args: Vec<String>,
    env: BTreeMap<String, String>,
}

impl Sidecar {
    fn materialise(pod: &Pod, rendered: &str, secret_env: &BTreeMap<String, String>, root: &Path) -> Sidecar {
        let spec = pod.spec.as_ref().unwrap();
        let container = spec
            .init_containers
            .iter()
            .flatten()
            .find(|c| c.name == SIDECAR)
            .unwrap();
        let mut config_dir = None;
        for mount in container.volume_mounts.iter().flatten() {
            let dir = root.join(mount.mount_path.trim_start_matches('/'));
            std::fs::create_dir_all(&dir).unwrap();
            let volume = spec
                .volumes
                .iter()
                .flatten()
                .find(|v| v.name == mount.name)
                .unwrap();
            if volume.config_map.is_some() {
                std::fs::write(dir.join("proxy.yaml"), rendered).unwrap();
                config_dir = Some(dir);
            } else if volume.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some("store-creds") {
                for (key, value) in secret_env {
                    std::fs::write(dir.join(key), value).unwrap();
                }
            }
        }
        let args = container
            .args
            .iter()
            .flatten()
            .map(|a| {
                if a.starts_with('/') {
                    root.join(a.trim_start_matches('/')).display().to_string()
                } else {
                    a.clone()
                }
            })
            .collect();
        let env = container
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect();
        Sidecar {
            root: root.to_owned(),
            config_dir: config_dir.expect("the ConfigMap is mounted"),
            args,
            env,
        }
    }

    fn start(&self) -> support::Process {
        let process = support::spawn_with_env(env!("CARGO_BIN_EXE_claimcheck"), &self.args, &self.env);
        let _ = &self.root;
        process
    }

    /// Where the app container was told to find Temporal.
    fn worker_address(&self, pod: &Pod) -> String {
        let worker = pod
            .spec
            .as_ref()
            .unwrap()
            .containers
            .iter()
            .find(|c| c.name == "worker")
            .unwrap();
        let env = worker
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "TEMPORAL_ADDRESS")
            .unwrap();
        let address = env.value.clone().unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(
                started.elapsed() < WAIT,
                "the sidecar did not listen on {address}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        address
    }

    /// What the kubelet does when a ConfigMap changes: a new file swapped in atomically.
    fn remount_config(&self, rendered: &str) {
        let next = self.config_dir.join(".proxy.yaml.next");
        std::fs::write(&next, rendered).unwrap();
        std::fs::rename(next, self.config_dir.join("proxy.yaml")).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn admissions_keep_succeeding_across_certificate_renewals() {
    let cluster = Cluster::up("kube");
    let server = DevServer::start().await;
    let client = cluster.kube().await;
    install(&client).await;
    let lifetime = Duration::from_secs(6);
    let (_webhook, telemetry) = start_webhook(&client, lifetime).await;
    let policies: Api<PayloadStoragePolicy> = Api::namespaced(client.clone(), "default");
    policies
        .create(&PostParams::default(), &policy(&server, "s3://payloads/"))
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let serving = |s: Secret| s.data.unwrap()["tls.crt"].0.clone();
    let first = serving(secrets.get(TLS_SECRET).await.unwrap());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };

    // Two lifetimes of admissions: at least one renewal, none refused.
    let started = Instant::now();
    let mut admitted = 0;
    while started.elapsed() < lifetime * 2 {
        let pod = pod(&format!("worker-{admitted}"), "default", Some("billing"));
        let created = pods
            .create(&dry_run, &pod)
            .await
            .expect("admitted across renewals");
        assert_eq!(containers(&created), [SIDECAR, "worker"]);
        admitted += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last = serving(secrets.get(TLS_SECRET).await.unwrap());
    assert_ne!(first, last, "the serving certificate was renewed");
    println!("{admitted} admissions across a renewal, none refused");

    // Latency of 1,000 admissions through the API server, with and without the webhook.
    let latencies = |labelled: bool| {
        let pods = pods.clone();
        let dry_run = dry_run.clone();
        async move {
            let mut samples = Vec::with_capacity(1000);
            for i in 0..1000 {
                let pod = pod(&format!("timed-{i}"), "default", labelled.then_some("billing"));
                let started = Instant::now();
                pods.create(&dry_run, &pod).await.unwrap();
                samples.push(started.elapsed());
            }
            samples.sort();
            (samples[499], samples[989])
        }
    };
    let (plain_p50, plain_p99) = latencies(false).await;
    let (injected_p50, injected_p99) = latencies(true).await;
    println!(
        "1000 pod admissions via the API server: p50 {injected_p50:?} / p99 {injected_p99:?} with the webhook, p50 {plain_p50:?} / p99 {plain_p99:?} without"
    );
    let metrics = telemetry.encode();
    println!(
        "the webhook's own handling of {admitted}+1000 admissions: p50 <= {} s, p99 <= {} s (histogram bucket bounds)",
        bucket_bound(&metrics, 0.5),
        bucket_bound(&metrics, 0.99)
    );
}

/// The upper bound of the admission-latency bucket that holds quantile `q`.
fn bucket_bound(metrics: &str, q: f64) -> String {
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

#[tokio::test(flavor = "multi_thread")]
async fn with_the_webhook_stopped_labelled_pods_are_refused_and_others_created() {
    let cluster = Cluster::up("kube");
    let server = DevServer::start().await;
    let client = cluster.kube().await;
    install(&client).await;
    let (webhook, _) = start_webhook(&client, Duration::from_secs(3600)).await;
    let policies: Api<PayloadStoragePolicy> = Api::namespaced(client.clone(), "default");
    policies
        .create(&PostParams::default(), &policy(&server, "s3://payloads/"))
        .await
        .unwrap();
    webhook.abort();
    let _ = webhook.await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let refused = pods
        .create(&PostParams::default(), &pod("worker", "default", Some("billing")))
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("failed calling webhook"),
        "{refused}"
    );
    let plain = pods
        .create(&PostParams::default(), &pod("plain", "default", None))
        .await
        .unwrap();
    assert_eq!(containers(&plain), ["worker"]);
}
