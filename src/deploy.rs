//! The operator's own installation (deploy/operator.yaml): its namespace, service account
//! and bindings, the Deployment of its replicas and the Service the API server calls the
//! webhook through. Generated, like the CRD and the RBAC, so that they never drift from the
//! code; the MutatingWebhookConfiguration is not here, the operator writes it with its CA.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, Namespace, ObjectFieldSelector, PodSpec, PodTemplateSpec,
    ResourceRequirements, Service, ServiceAccount, ServicePort, ServiceSpec,
};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;
use serde::Serialize;

use crate::controller::{CLUSTER_ROLE, cluster_role, role};
use crate::inject::{Defaults, locked_down, probe};

const NAME: &str = "claimcheck-controller";
const WEBHOOK_SERVICE: &str = "claimcheck-webhook";
const HEALTH_PORT: u16 = 8080;
const WEBHOOK_PORT: u16 = 8443;

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels()),
        ..ObjectMeta::default()
    }
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([("app.kubernetes.io/name".to_owned(), NAME.to_owned())])
}

fn service_account(namespace: &str) -> Vec<Subject> {
    vec![Subject {
        kind: "ServiceAccount".to_owned(),
        name: NAME.to_owned(),
        namespace: Some(namespace.to_owned()),
        ..Subject::default()
    }]
}

fn role_ref(kind: &str) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".to_owned(),
        kind: kind.to_owned(),
        name: CLUSTER_ROLE.to_owned(),
    }
}

fn from_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn deployment(namespace: &str, image: &str) -> Deployment {
    let port = |name: &str, number: u16| ContainerPort {
        name: Some(name.to_owned()),
        container_port: i32::from(number),
        ..ContainerPort::default()
    };
    let quantities = |cpu: &str, memory: &str| {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ])
    };
    let container = Container {
        name: "controller".to_owned(),
        image: Some(image.to_owned()),
        args: Some(vec![
            "controller".to_owned(),
            "--log-format".to_owned(),
            "json".to_owned(),
        ]),
        env: Some(vec![
            from_field("POD_NAME", "metadata.name"),
            from_field("POD_NAMESPACE", "metadata.namespace"),
        ]),
        ports: Some(vec![port("health", HEALTH_PORT), port("webhook", WEBHOOK_PORT)]),
        readiness_probe: Some(probe("/readyz", HEALTH_PORT, 5, 3)),
        liveness_probe: Some(probe("/healthz", HEALTH_PORT, 10, 3)),
        resources: Some(ResourceRequirements {
            requests: Some(quantities("100m", "128Mi")),
            limits: Some(BTreeMap::from([(
                "memory".to_owned(),
                Quantity("512Mi".to_owned()),
            )])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(locked_down()),
        ..Container::default()
    };
    Deployment {
        metadata: meta(NAME, Some(namespace)),
        spec: Some(DeploymentSpec {
            // Every replica serves the webhook, which fails closed: two keep pods admitted
            // through a rollout or a lost node.
            replicas: Some(2),
            selector: LabelSelector {
                match_labels: Some(labels()),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels()),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(NAME.to_owned()),
                    containers: vec![container],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

fn webhook_service(namespace: &str) -> Service {
    Service {
        metadata: meta(WEBHOOK_SERVICE, Some(namespace)),
        spec: Some(ServiceSpec {
            selector: Some(labels()),
            ports: Some(vec![ServicePort {
                name: Some("webhook".to_owned()),
                port: 443,
                target_port: Some(IntOrString::String("webhook".to_owned())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// deploy/operator.yaml for `namespace`, with the default sidecar image as the operator's.
pub fn operator_yaml(namespace: &str) -> Result<String, serde_yaml::Error> {
    let image = Defaults::default().image;
    let mut cluster_role = cluster_role();
    cluster_role.metadata.labels = Some(labels());
    let mut role = role(namespace);
    role.metadata.labels = Some(labels());
    let documents = [
        yaml(&Namespace {
            metadata: meta(namespace, None),
            ..Namespace::default()
        })?,
        yaml(&ServiceAccount {
            metadata: meta(NAME, Some(namespace)),
            ..ServiceAccount::default()
        })?,
        yaml(&cluster_role)?,
        yaml(&ClusterRoleBinding {
            metadata: meta(NAME, None),
            role_ref: role_ref("ClusterRole"),
            subjects: Some(service_account(namespace)),
        })?,
        yaml(&role)?,
        yaml(&RoleBinding {
            metadata: meta(NAME, Some(namespace)),
            role_ref: role_ref("Role"),
            subjects: Some(service_account(namespace)),
        })?,
        yaml(&deployment(namespace, &image))?,
        yaml(&webhook_service(namespace))?,
    ];
    Ok(documents.join("---\n"))
}

/// k8s-openapi writes apiVersion and kind with every resource.
fn yaml(resource: &impl Serialize) -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(resource)
}
