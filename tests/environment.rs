//! Smoke tests of the test environment itself: the real kube-apiserver on etcd, each
//! object-store emulator through object_store, helm and kubectl. Every later test relies
//! on these servers behaving as the real ones do.

mod support;

use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::watcher;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use support::cluster::{Cluster, Store};

const CRD: &str = include_str!("env/smoke/crd.yaml");

#[tokio::test(flavor = "multi_thread")]
async fn the_api_server_serves_a_crd_with_status_cel_rules_and_watches() {
    let cluster = Cluster::up("kube");
    let client = cluster.kube().await;
    let crd: CustomResourceDefinition = claimcheck::yaml::from_str(CRD).expect("smoke CRD parses");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.metadata.name.clone().expect("named");
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("CRD accepted");
    let established = kube::runtime::wait::await_condition(
        crds,
        &name,
        kube::runtime::wait::conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(30), established)
        .await
        .expect("established in time")
        .expect("watch");

    let version = &crd.spec.versions[0].name;
    let gvk = GroupVersionKind::gvk(&crd.spec.group, version, &crd.spec.names.kind);
    let resource = ApiResource::from_gvk_with_plural(&gvk, &crd.spec.names.plural);
    let api: Api<DynamicObject> = Api::namespaced_with(client, "default", &resource);
    let mut changes = watcher(api.clone(), watcher::Config::default()).boxed();

    let good: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": format!("{}/{version}", crd.spec.group), "kind": crd.spec.names.kind,
        "metadata": {"name": "good"}, "spec": {"minBytes": 1, "maxBytes": 2}
    }))
    .unwrap();
    api.create(&PostParams::default(), &good)
        .await
        .expect("a valid object is stored");
    let mut bad = good.clone();
    bad.metadata.name = Some("bad".into());
    bad.data["spec"]["minBytes"] = serde_json::json!(5);
    let refused = api
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("the CEL rule refuses it");
    assert!(
        refused.to_string().contains("minBytes must not exceed maxBytes"),
        "{refused}"
    );

    // Drive the watch through its initial list, so what follows is a change it must see.
    while !matches!(
        changes.try_next().await.expect("watch stream"),
        Some(watcher::Event::InitDone)
    ) {}
    let status = serde_json::json!({"status": {"phase": "Seen"}});
    api.patch_status("good", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status subresource");
    let seen = async {
        while let Some(event) = changes.try_next().await.expect("watch stream") {
            if let watcher::Event::Apply(object) = event
                && object.data["status"]["phase"] == "Seen"
            {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), seen)
        .await
        .expect("the watch sees the status change");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_object_store_emulator_puts_gets_lists_and_deletes() {
    let cluster = Cluster::up("s3,gcs,azure");
    for store in [Store::S3, Store::Gcs, Store::Azure] {
        let objects = cluster.object_store(store);
        let path = Path::from(format!("smoke/{store:?}/object"));
        let body = Bytes::from(vec![7u8; 300 * 1024]);
        objects
            .put(&path, PutPayload::from(body.clone()))
            .await
            .unwrap_or_else(|e| panic!("{store:?} put: {e}"));
        let got = objects.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(got, body, "{store:?} get");
        let listed: Vec<_> = objects
            .list(Some(&Path::from(format!("smoke/{store:?}"))))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(
            listed.iter().map(|m| m.location.clone()).collect::<Vec<_>>(),
            vec![path.clone()],
            "{store:?} list"
        );
        objects
            .delete(&path)
            .await
            .unwrap_or_else(|e| panic!("{store:?} delete: {e}"));
        let gone = objects.get(&path).await.expect_err("deleted");
        assert!(
            matches!(gone, object_store::Error::NotFound { .. }),
            "{store:?}: {gone}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn helm_and_kubectl_answer_against_the_api_server() {
    let cluster = Cluster::up("kube");
    let kubeconfig = cluster.var("KUBECONFIG");
    let run = |program: &str, args: &[&str]| {
        let out = std::process::Command::new(program)
            .args(args)
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let versions = run(
        cluster.var("KUBECTL"),
        &["version", "--kubeconfig", kubeconfig, "-o", "json"],
    );
    let versions: serde_json::Value = serde_json::from_str(&versions).unwrap();
    assert!(
        versions["serverVersion"]["gitVersion"]
            .as_str()
            .unwrap()
            .starts_with("v1.35."),
        "{versions}"
    );
    assert!(run(cluster.var("HELM"), &["version", "--short"]).starts_with("v3."));
    // helm talks to the API server: listing releases reads Secrets through it.
    run(
        cluster.var("HELM"),
        &["list", "--all-namespaces", "--kubeconfig", kubeconfig],
    );
}
