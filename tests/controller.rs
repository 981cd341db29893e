//! The controller against the real API server, MinIO and a Temporal dev server.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use claimcheck::config::ProxyConfig;
use claimcheck::controller::CLUSTER_ROLE;
use claimcheck::policy::PayloadStoragePolicy;
use claimcheck::policy::pod::{CONFIG_KEY, config_map_name};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, ResourceExt};
use support::DevServer;
use support::cluster::{Cluster, Store};

const WAIT: Duration = Duration::from_secs(60);

async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &claimcheck::policy::crd())
        .await
        .expect("CRD accepted");
    let established = await_condition(
        crds,
        "payloadstoragepolicies.claimcheck.dev",
        conditions::is_crd_established(),
    );
    tokio::time::timeout(WAIT, established)
        .await
        .expect("in time")
        .expect("watch");
}

/// The servers a controller scenario needs, the CRD installed: the API server and etcd (and
/// the stores named), and a Temporal dev server for `retention: auto`.
async fn servers(groups: &str) -> (Cluster, DevServer, Client) {
    let cluster = Cluster::up(groups);
    let server = DevServer::start().await;
    let client = cluster.kube().await;
    install_crd(&client).await;
    (cluster, server, client)
}

/// A policy in namespace `default` for the dev server's `default` namespace.
fn policy(name: &str, server: &DevServer, spec: serde_json::Value) -> PayloadStoragePolicy {
    let mut spec = spec;
    spec["temporal"] =
        serde_json::json!({"address": format!("127.0.0.1:{}", server.port), "namespace": "default"});
    serde_json::from_value(serde_json::json!({
        "apiVersion": "claimcheck.dev/v1alpha1", "kind": "PayloadStoragePolicy",
        "metadata": {"name": name, "namespace": "default"}, "spec": spec,
    }))
    .expect("a policy")
}

fn secret(env: &BTreeMap<String, String>) -> Secret {
    support::secret("store-creds", env)
}

/// The controller, as replica `test`, until the test aborts it.
fn start_controller(client: &Client) -> tokio::task::JoinHandle<()> {
    tokio::spawn(claimcheck::controller::run(
        client.clone(),
        "test",
        Default::default(),
    ))
}

/// Secret `store-creds` in `default`, holding `env`.
async fn create_credentials(client: &Client, env: &BTreeMap<String, String>) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    secrets
        .create(&PostParams::default(), &secret(env))
        .await
        .unwrap();
}

/// Deletes the policies and waits until their finalizers have let them go.
async fn delete(api: &Api<PayloadStoragePolicy>, names: &[&str]) {
    for name in names {
        api.delete(name, &Default::default()).await.unwrap();
    }
    let gone = async {
        for name in names {
            while api.get_opt(name).await.unwrap().is_some() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    tokio::time::timeout(WAIT, gone)
        .await
        .expect("the policies are deleted");
}

fn condition<'p>(policy: &'p PayloadStoragePolicy, type_: &str) -> Option<&'p claimcheck::policy::Condition> {
    policy
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// Waits until `check` holds for the policy, returning it and how long it took.
async fn until(
    api: &Api<PayloadStoragePolicy>,
    what: &str,
    check: impl Fn(&PayloadStoragePolicy) -> bool,
) -> (PayloadStoragePolicy, Duration) {
    until_named(api, "billing", what, check).await
}

async fn until_named(
    api: &Api<PayloadStoragePolicy>,
    name: &str,
    what: &str,
    check: impl Fn(&PayloadStoragePolicy) -> bool,
) -> (PayloadStoragePolicy, Duration) {
    let started = Instant::now();
    loop {
        let policy = api.get(name).await.expect("the policy exists");
        if check(&policy) {
            return (policy, started.elapsed());
        }
        assert!(
            started.elapsed() < WAIT,
            "{what} not reached; status: {:#?}",
            policy.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ready(policy: &PayloadStoragePolicy, status: &str) -> bool {
    let current = policy.metadata.generation;
    condition(policy, "Ready").is_some_and(|c| c.status == status && c.observed_generation == current)
}

/// A client with exactly the ClusterRole of the chart, nothing more: what the controller runs as.
async fn as_the_chart_allows(cluster: &Cluster, client: &Client) -> Client {
    let role = claimcheck::controller::cluster_role(Some(claimcheck::webhook::CONFIGURATION));
    Api::<ClusterRole>::all(client.clone())
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some("claimcheck-controller".into()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: CLUSTER_ROLE.into(),
        },
        subjects: Some(vec![Subject {
            kind: "User".into(),
            name: "claimcheck-controller".into(),
            ..Subject::default()
        }]),
    };
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    cluster.kube_as("claimcheck-controller").await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_becomes_ready_reports_its_ttl_and_follows_its_store() {
    let (cluster, server, client) = servers("kube,s3").await;
    let controller = start_controller(&as_the_chart_allows(&cluster, &client).await);

    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let good = cluster.user_env(Store::S3);
    secrets
        .create(&PostParams::default(), &secret(&good))
        .await
        .unwrap();
    let policy: PayloadStoragePolicy = policy(
        "billing",
        &server,
        serde_json::json!({
            "drivers": [{"name": "hot", "url": cluster.url(Store::S3, "billing/"), "credentialsSecretRef": {"name": "store-creds"}}],
            "lifecycle": {"maxWorkflowRunTimeout": "14d", "retention": "auto", "grace": "1d", "manage": true},
            "probe": {"interval": "2s", "largeBytes": 3145728},
        }),
    );
    let api: Api<PayloadStoragePolicy> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &policy).await.unwrap();

    let (policy, took) = until(&api, "Ready", |p| ready(p, "True")).await;
    println!("policy applied -> Ready in {took:?}");
    let status = policy.status.clone().unwrap();
    assert_eq!(status.observed_generation, policy.metadata.generation);
    assert_eq!(
        condition(&policy, "StorageVerified").unwrap().reason,
        "ProbePassed"
    );
    let probe = status.last_probe.clone().unwrap();
    assert_eq!(
        (probe.small_payload.offloaded, probe.large_payload.offloaded),
        (false, true)
    );
    assert!(
        probe
            .large_payload
            .reference
            .unwrap()
            .starts_with("billing/v0/ns/default/")
    );
    // The dev server's default namespace keeps histories one day: 14d + 1d + 1d grace, and
    // strictly more than 15 days.
    assert_eq!(
        status.effective_ttl.as_deref(),
        Some("16d"),
        "{:?}",
        status.ttl_derivation
    );
    assert!(
        status
            .ttl_derivation
            .unwrap()
            .contains("1d retention (namespace default)")
    );
    assert_eq!(rule_days(&cluster).await, Some(16));

    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let config_map = config_maps
        .get(&config_map_name("billing"))
        .await
        .expect("the proxy configuration exists");
    assert_eq!(
        config_map.owner_references()[0].uid,
        policy.uid().unwrap(),
        "owned by the policy"
    );
    let rendered = config_map.data.unwrap()[CONFIG_KEY].clone();
    let proxy: ProxyConfig = claimcheck::yaml::from_str(&rendered).unwrap();
    assert_eq!(proxy.threshold_bytes, 262_144);
    assert_eq!(proxy.drivers[0].url, cluster.url(Store::S3, "billing/"));
    assert!(
        proxy.drivers[0].options.is_empty(),
        "credentials never enter the ConfigMap"
    );
    assert_eq!(
        proxy.drivers[0].credentials_dir.as_deref(),
        Some(std::path::Path::new("../credentials/hot")),
        "they are mounted beside it"
    );
    sidecar_passes_the_3_mib_scenario(&rendered, &good, server.port);

    // Wrong credentials: Ready turns False within a probe interval, naming the cause.
    let mut wrong = good.clone();
    wrong.insert("AWS_SECRET_ACCESS_KEY".into(), "not-the-secret".into());
    secrets
        .replace("store-creds", &PostParams::default(), &secret(&wrong))
        .await
        .unwrap();
    let (policy, _) = until(&api, "Ready False", |p| ready(p, "False")).await;
    let reason = probe_failed_on_the_bucket(&policy, &cluster);
    assert!(!reason.contains("not-the-secret"));

    // `claimcheck probe --policy` reads the policy and its Secret from the cluster.
    let report = probe_in_cluster(&cluster, "billing");
    assert_eq!(report["status"], "failed", "{report}");
    assert!(report["reason"].as_str().unwrap().contains("s3://"), "{report}");

    // Fixed without touching the policy: Ready again.
    secrets
        .replace("store-creds", &PostParams::default(), &secret(&good))
        .await
        .unwrap();
    until(&api, "Ready again", |p| ready(p, "True")).await;
    let report = probe_in_cluster(&cluster, "billing");
    assert_eq!(report["status"], "passed", "{report}");
    assert!(
        report["large_payload"]["bytes"].as_u64().unwrap() >= 3_145_728,
        "{report}"
    );
    assert!(report["latencies"]["read_ms"].as_f64().unwrap() > 0.0, "{report}");

    // The store stopped: Ready turns False within a probe interval (2 s) plus the store
    // client's own retries (at most 10 s); started again, Ready comes back.
    cluster.kill("minio");
    // A reconcile whose probe passed just before the kill can fail on the rule first
    // (RuleFailed); the probe that follows it must say the store is down.
    let (policy, took) = until(&api, "Ready False with MinIO stopped (ProbeFailed)", |p| {
        ready(p, "False") && condition(p, "Ready").is_some_and(|c| c.reason == "ProbeFailed")
    })
    .await;
    println!("store stopped -> Ready False in {took:?}");
    assert!(took < Duration::from_secs(12), "{took:?}");
    probe_failed_on_the_bucket(&policy, &cluster);
    cluster.restart("minio");
    until(&api, "Ready after MinIO restarted", |p| ready(p, "True")).await;

    // Events tell the story: verified, failed, verified again.
    let reasons = support::event_reasons(&client, "billing").await;
    assert!(reasons.iter().any(|r| r == "Verified"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "ProbeFailed"), "{reasons:?}");

    // A missing bucket: Ready False naming it; creating the bucket makes the policy Ready.
    let later = policy_on_bucket(&server, "later", "not-yet");
    api.create(&PostParams::default(), &later).await.unwrap();
    let (missing, _) = until_named(&api, "later", "Ready False on a missing bucket", |p| {
        ready(p, "False")
    })
    .await;
    let reason = condition(&missing, "Ready").unwrap();
    assert!(reason.message.contains("s3://not-yet/"), "{}", reason.message);
    cluster.create_bucket("not-yet").await;
    until_named(&api, "later", "Ready once the bucket exists", |p| {
        ready(p, "True")
    })
    .await;
    api.delete("later", &Default::default()).await.unwrap();

    // retention: auto follows the namespace.
    let cli = std::env::var("TEMPORAL_CLI").expect("TEMPORAL_CLI");
    let address = format!("127.0.0.1:{}", server.port);
    let out = std::process::Command::new(cli)
        .args([
            "operator",
            "namespace",
            "update",
            "--address",
            &address,
            "--retention",
            "72h",
            "default",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    until(&api, "TTL of 18d", |p| {
        p.status.as_ref().and_then(|s| s.effective_ttl.as_deref()) == Some("18d")
    })
    .await;
    // ... and so does the bucket's rule.
    assert_eq!(
        rule_days(&cluster).await,
        Some(18),
        "the rule follows the namespace's retention"
    );

    // Deleting the policy passes through the finalizer and leaves the objects.
    delete(&api, &["billing"]).await;
    controller.abort();
}

/// Ready is False because the probe failed, and says on which object; the message.
fn probe_failed_on_the_bucket(policy: &PayloadStoragePolicy, cluster: &Cluster) -> String {
    let ready = condition(policy, "Ready").unwrap();
    assert_eq!(ready.reason, "ProbeFailed");
    let object = format!("s3://{}/billing/", cluster.var("S3_BUCKET"));
    assert!(ready.message.contains(&object), "{}", ready.message);
    ready.message.clone()
}

/// The days of the billing policy's rule on the bucket, read back with the S3 API.
async fn rule_days(cluster: &Cluster) -> Option<i32> {
    let rules =
        claimcheck::lifecycle::S3Rules::new(cluster.var("S3_BUCKET"), &cluster.options(Store::S3)).unwrap();
    rules
        .rules()
        .await
        .unwrap()
        .iter()
        .find(|r| r.id() == Some("claimcheck-default-billing-hot"))
        .and_then(|r| r.expiration()?.days())
}

/// `claimcheck probe --policy NAME --json` against the cluster, as a user would run it.
fn probe_in_cluster(cluster: &Cluster, name: &str) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_claimcheck"))
        .env("KUBECONFIG", cluster.var("KUBECONFIG"))
        .args(["probe", "--json", "--policy", name, "-n", "default"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("JSON; stderr: {}", String::from_utf8_lossy(&out.stderr)));
    let passed = report["status"] == "passed";
    assert_eq!(
        out.status.success(),
        passed,
        "exit code follows the result: {report}"
    );
    report
}

/// A policy on an S3 bucket of MinIO, with the `store-creds` Secret.
fn policy_on_bucket(server: &DevServer, name: &str, bucket: &str) -> PayloadStoragePolicy {
    let url = format!("s3://{bucket}/billing/");
    policy(
        name,
        server,
        serde_json::json!({
            "drivers": [{"name": "hot", "url": url, "credentialsSecretRef": {"name": "store-creds"}}],
            "lifecycle": {"retention": "1d", "manage": false},
            "probe": {"interval": "2s"},
        }),
    )
}

fn managed_policy(name: &str, cluster: &Cluster, server: &DevServer) -> PayloadStoragePolicy {
    managed_policy_on(Store::S3, name, cluster, server)
}

fn managed_policy_on(
    store: Store,
    name: &str,
    cluster: &Cluster,
    server: &DevServer,
) -> PayloadStoragePolicy {
    policy(
        name,
        server,
        serde_json::json!({
            "drivers": [{"name": "hot", "url": cluster.url(store, "billing/"), "credentialsSecretRef": {"name": "store-creds"}}],
            "lifecycle": {"maxWorkflowRunTimeout": "14d", "retention": "2d", "grace": "1d", "manage": true},
            "probe": {"interval": "2s"},
        }),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn managed_s3_rules_sit_beside_existing_rules_and_go_with_the_policy() {
    use claimcheck::lifecycle::{ExpiryRule, S3Rules};
    let (cluster, server, client) = servers("kube,s3").await;
    let controller = start_controller(&client);
    create_credentials(&client, &cluster.user_env(Store::S3)).await;

    // A rule the bucket already had, and an object under the policy's prefix.
    let options = cluster.options(Store::S3);
    let bucket = cluster.var("S3_BUCKET");
    let rules = S3Rules::new(bucket, &options).unwrap();
    let theirs = ExpiryRule {
        id: "keep-me".into(),
        prefix: "other/".into(),
        days: 7,
    };
    rules.apply(&theirs).await.unwrap();
    let objects = cluster.object_store(Store::S3);
    let object = object_store::path::Path::from("billing/v0/ns/default/d/sha256/kept");
    object_store::ObjectStoreExt::put(&objects, &object, bytes::Bytes::from_static(b"payload").into())
        .await
        .unwrap();

    let api: Api<PayloadStoragePolicy> = Api::namespaced(client.clone(), "default");
    api.create(
        &PostParams::default(),
        &managed_policy("billing", &cluster, &server),
    )
    .await
    .unwrap();
    let (policy, _) = until(&api, "Ready", |p| ready(p, "True")).await;
    assert_eq!(
        condition(&policy, "LifecycleConfigured").unwrap().reason,
        "RuleInstalled"
    );
    let summary = |rules: Vec<aws_sdk_s3::types::LifecycleRule>| -> Vec<(String, String, i32)> {
        let mut out: Vec<_> = rules
            .iter()
            .map(|r| {
                let prefix = r.filter().and_then(|f| f.prefix()).unwrap_or_default().to_owned();
                let days = r.expiration().and_then(|e| e.days()).unwrap_or_default();
                (r.id().unwrap_or_default().to_owned(), prefix, days)
            })
            .collect();
        out.sort();
        out
    };
    assert_eq!(
        summary(rules.rules().await.unwrap()),
        vec![
            (
                "claimcheck-default-billing-hot".to_owned(),
                "billing/v0/ns/default/".to_owned(),
                17
            ),
            ("keep-me".to_owned(), "other/".to_owned(), 7),
        ],
        "14d run timeout + 2d retention + 1d grace = 17 days, beside the bucket's own rule"
    );

    // A second policy on the same prefix is reported, not merged.
    api.create(
        &PostParams::default(),
        &managed_policy("billing-copy", &cluster, &server),
    )
    .await
    .unwrap();
    let (copy, _) = until_named(&api, "billing-copy", "conflict reported", |p| ready(p, "False")).await;
    let conflict = condition(&copy, "LifecycleConfigured").unwrap();
    assert!(
        conflict.message.contains("claimcheck-default-billing-hot"),
        "{}",
        conflict.message
    );
    // Deleting the policy removes its rule only; the objects stay.
    delete(&api, &["billing-copy", "billing"]).await;
    assert_eq!(
        summary(rules.rules().await.unwrap()),
        vec![("keep-me".to_owned(), "other/".to_owned(), 7)]
    );
    assert!(
        object_store::ObjectStoreExt::head(&objects, &object)
            .await
            .is_ok(),
        "objects are never deleted"
    );
    controller.abort();
}

/// Policies of one bucket, created and deleted together, each keep their rule while they
/// live and take it with them: S3 has no conditional write of a bucket's rules, so two
/// reconciliations writing back what each read would drop one another's rule.
#[tokio::test(flavor = "multi_thread")]
async fn policies_of_one_bucket_reconciled_together_each_keep_their_rule() {
    use claimcheck::lifecycle::S3Rules;
    let (cluster, server, client) = servers("kube,s3").await;
    let controller = start_controller(&client);
    create_credentials(&client, &cluster.user_env(Store::S3)).await;
    let api: Api<PayloadStoragePolicy> = Api::namespaced(client.clone(), "default");
    let names: Vec<String> = (0..8).map(|i| format!("team-{i}")).collect();
    for name in &names {
        let mut policy = managed_policy(name, &cluster, &server);
        // A Temporal namespace, and so a prefix of the bucket, of its own.
        policy.spec.temporal.namespace = name.clone();
        api.create(&PostParams::default(), &policy).await.unwrap();
    }
    for name in &names {
        until_named(&api, name, "Ready", |p| ready(p, "True")).await;
    }
    let rules = S3Rules::new(cluster.var("S3_BUCKET"), &cluster.options(Store::S3)).unwrap();
    let claimcheck_rules = || async {
        let rules = rules.rules().await.unwrap();
        let ids = rules
            .iter()
            .filter_map(|r| r.id())
            .filter(|id| id.starts_with("claimcheck-"));
        ids.map(str::to_owned).collect::<std::collections::BTreeSet<_>>()
    };
    let expected = names
        .iter()
        .map(|n| format!("claimcheck-default-{n}-hot"))
        .collect();
    assert_eq!(
        claimcheck_rules().await,
        expected,
        "every policy's rule is in place"
    );

    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    delete(&api, &names).await;
    assert!(
        claimcheck_rules().await.is_empty(),
        "every rule went with its policy"
    );
    controller.abort();
}

/// The GCS JSON API's view of the bucket's lifecycle rules: (prefixes, age) of each.
async fn gcs_rules(cluster: &Cluster) -> Vec<(Vec<String>, u64)> {
    let url = format!(
        "{}/storage/v1/b/{}",
        cluster.var("GCS_EMULATOR_URL"),
        cluster.var("GCS_BUCKET")
    );
    let body = reqwest::get(url).await.unwrap().bytes().await.unwrap();
    let bucket: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut rules: Vec<_> = bucket["lifecycle"]["rule"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let prefixes =
                serde_json::from_value(r["condition"]["matchesPrefix"].clone()).unwrap_or_default();
            (prefixes, r["condition"]["age"].as_u64().unwrap_or_default())
        })
        .collect();
    rules.sort();
    rules
}

#[tokio::test(flavor = "multi_thread")]
async fn managed_gcs_rules_sit_beside_existing_rules_and_go_with_the_policy() {
    let (cluster, server, client) = servers("kube,gcs").await;
    let controller = start_controller(&client);
    create_credentials(&client, &cluster.user_env(Store::Gcs)).await;
    // A rule the bucket already had, set with the JSON API.
    let theirs = serde_json::json!({"lifecycle": {"rule": [
        {"action": {"type": "Delete"}, "condition": {"age": 7, "matchesPrefix": ["other/"]}}
    ]}});
    let url = format!(
        "{}/storage/v1/b/{}",
        cluster.var("GCS_EMULATOR_URL"),
        cluster.var("GCS_BUCKET")
    );
    let patched = reqwest::Client::new()
        .patch(url)
        .header("content-type", "application/json")
        .body(theirs.to_string())
        .send()
        .await
        .unwrap();
    assert!(patched.status().is_success());

    let api: Api<PayloadStoragePolicy> = Api::namespaced(client.clone(), "default");
    let policy = managed_policy_on(Store::Gcs, "billing", &cluster, &server);
    api.create(&PostParams::default(), &policy).await.unwrap();
    let (policy, _) = until(&api, "Ready", |p| ready(p, "True")).await;
    assert_eq!(
        condition(&policy, "LifecycleConfigured").unwrap().reason,
        "RuleInstalled"
    );
    let ours = (vec!["billing/v0/ns/default/".to_owned()], 17);
    let other = (vec!["other/".to_owned()], 7);
    assert_eq!(gcs_rules(&cluster).await, vec![ours, other.clone()]);

    delete(&api, &["billing"]).await;
    assert_eq!(gcs_rules(&cluster).await, vec![other], "only our rule went");
    controller.abort();
}

/// Policy `billing` on a file store in `dir`, with `lifecycle` and the default probe interval
/// (5m), once Ready.
async fn ready_on_file_store(
    client: &Client,
    server: &DevServer,
    dir: &std::path::Path,
    lifecycle: serde_json::Value,
) -> (Api<PayloadStoragePolicy>, PayloadStoragePolicy) {
    let driver = serde_json::json!({"name": "local", "url": format!("file://{}", dir.display())});
    let spec = serde_json::json!({"drivers": [driver], "lifecycle": lifecycle});
    let api: Api<PayloadStoragePolicy> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &policy("billing", server, spec))
        .await
        .unwrap();
    let (policy, _) = until(&api, "Ready", |p| ready(p, "True")).await;
    (api, policy)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_store_is_expired_by_the_sidecars_janitor() {
    let (_cluster, server, client) = servers("kube").await;
    let controller = start_controller(&client);
    let store = tempfile::tempdir().unwrap();
    let lifecycle = serde_json::json!({"maxWorkflowRunTimeout": "1d", "retention": "1d", "grace": "12h"});
    let (_, policy) = ready_on_file_store(&client, &server, store.path(), lifecycle).await;
    let lifecycle = condition(&policy, "LifecycleConfigured").unwrap();
    assert_eq!(lifecycle.reason, "RuleInstalled");
    assert!(
        lifecycle.message.contains("after 3 days (the sidecar's janitor)"),
        "{}",
        lifecycle.message
    );
    let config_maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let config_map = config_maps.get(&config_map_name("billing")).await.unwrap();
    let proxy: ProxyConfig = claimcheck::yaml::from_str(&config_map.data.unwrap()[CONFIG_KEY]).unwrap();
    assert_eq!(
        proxy.drivers[0].expire_after_days,
        Some(3),
        "1d + 1d + 12h, rounded up"
    );
    controller.abort();
}

/// The status the controller writes is itself a change of the policy, which its watch sees:
/// that must not probe the store and write the status again, and again. Once Ready, a policy
/// with the default 5m interval is left alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_ready_policy_is_left_alone_until_its_probe_is_due() {
    let (_cluster, server, client) = servers("kube").await;
    let controller = start_controller(&client);
    let store = tempfile::tempdir().unwrap();
    let lifecycle = serde_json::json!({"retention": "1d"});
    let (api, ready_policy) = ready_on_file_store(&client, &server, store.path(), lifecycle).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let later = api.get("billing").await.unwrap();
    assert_eq!(
        later.metadata.resource_version,
        ready_policy.metadata.resource_version,
        "nothing wrote the policy again; probes: {:?} then {:?}",
        ready_policy.status.and_then(|s| s.last_probe).map(|p| p.time),
        later.status.and_then(|s| s.last_probe).map(|p| p.time),
    );
    controller.abort();
}

/// The replicas whose field manager owns part of the policy's status.
fn status_writers(policy: &PayloadStoragePolicy) -> Vec<String> {
    let entries = policy.metadata.managed_fields.iter().flatten();
    let mut writers: Vec<String> = entries
        .filter(|m| m.subresource.as_deref() == Some("status"))
        .filter_map(|m| m.manager.clone())
        .collect();
    writers.sort();
    writers
}

#[tokio::test(flavor = "multi_thread")]
async fn one_replica_leads_and_another_takes_over_within_the_lease() {
    use claimcheck::controller::{Election, run_elected};
    use k8s_openapi::api::coordination::v1::Lease;
    let (_cluster, server, client) = servers("kube").await;
    let lease_duration = Duration::from_secs(4);
    let election = |identity: &str| Election {
        namespace: "default".into(),
        identity: identity.into(),
        lease_duration,
    };
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let holder = || async {
        let lease = leases.get_opt("claimcheck-controller").await.unwrap();
        lease.and_then(|l| l.spec?.holder_identity)
    };
    let a = tokio::spawn(run_elected(
        client.clone(),
        election("replica-a"),
        Default::default(),
    ));
    let started = Instant::now();
    while holder().await.as_deref() != Some("replica-a") {
        assert!(started.elapsed() < WAIT, "replica-a never took the lease");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = tokio::spawn(run_elected(
        client.clone(),
        election("replica-b"),
        Default::default(),
    ));

    let store = tempfile::tempdir().unwrap();
    let policy: PayloadStoragePolicy = policy(
        "billing",
        &server,
        serde_json::json!({
            "drivers": [{"name": "local", "url": format!("file://{}", store.path().display())}],
            "lifecycle": {"retention": "1d", "manage": false},
        }),
    );
    let api: Api<PayloadStoragePolicy> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &policy).await.unwrap();
    let (policy, _) = until(&api, "Ready", |p| ready(p, "True")).await;
    assert_eq!(
        status_writers(&policy),
        vec!["claimcheck-controller-replica-a"],
        "only the leader writes status"
    );

    // The leader dies; a spec change must be reconciled by the other replica.
    a.abort();
    let killed = Instant::now();
    let patch = serde_json::json!({"spec": {"thresholdBytes": 524288}});
    api.patch(
        "billing",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .unwrap();
    let (policy, _) = until(&api, "Ready for the new generation", |p| ready(p, "True")).await;
    let handover = killed.elapsed();
    println!("handover after the leader died: {handover:?} (lease {lease_duration:?})");
    assert_eq!(holder().await.as_deref(), Some("replica-b"));
    // B now writes status; A keeps co-owning the fields B re-applied with the same values
    // (that is how server-side apply records shared ownership), but A is gone.
    assert!(status_writers(&policy).contains(&"claimcheck-controller-replica-b".to_owned()));
    assert!(handover < lease_duration * 2, "handover took {handover:?}");
    b.abort();
}

/// Starts the real proxy from the rendered file, unchanged, with the credential Secret as its
/// environment (as the sidecar gets both), and runs the 3 MiB activity-result scenario of
/// tests/e2e through it with the real Python SDK.
fn sidecar_passes_the_3_mib_scenario(
    rendered: &str,
    secret_env: &BTreeMap<String, String>,
    server_port: u16,
) {
    // Laid out as the sidecar's mounts are: the ConfigMap in proxy/, the driver's Secret
    // in credentials/hot/.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy").join(CONFIG_KEY);
    let credentials = dir.path().join("credentials/hot");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::create_dir_all(&credentials).unwrap();
    std::fs::write(&file, rendered).unwrap();
    for (key, value) in secret_env {
        std::fs::write(credentials.join(key), value).unwrap();
    }
    let bin = env!("CARGO_BIN_EXE_claimcheck");
    let args = ["proxy".to_owned(), "-c".to_owned(), file.display().to_string()];
    let _proxy = support::spawn(bin, &args);
    let sidecar = format!("127.0.0.1:{}", claimcheck::policy::pod::SIDECAR_PORT);
    let started = Instant::now();
    while std::net::TcpStream::connect(&sidecar).is_err() {
        assert!(started.elapsed() < WAIT, "the proxy did not listen on {sidecar}");
        std::thread::sleep(Duration::from_millis(100));
    }
    support::run_scenario(&sidecar, server_port, 3 << 20, support::Expect::Offloaded);
}

/// Polls `get` until it says `done`, for at most 30 s.
async fn eventually<T, F: Future<Output = T>>(
    what: &str,
    get: impl Fn() -> F,
    done: impl Fn(&T) -> bool,
) -> T {
    let started = Instant::now();
    loop {
        let value = get().await;
        if done(&value) {
            return value;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_codec_is_deployed_with_the_policys_stores_and_removed_with_its_spec() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Service;
    let (cluster, server, client) = servers("kube,s3").await;
    let controller = start_controller(&as_the_chart_allows(&cluster, &client).await);
    create_credentials(&client, &cluster.user_env(Store::S3)).await;
    let mut billing = managed_policy("billing", &cluster, &server);
    billing.spec.codec = Some(
        serde_json::from_value(serde_json::json!({
            "tlsSecretName": "codec-tls", "tokensSecretName": "codec-tokens",
            "allowedOrigins": ["https://temporal.example.com"],
        }))
        .unwrap(),
    );
    let api: Api<PayloadStoragePolicy> = Api::namespaced(client.clone(), "default");
    let billing = api.create(&PostParams::default(), &billing).await.unwrap();

    let name = "billing-claimcheck-codec";
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    // The Service is applied last: once it is there, so are the others.
    let service = eventually(
        "the codec Service",
        || async { services.get_opt(name).await.unwrap() },
        Option::is_some,
    )
    .await
    .unwrap();
    assert_eq!(service.spec.unwrap().ports.unwrap()[0].port, 8443);
    let deployment = deployments.get(name).await.unwrap();
    assert_eq!(deployment.owner_references()[0].uid, billing.uid().unwrap());
    let pod = deployment.spec.unwrap().template;
    let metadata = pod.metadata.unwrap();
    let digest = &metadata.annotations.as_ref().unwrap()["claimcheck.dev/config-sha256"];
    assert_eq!(digest.len(), 64, "a changed configuration rolls the codec's pods");
    let labels = metadata.labels.unwrap();
    assert!(
        !labels.contains_key("claimcheck.dev/policy"),
        "the codec's pods must not ask for a sidecar: {labels:?}"
    );
    let pod = pod.spec.unwrap();
    assert_eq!(
        pod.containers[0].args.as_deref().unwrap(),
        ["codec", "--config", "/etc/claimcheck/proxy/proxy.yaml"]
    );
    let secret_names: Vec<String> = pod
        .volumes
        .unwrap()
        .into_iter()
        .filter_map(|v| v.secret?.secret_name)
        .collect();
    assert_eq!(secret_names, ["store-creds", "codec-tls", "codec-tokens"]);

    // The configuration reads as the codec server will read it, mounted beside its Secrets.
    let data = config_maps.get(name).await.unwrap().data.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mounted = dir.path().join("proxy");
    std::fs::create_dir_all(&mounted).unwrap();
    std::fs::write(mounted.join(CONFIG_KEY), &data[CONFIG_KEY]).unwrap();
    std::fs::create_dir_all(dir.path().join("credentials/hot")).unwrap();
    let config = ProxyConfig::load(&mounted.join(CONFIG_KEY)).unwrap();
    config.validate().unwrap();
    let codec = config.codec.unwrap();
    assert_eq!(codec.listen.to_string(), "0.0.0.0:8443");
    assert_eq!(codec.tls.unwrap().cert_file, mounted.join("../codec-tls/tls.crt"));
    assert_eq!(codec.tokens_file.unwrap(), mounted.join("../codec-tokens/tokens"));
    assert_eq!(codec.allowed_origins, ["https://temporal.example.com"]);
    assert_eq!(codec.namespaces, ["default"], "pinned to the policy's namespace");

    // Without `codec`, what it had is deleted; the sidecars' ConfigMap stays. A merge patch, not
    // a replace: the controller may write the status in between (a replace would get 409).
    let without = Patch::Merge(serde_json::json!({"spec": {"codec": null}}));
    api.patch("billing", &PatchParams::default(), &without)
        .await
        .unwrap();
    // The Service is deleted last: once it is gone, so are the others.
    eventually(
        "the codec Service to go",
        || async { services.get_opt(name).await.unwrap() },
        Option::is_none,
    )
    .await;
    assert!(deployments.get_opt(name).await.unwrap().is_none());
    assert!(config_maps.get_opt(name).await.unwrap().is_none());
    assert!(
        config_maps
            .get_opt(&config_map_name("billing"))
            .await
            .unwrap()
            .is_some()
    );

    delete(&api, &["billing"]).await;
    controller.abort();
}
