//! Injection as a pure function, compared against golden files (`UPDATE_GOLDEN=1`
//! rewrites them); the same decisions reach the API server through the webhook tests.

mod support;

use claimcheck::inject::{Defaults, INJECT, INJECT_ADDRESS, INJECTED, Outcome, SIDECAR, inject};
use claimcheck::policy::PayloadStoragePolicy;
use claimcheck::policy::pod::POLICY_LABEL;
use k8s_openapi::api::core::v1::{Container, ContainerPort, EnvVar, Pod};
use kube::ResourceExt;
use serde_json::json;
use support::golden;
fn policy() -> PayloadStoragePolicy {
    serde_json::from_value(json!({
        "apiVersion": "claimcheck.dev/v1alpha1", "kind": "PayloadStoragePolicy",
        "metadata": {"name": "billing", "namespace": "workers", "generation": 2},
        "spec": {
            "temporal": {"address": "temporal:7233", "namespace": "billing", "tls": {"secretName": "temporal-tls"}},
            "drivers": [
                {"name": "hot", "url": "s3://payloads/", "credentialsSecretRef": {"name": "s3-creds"}},
                {"name": "local", "url": "file:///data/payloads", "minBytes": 1048576},
            ],
        },
    }))
    .unwrap()
}

fn pod(annotations: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"generateName": "worker-", "labels": {POLICY_LABEL: "billing"}, "annotations": annotations},
        "spec": {
            "containers": [{
                "name": "worker", "image": "worker:1",
                "env": [{"name": "TEMPORAL_ADDRESS", "value": "temporal:7233"}],
                "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": true}],
            }],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    }))
    .unwrap()
}

fn injected(pod: &Pod, defaults: &Defaults) -> Pod {
    match inject(pod, &policy(), defaults).unwrap() {
        Outcome::Inject(pod) => *pod,
        Outcome::Skip(why) => panic!("skipped: {why}"),
    }
}

#[test]
fn a_native_sidecar_comes_first_with_its_mounts_and_the_address() {
    let pod = injected(&pod(json!({})), &Defaults::default());
    golden("inject-native.yaml", &pod);
    let spec = pod.spec.as_ref().unwrap();
    let sidecar = &spec.init_containers.as_ref().unwrap()[0];
    assert_eq!(
        (sidecar.name.as_str(), sidecar.restart_policy.as_deref()),
        (SIDECAR, Some("Always"))
    );
    let env = spec.containers[0].env.as_ref().unwrap();
    assert_eq!(
        env[0].value.as_deref(),
        Some("localhost:7233"),
        "the worker dials the sidecar"
    );
    let data = sidecar
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.name == "data")
        .unwrap();
    assert_eq!(
        data.read_only, None,
        "the file store's volume, writable for the proxy"
    );
    assert_eq!(
        pod.annotations()[INJECTED],
        format!(
            "policy=billing,generation=2,claimcheck={}",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn without_native_sidecars_the_proxy_is_the_first_container() {
    let defaults = Defaults {
        native_sidecars: false,
        ..Defaults::default()
    };
    let pod = injected(&pod(json!({})), &defaults);
    golden("inject-plain.yaml", &pod);
    let spec = pod.spec.unwrap();
    assert_eq!(spec.containers[0].name, SIDECAR);
    assert_eq!(spec.containers[0].restart_policy, None);
    assert!(spec.init_containers.is_none());
}

#[test]
fn a_second_pass_changes_nothing() {
    let once = injected(&pod(json!({})), &Defaults::default());
    assert_eq!(injected(&once, &Defaults::default()), once);
}

#[test]
fn every_definition_of_the_address_is_replaced() {
    let mut twice = pod(json!({}));
    let env = twice.spec.as_mut().unwrap().containers[0].env.as_mut().unwrap();
    env.push(EnvVar {
        name: "OTHER".into(),
        value: Some("kept".into()),
        value_from: None,
    });
    env.push(env[0].clone());
    let injected = injected(&twice, &Defaults::default());
    let env = injected.spec.unwrap().containers[0].env.clone().unwrap();
    let names: Vec<_> = env
        .iter()
        .map(|e| (e.name.as_str(), e.value.as_deref()))
        .collect();
    assert_eq!(
        names,
        [
            ("TEMPORAL_ADDRESS", Some("localhost:7233")),
            ("OTHER", Some("kept"))
        ]
    );
}

#[test]
fn annotations_override_port_and_resources_and_opt_out_of_the_address() {
    let annotations = json!({
        claimcheck::inject::settings::PORT: "7300",
        claimcheck::inject::settings::MEMORY_LIMIT: "1Gi",
        INJECT_ADDRESS: "false",
    });
    let pod = injected(&pod(annotations), &Defaults::default());
    let spec = pod.spec.unwrap();
    let sidecar = &spec.init_containers.unwrap()[0];
    assert!(
        sidecar
            .args
            .as_ref()
            .unwrap()
            .contains(&"127.0.0.1:7300".to_owned())
    );
    let limits = sidecar.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(limits["memory"].0, "1Gi");
    let env = spec.containers[0].env.as_ref().unwrap();
    assert_eq!(
        env[0].value.as_deref(),
        Some("temporal:7233"),
        "opted out: left as it was"
    );
}

#[test]
fn refusals_and_skips_say_why() {
    let mut taken = pod(json!({}));
    taken.spec.as_mut().unwrap().containers.push(Container {
        name: SIDECAR.into(),
        ..Container::default()
    });
    let refusal = inject(&taken, &policy(), &Defaults::default()).unwrap_err();
    assert!(refusal.to_string().contains("rename that container"), "{refusal}");

    let bad = inject(
        &pod(json!({claimcheck::inject::settings::CPU_REQUEST: "fast"})),
        &policy(),
        &Defaults::default(),
    )
    .unwrap_err();
    assert!(
        bad.to_string().contains("claimcheck.dev/proxy-cpu-request"),
        "{bad}"
    );

    let mut volume = pod(json!({}));
    volume.spec.as_mut().unwrap().volumes.as_mut().unwrap()[0].name = "claimcheck-config".into();
    let refusal = inject(&volume, &policy(), &Defaults::default()).unwrap_err();
    assert!(refusal.to_string().contains("rename that volume"), "{refusal}");

    let mut port = pod(json!({}));
    port.spec.as_mut().unwrap().containers[0].ports = Some(vec![ContainerPort {
        container_port: 9090,
        ..ContainerPort::default()
    }]);
    let refusal = inject(&port, &policy(), &Defaults::default()).unwrap_err();
    assert!(
        refusal.to_string().contains("claimcheck.dev/proxy-metrics-port"),
        "{refusal}"
    );

    let mut unmounted = pod(json!({}));
    unmounted.spec.as_mut().unwrap().containers[0].volume_mounts = None;
    let refusal = inject(&unmounted, &policy(), &Defaults::default()).unwrap_err();
    assert!(refusal.to_string().contains("/data/payloads"), "{refusal}");

    let skipped = inject(&pod(json!({INJECT: "false"})), &policy(), &Defaults::default()).unwrap();
    assert!(matches!(skipped, Outcome::Skip(why) if why.contains(INJECT)));
}

/// The proxy's port and credentials stay the pod's: a pod that would share them with the node
/// or with its other containers' processes is refused, naming the setting.
#[test]
fn pods_that_would_expose_the_proxy_are_refused() {
    for field in ["hostNetwork", "hostPID", "shareProcessNamespace"] {
        let mut pod = serde_json::to_value(pod(json!({}))).unwrap();
        pod["spec"][field] = json!(true);
        let pod: Pod = serde_json::from_value(pod).unwrap();
        let refusal = inject(&pod, &policy(), &Defaults::default())
            .unwrap_err()
            .to_string();
        assert!(
            refusal.starts_with(&format!("the pod sets {field}: ")),
            "{refusal}"
        );
    }
}

/// A pod's own Localhost seccomp profile is stricter than RuntimeDefault: the sidecar keeps it.
#[test]
fn the_sidecar_keeps_a_localhost_seccomp_profile_of_the_pod() {
    let mut pod = serde_json::to_value(pod(json!({}))).unwrap();
    let profile = json!({"type": "Localhost", "localhostProfile": "profiles/strict.json"});
    pod["spec"]["securityContext"] = json!({"seccompProfile": profile});
    let pod = injected(&serde_json::from_value(pod).unwrap(), &Defaults::default());
    let sidecar = &pod.spec.unwrap().init_containers.unwrap()[0];
    let kept = sidecar
        .security_context
        .as_ref()
        .unwrap()
        .seccomp_profile
        .as_ref()
        .unwrap();
    assert_eq!(
        (kept.type_.as_str(), kept.localhost_profile.as_deref()),
        ("Localhost", Some("profiles/strict.json"))
    );
}
