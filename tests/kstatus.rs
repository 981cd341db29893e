//! What GitOps tools conclude about a policy while the real controller moves it through its
//! states on the real API server: kstatus (the status library of Flux's health checks and
//! Helm 4's `--wait`, built from tests/gitops/kstatus) and Argo CD's health check
//! (deploy/argocd/health.lua, run on Lua 5.1 as Argo CD runs it). Both read the object as
//! the API server returns it. Also: the policy that docs/gitops.md tells teams to commit
//! passes the API server's validation, CEL rules included.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kube::Client;
use serde_json::{Value, json};
use support::cluster::{Cluster, Store};

const WAIT: Duration = Duration::from_secs(60);
const POLICY: &str = "/apis/claimcheck.dev/v1alpha1/namespaces/default/payloadstoragepolicies";

/// One tool's verdict: a status and its message.
#[derive(serde::Deserialize, Debug, Clone, PartialEq, Eq)]
struct Verdict {
    status: String,
    message: String,
}

/// kstatus and Argo CD on the same object.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reading {
    kstatus: Verdict,
    argocd: Verdict,
}

impl Reading {
    fn statuses(&self) -> (String, String) {
        (self.kstatus.status.clone(), self.argocd.status.clone())
    }
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The kstatus command, built once by its script (seconds when cached).
fn kstatus_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo("tests/gitops/kstatus/build.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("build.sh runs");
        assert!(out.status.success(), "tests/gitops/kstatus/build.sh failed");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// Runs `program` with the object as JSON on stdin; its one line of JSON is the verdict.
fn verdict(program: &Path, args: &[PathBuf], object: &Value) -> Verdict {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} (tests/env/debian.sh installs lua5.1): {e}",
                program.display()
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(object.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{} failed: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON verdict")
}

fn read(object: &Value) -> Reading {
    let argocd = [
        repo("tests/gitops/argocd_health.lua"),
        repo("deploy/argocd/health.lua"),
    ];
    Reading {
        kstatus: verdict(kstatus_bin(), &[], object),
        argocd: verdict(Path::new("lua5.1"), &argocd, object),
    }
}

/// A request to the API server, answered with the object as stored: no client-side model
/// in between, so the tools see exactly what a GitOps controller would.
async fn raw(client: &Client, method: &str, path: &str, body: Option<&Value>) -> Value {
    let content_type = match method {
        "PATCH" => "application/merge-patch+json",
        _ => "application/json",
    };
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(body.map(|b| b.to_string().into_bytes()).unwrap_or_default())
        .unwrap();
    client
        .request::<Value>(request)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// Every distinct reading in order, and the step that produced it.
#[derive(Default)]
struct Timeline(Vec<(&'static str, Reading)>);

impl Timeline {
    /// Reads `object` with both tools; a new reading is printed with the object it came from.
    fn record(&mut self, step: &'static str, object: &Value) -> Reading {
        let reading = read(object);
        if self.0.last().is_none_or(|(_, last)| *last != reading) {
            println!("{step}: {reading:?}\n{object}");
            self.0.push((step, reading.clone()));
        }
        reading
    }

    /// Reads the policy until kstatus says `status`, recording what it passes through.
    async fn until(&mut self, client: &Client, step: &'static str, status: &str) -> Reading {
        let started = Instant::now();
        loop {
            let object = raw(client, "GET", &format!("{POLICY}/billing"), None).await;
            let reading = self.record(step, &object);
            if reading.kstatus.status == status {
                println!("{step}: after {:?}", started.elapsed());
                return reading;
            }
            assert!(
                started.elapsed() < WAIT,
                "{step}: kstatus never said {status}; the policy: {object:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The (kstatus, Argo CD) statuses, consecutive repeats folded.
    fn statuses(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (_, reading) in &self.0 {
            if out.last() != Some(&reading.statuses()) {
                out.push(reading.statuses());
            }
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kstatus_and_argocd_follow_the_policy_through_its_states() {
    let cluster = Cluster::up("kube,s3");
    let client = cluster.kube().await;
    support::webhook::install(&client).await;
    let controller = tokio::spawn(claimcheck::controller::run(
        client.clone(),
        "test",
        Default::default(),
    ));
    let url = cluster.url(Store::S3, "billing/");
    let mut policy = serde_json::to_value(support::webhook::policy("127.0.0.1:7233", &url)).unwrap();
    // Probed every 2 s, so a stopped store shows within seconds.
    policy["spec"]["probe"] = json!({"interval": "2s"});
    let driver = policy["spec"]["drivers"][0].clone();
    let mut timeline = Timeline::default();

    // Applied before its Secret, as GitOps may order them. Before the controller has written
    // a status, the CRD's default (observedGeneration 0) keeps both readers waiting.
    let created = raw(&client, "POST", POLICY, Some(&policy)).await;
    let reading = timeline.record("created", &created);
    assert_eq!(
        reading.kstatus.message,
        "PayloadStoragePolicy generation is 1, but latest observed generation is 0"
    );
    let missing = "Secret default/store-creds does not exist";
    let reading = timeline.until(&client, "Secret missing", "InProgress").await;
    assert_eq!(reading.kstatus.message, missing);
    assert_eq!(reading.argocd.message, missing);

    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(client.clone(), "default");
    let secret = support::secret("store-creds", &cluster.user_env(Store::S3));
    secrets.create(&Default::default(), &secret).await.unwrap();
    let reading = timeline.until(&client, "Secret created", "Current").await;
    assert_eq!(reading.kstatus.message, "Resource is Ready");

    // A spec edit: the API server's answer already carries the new generation and the old
    // observedGeneration, before the controller can have seen it.
    let edit = json!({"spec": {"thresholdBytes": 524288}});
    let edited = raw(&client, "PATCH", &format!("{POLICY}/billing"), Some(&edit)).await;
    let reading = timeline.record("spec edited", &edited);
    assert_eq!(
        reading.kstatus.message,
        "PayloadStoragePolicy generation is 2, but latest observed generation is 1"
    );
    assert_eq!(
        reading.argocd.message,
        "Waiting for the claimcheck controller to observe generation 2"
    );
    timeline.until(&client, "edit observed", "Current").await;

    // The store stops: the probe fails. kstatus reads a Ready False that is not Stalled as
    // InProgress (the controller keeps retrying), Argo CD as Degraded; both give the
    // probe's message, which names the object.
    cluster.kill("minio");
    let reading = timeline.until(&client, "store stopped", "InProgress").await;
    let object = format!("s3://{}/billing/", cluster.var("S3_BUCKET"));
    assert!(reading.kstatus.message.contains(&object), "{reading:?}");
    assert_eq!(reading.argocd.message, reading.kstatus.message);
    cluster.restart("minio");
    timeline.until(&client, "store back", "Current").await;

    // A misspelt store option is a spec error only an edit fixes: Stalled, which kstatus
    // reads as Failed and Argo CD as Degraded, with Stalled's message.
    let mut misspelt = driver.clone();
    misspelt["options"] = json!({"endpont": "http://127.0.0.1:1"});
    let typo = json!({"spec": {"drivers": [misspelt]}});
    let patched = raw(&client, "PATCH", &format!("{POLICY}/billing"), Some(&typo)).await;
    timeline.record("option misspelt", &patched);
    let reading = timeline.until(&client, "option misspelt", "Failed").await;
    assert!(
        reading.kstatus.message.contains("unknown option \"endpont\""),
        "{reading:?}"
    );
    assert_eq!(reading.argocd.message, reading.kstatus.message);
    let fixed = json!({"spec": {"drivers": [driver]}});
    let patched = raw(&client, "PATCH", &format!("{POLICY}/billing"), Some(&fixed)).await;
    timeline.record("option fixed", &patched);
    timeline.until(&client, "option fixed", "Current").await;

    let pair = |k: &str, a: &str| (k.to_owned(), a.to_owned());
    assert_eq!(
        timeline.statuses(),
        vec![
            pair("InProgress", "Progressing"), // created, not yet observed
            pair("InProgress", "Degraded"),    // Secret missing
            pair("Current", "Healthy"),        // Secret created
            pair("InProgress", "Progressing"), // spec edited, not yet observed
            pair("Current", "Healthy"),        // edit observed
            pair("InProgress", "Degraded"),    // store stopped: probe failed
            pair("Current", "Healthy"),        // store back
            pair("InProgress", "Progressing"), // option misspelt, not yet observed
            pair("Failed", "Degraded"),        // Stalled
            pair("InProgress", "Progressing"), // fix not yet observed
            pair("Current", "Healthy"),        // fixed
        ],
        "every step: {:#?}",
        timeline.0
    );
    controller.abort();
}

/// The manifests of docs/gitops.md of one kind, from its YAML blocks.
fn documented(kind: &str) -> Vec<Value> {
    let doc = std::fs::read_to_string(repo("docs/gitops.md")).unwrap();
    doc.split("```yaml\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(block, _)| block))
        .flat_map(|block| serde_saphyr::from_multiple::<Value>(block).expect("YAML"))
        .filter(|manifest| manifest["kind"] == kind)
        .collect()
}

/// kubeconform (tests/gitops/check.sh) checks the documented policy against the CRD's
/// schema but not its CEL rules: the API server checks both.
#[tokio::test(flavor = "multi_thread")]
async fn the_documented_policy_passes_the_api_servers_validation() {
    let cluster = Cluster::up("kube");
    let client = cluster.kube().await;
    support::webhook::install(&client).await;
    let policies = documented("PayloadStoragePolicy");
    assert!(!policies.is_empty(), "docs/gitops.md shows a policy");
    for policy in policies {
        let namespace = policy["metadata"]["namespace"].as_str().unwrap_or("default");
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
        // It may exist already (`default`).
        let _ = client
            .request::<Value>(
                http::Request::post("/api/v1/namespaces")
                    .header("content-type", "application/json")
                    .body(ns.to_string().into_bytes())
                    .unwrap(),
            )
            .await;
        let create = |policy: &Value| {
            let path = format!(
                "/apis/claimcheck.dev/v1alpha1/namespaces/{namespace}/payloadstoragepolicies?dryRun=All"
            );
            let request = http::Request::post(path)
                .header("content-type", "application/json")
                .body(policy.to_string().into_bytes())
                .unwrap();
            client.request::<Value>(request)
        };
        create(&policy)
            .await
            .unwrap_or_else(|e| panic!("refused: {e}\n{policy:#}"));
        // The CEL rules run: a URL of no store is refused.
        let mut wrong = policy.clone();
        wrong["spec"]["drivers"][0]["url"] = json!("https://example.com/payloads");
        let refused = create(&wrong).await.expect_err("a URL of no store is refused");
        assert!(
            refused.to_string().contains("url must start with s3://"),
            "{refused}"
        );
    }
}
