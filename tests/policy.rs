//! The PayloadStoragePolicy resource against the real API server, and `claimcheck probe`.

mod support;

use std::process::Command;
use std::time::Duration;

use claimcheck::policy::PayloadStoragePolicy;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use support::cluster::{Cluster, Store};

const CRD_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crds/payloadstoragepolicies.claimcheck.dev.yaml"
);

#[test]
fn the_crd_in_the_repository_is_generated_from_the_types() {
    let generated = claimcheck::yaml::to_string(&claimcheck::policy::crd()).unwrap();
    let committed = std::fs::read_to_string(CRD_FILE).unwrap();
    assert!(
        committed == generated,
        "crds/ drifted from the Rust types: run `make crds`"
    );
}

/// A policy names its Secrets by name alone: they can only be its own namespace's.
#[test]
fn secret_references_carry_no_namespace() {
    let crd = serde_json::to_value(claimcheck::policy::crd()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    let secret_ref = &spec["drivers"]["items"]["properties"]["credentialsSecretRef"]["properties"];
    let fields: Vec<&String> = secret_ref.as_object().unwrap().keys().collect();
    assert_eq!(fields, ["name"]);
    let tls = &spec["temporal"]["properties"]["tls"]["properties"];
    assert!(tls.get("secretNamespace").is_none() && tls.get("namespace").is_none());
}

fn policy(spec: serde_json::Value) -> PayloadStoragePolicy {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "claimcheck.dev/v1alpha1", "kind": "PayloadStoragePolicy",
        "metadata": {"name": "p", "namespace": "default"}, "spec": spec
    }))
    .expect("a policy")
}

fn valid_spec() -> serde_json::Value {
    serde_json::json!({
        "temporal": {"address": "temporal-frontend.temporal:7233", "namespace": "billing"},
        "drivers": [{"name": "hot", "url": "s3://payloads/billing/"}],
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_policies_are_refused_by_the_api_server_naming_the_field() {
    let cluster = Cluster::up("kube");
    let client = cluster.kube().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &claimcheck::policy::crd())
        .await
        .expect("the CRD is accepted");
    let established = await_condition(
        crds,
        "payloadstoragepolicies.claimcheck.dev",
        conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(30), established)
        .await
        .expect("in time")
        .expect("watch");
    let policies: Api<PayloadStoragePolicy> = Api::namespaced(client, "default");

    let with = |path: &[&str], value: serde_json::Value| {
        let mut spec = valid_spec();
        let (last, parents) = path.split_last().unwrap();
        let mut at = &mut spec;
        for key in parents {
            at = &mut at[*key];
        }
        at[*last] = value;
        spec
    };
    let cases = [
        (
            with(&["thresholdBytes"], (-1).into()),
            "spec.thresholdBytes",
            "thresholdBytes must not be negative",
        ),
        (
            with(&["drivers"], serde_json::json!([])),
            "spec.drivers",
            "at least one driver is required",
        ),
        (
            with(
                &["drivers"],
                serde_json::json!([{"name": "a", "url": "s3://x/"}, {"name": "a", "url": "gs://y/"}]),
            ),
            "spec.drivers",
            "driver names must be unique",
        ),
        (
            with(
                &["drivers"],
                serde_json::json!([{"name": "a", "url": "ftp://x/"}]),
            ),
            "spec.drivers[0].url",
            "url must start with",
        ),
        (
            with(&["lifecycle"], serde_json::json!({"grace": "1 day"})),
            "spec.lifecycle.grace",
            "grace must be a duration",
        ),
        (
            with(&["lifecycle"], serde_json::json!({"retention": "forever"})),
            "spec.lifecycle.retention",
            "retention must be auto",
        ),
        (
            with(
                &["sidecar"],
                serde_json::json!({"resources": {"memoryLimit": "lots"}}),
            ),
            "spec.sidecar.resources.memoryLimit",
            "must be a quantity such as 512Mi",
        ),
        (
            with(&["sidecar"], serde_json::json!({"port": 0})),
            "spec.sidecar.port",
            "sidecar.port must be between 1 and 65535",
        ),
        (
            with(&["probe"], serde_json::json!({"largeBytes": 0})),
            "spec.probe.largeBytes",
            "largeBytes must be positive",
        ),
        (
            with(&["codec"], serde_json::json!({"tlsSecretName": "tls"})),
            "spec.codec",
            "codec needs tokensSecretName or oidc",
        ),
        (
            with(
                &["codec"],
                serde_json::json!({"tlsSecretName": "tls", "tokensSecretName": "t", "allowedOrigins": ["*"]}),
            ),
            "spec.codec.allowedOrigins",
            "must be exact origins",
        ),
        (
            with(
                &["codec"],
                serde_json::json!({"tlsSecretName": "tls", "oidc": {"jwksUrl": "http://idp/keys", "audience": "a"}}),
            ),
            "spec.codec.oidc.jwksUrl",
            "jwksUrl must be https://",
        ),
        (
            {
                let mut spec = with(
                    &["drivers"],
                    serde_json::json!([{"name": "local", "url": "file:///data"}]),
                );
                spec["codec"] = serde_json::json!({"tlsSecretName": "tls", "tokensSecretName": "t"});
                spec
            },
            "spec",
            "codec cannot serve a file:// driver",
        ),
        (
            with(
                &["drivers"],
                serde_json::json!([{"name": "hot", "url": "s3://b/", "options": {"AWS_SECRET_ACCESS_KEY": "x"}}]),
            ),
            "spec.drivers[0].options",
            "options must not hold credentials",
        ),
    ];
    for (spec, field, message) in cases {
        let err = policies
            .create(&PostParams::default(), &policy(spec))
            .await
            .expect_err(message)
            .to_string();
        assert!(
            err.contains(field) && err.contains(message),
            "expected {field}: {message}, got {err}"
        );
    }
    let created = policies
        .create(&PostParams::default(), &policy(valid_spec()))
        .await
        .expect("a valid policy");
    assert_eq!(created.spec.threshold_bytes, 262_144, "defaults are applied");
    assert_eq!(created.spec.lifecycle.retention, "auto");
}

fn write_policy(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let path = dir.join("policy.yaml");
    let yaml = format!(
        "apiVersion: claimcheck.dev/v1alpha1\nkind: PayloadStoragePolicy\nmetadata: {{name: p}}\nspec:\n  \
         temporal: {{address: 'localhost:7233', namespace: billing}}\n  drivers: [{{name: hot, url: '{url}'}}]\n  \
         probe: {{largeBytes: 3145728}}\n"
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

fn probe(
    policy: &std::path::Path,
    env: &std::collections::BTreeMap<String, String>,
) -> (bool, serde_json::Value) {
    let bin = env!("CARGO_BIN_EXE_claimcheck");
    let out = Command::new(bin)
        .args(["probe", "--json", "-f"])
        .arg(policy)
        .envs(env)
        .output()
        .expect("runs");
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.success(), json)
}

#[test]
fn probe_passes_on_a_good_policy_and_fails_on_a_broken_one() {
    let cluster = Cluster::up("s3");
    let dir = tempfile::tempdir().unwrap();

    let good = write_policy(dir.path(), &cluster.url(Store::S3, "probe/"));
    let (passed, json) = probe(&good, &cluster.user_env(Store::S3));
    let report = &json;
    assert!(passed, "{json:#}");
    assert_eq!(report["status"], "passed");
    assert_eq!(report["driver"], "aws.s3driver");
    assert_eq!(report["small_payload"]["offloaded"], false);
    assert_eq!(report["large_payload"]["offloaded"], true);
    assert_eq!(report["large_payload"]["verified"], true);
    let key = report["large_payload"]["reference"].as_str().unwrap();
    assert!(key.starts_with("probe/v0/ns/billing/d/sha256/"), "{key}");
    assert!(
        report["large_payload"]["bytes"].as_u64().unwrap() >= 3_145_728,
        "{report}"
    );
    assert_eq!(report["large_payload"]["sha256"].as_str().unwrap().len(), 64);
    assert!(report["latencies"]["write_ms"].as_f64().unwrap() > 0.0);

    let mut wrong = cluster.user_env(Store::S3);
    wrong.insert("AWS_SECRET_ACCESS_KEY".into(), "not-the-secret".into());
    let (passed, json) = probe(&good, &wrong);
    assert!(!passed, "{json:#}");
    assert_eq!(json["status"], "failed");
    let reason = json["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("s3://{}/probe/v0/ns/billing/", cluster.var("S3_BUCKET"))),
        "{reason}"
    );
    assert!(!reason.contains("not-the-secret"), "{reason}");
}

#[test]
fn the_crd_and_the_manifests_install_with_kubectl() {
    let cluster = Cluster::up("kube");
    let root = env!("CARGO_MANIFEST_DIR");
    for path in ["crds", "deploy"] {
        let out = Command::new(cluster.var("KUBECTL"))
            .args([
                "--kubeconfig",
                cluster.var("KUBECONFIG"),
                "apply",
                "--server-side",
            ])
            .args(["-f", &format!("{root}/{path}")])
            .output()
            .expect("kubectl runs");
        assert!(
            out.status.success(),
            "kubectl apply -f {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
