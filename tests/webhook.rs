//! The admission webhook through the real API server, which calls it over TLS to admit
//! pods; with MinIO and a Temporal dev server for the injected sidecar's own run.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use claimcheck::inject::SIDECAR;
use claimcheck::policy::PayloadStoragePolicy;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use support::cluster::{Cluster, Store};
use support::webhook::{
    OPERATOR_NAMESPACE, TLS_SECRET, cluster_with_policy, containers, install, pod, policy, start_webhook,
    webhook_with_policy,
};
use support::{DevServer, Expect, golden};

const WAIT: Duration = Duration::from_secs(60);

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
        .create(&PostParams::default(), &support::secret("store-creds", &env))
        .await
        .unwrap();
    let policies: Api<PayloadStoragePolicy> = Api::namespaced(client.clone(), "default");
    policies
        .create(
            &PostParams::default(),
            &policy(
                &format!("127.0.0.1:{}", server.port),
                &cluster.url(Store::S3, "billing/"),
            ),
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
    wait_for_config(&config_maps, |_| true).await;
    let sidecar = Sidecar::materialise(&stored, &client, root.path()).await;
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
    let metrics = sidecar.metrics_url();
    while !reqwest::get(&metrics)
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .contains("claimcheck_config_reloads_total 1")
    {
        assert!(
            reloaded.elapsed() < WAIT,
            "the proxy did not reload its configuration"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "threshold change picked up {:?} after the file changed",
        reloaded.elapsed()
    );
    support::run_scenario(&address, server.port, 512 * 1024, Expect::Inline);
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
    /// Each mounted ConfigMap and Secret, read from the API server, written at its mount path.
    async fn materialise(pod: &Pod, client: &kube::Client, root: &Path) -> Sidecar {
        let spec = pod.spec.as_ref().unwrap();
        let namespace = pod.metadata.namespace.as_deref().unwrap();
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
            let files: BTreeMap<String, Vec<u8>> = if let Some(source) = &volume.config_map {
                config_dir = Some(dir.clone());
                let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
                let data = api.get(&source.name).await.unwrap().data.unwrap_or_default();
                data.into_iter().map(|(k, v)| (k, v.into_bytes())).collect()
            } else if let Some(source) = &volume.secret {
                let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
                let secret = api.get(source.secret_name.as_deref().unwrap()).await.unwrap();
                secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect()
            } else {
                BTreeMap::new()
            };
            for (key, value) in files {
                std::fs::write(dir.join(key), value).unwrap();
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

    /// The proxy's metrics, on the port of its `--metrics-listen`.
    fn metrics_url(&self) -> String {
        let at = self.args.iter().position(|a| a == "--metrics-listen").unwrap();
        let port = self.args[at + 1].rsplit(':').next().unwrap();
        format!("http://127.0.0.1:{port}/metrics")
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
    let lifetime = Duration::from_secs(6);
    let (_cluster, client, _webhook, _) = webhook_with_policy(lifetime).await;
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
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_webhook_stopped_labelled_pods_are_refused_and_others_created() {
    let (_cluster, client, webhook, _) = webhook_with_policy(Duration::from_secs(3600)).await;
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

/// `claimcheck controller`, the binary: health, metrics and the webhook on one replica; it
/// fills in the caBundle of the installed configuration, and never installs one itself.
#[tokio::test(flavor = "multi_thread")]
async fn the_controller_command_serves_the_webhook_health_and_metrics() {
    use claimcheck::webhook::{CONFIGURATION, ClientConfig, mutating_webhook_configuration};
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    let (cluster, client) = cluster_with_policy().await;
    let (webhook, health) = (support::free_port(), support::free_port());
    let url = format!("https://127.0.0.1:{webhook}");
    let configurations: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let chart_configuration =
        mutating_webhook_configuration(&ClientConfig::Url(url.clone()), None, OPERATOR_NAMESPACE);
    configurations
        .create(&PostParams::default(), &chart_configuration)
        .await
        .unwrap();
    let args: Vec<String> = [
        "controller",
        "--identity",
        "replica-a",
        "--namespace",
        OPERATOR_NAMESPACE,
        // Renewal checks every 2 s: the uninstall below is seen at once.
        "--webhook-cert-lifetime",
        "20s",
        "--webhook-url",
        &url,
        "--webhook-listen",
        &format!("127.0.0.1:{webhook}"),
        "--health-listen",
        &format!("127.0.0.1:{health}"),
    ]
    .map(String::from)
    .into();
    let env = BTreeMap::from([("KUBECONFIG".to_owned(), cluster.var("KUBECONFIG").to_owned())]);
    let _operator = support::spawn_with_env(env!("CARGO_BIN_EXE_claimcheck"), &args, &env);
    let readyz = format!("http://127.0.0.1:{health}/readyz");
    let started = Instant::now();
    while !reqwest::get(&readyz).await.is_ok_and(|r| r.status().is_success()) {
        assert!(started.elapsed() < WAIT, "the replica did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let admitted = pods
        .create(&dry_run, &pod("worker", "default", Some("billing")))
        .await
        .unwrap();
    assert_eq!(containers(&admitted), [SIDECAR, "worker"]);
    let metrics = reqwest::get(format!("http://127.0.0.1:{health}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("claimcheck_controller_admissions_total{allowed=\"true\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("claimcheck_controller_reconciliations_total"),
        "{metrics}"
    );

    // `helm uninstall` deletes the configuration while replicas still run: none brings it
    // back, and labelled pods are created (without a sidecar) again.
    configurations
        .delete(CONFIGURATION, &Default::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(configurations.get_opt(CONFIGURATION).await.unwrap().is_none());
    let created = pods
        .create(&dry_run, &pod("after", "default", Some("billing")))
        .await
        .unwrap();
    assert_eq!(containers(&created), ["worker"]);
}

/// With cert-manager: the webhook serves the certificate files it is given and leaves the
/// MutatingWebhookConfiguration (with its CA) to the chart and cert-manager's CA injector.
#[tokio::test(flavor = "multi_thread")]
async fn certificates_from_files_serve_as_cert_manager_would_give_them() {
    use claimcheck::webhook::{
        CertSource, Certificates, ClientConfig, WebhookOptions, mutating_webhook_configuration,
    };
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    let (_cluster, client) = cluster_with_policy().await;
    // What cert-manager would write into the mounted Secret.
    let issued = Certificates::issue(&["127.0.0.1".to_owned()], Duration::from_secs(3600)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tls.crt"), &issued.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &issued.key_pem).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = ClientConfig::Url(format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    ));
    let options = WebhookOptions {
        certs: CertSource::Files(dir.path().to_owned()),
        identity: "test".into(),
        defaults: claimcheck::inject::Defaults::default(),
    };
    let telemetry = std::sync::Arc::new(claimcheck::controller::Telemetry::default());
    let _webhook = tokio::spawn(claimcheck::webhook::run(
        client.clone(),
        listener,
        options,
        telemetry.clone(),
    ));
    // The chart's configuration, its caBundle injected.
    let configuration = mutating_webhook_configuration(&url, Some(&issued.ca_pem), OPERATOR_NAMESPACE);
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &configuration)
        .await
        .unwrap();
    let started = Instant::now();
    while !telemetry.webhook_ready() {
        assert!(started.elapsed() < WAIT, "the webhook did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    assert!(
        secrets.get_opt(TLS_SECRET).await.unwrap().is_none(),
        "no certificate of its own"
    );
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let admitted = pods
        .create(&PostParams::default(), &pod("worker", "default", Some("billing")))
        .await
        .unwrap();
    assert_eq!(containers(&admitted), [SIDECAR, "worker"]);
}
