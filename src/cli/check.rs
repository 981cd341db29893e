//! `claimcheck check-install`: what `helm test` runs in the cluster. It proves the install
//! the way the API server uses it: the CRD is served, the webhook configuration carries a
//! CA, and every ready replica behind the webhook Service answers an admission over TLS
//! verified by that CA, refusing a pod that names a policy which does not exist.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

use crate::policy::PayloadStoragePolicy;
use crate::policy::pod::POLICY_LABEL;

#[derive(Args)]
pub struct CheckArgs {
    /// The operator's namespace.
    #[arg(long, env = "POD_NAMESPACE", default_value = "claimcheck-system")]
    namespace: String,
    /// The webhook's Service.
    #[arg(long, default_value = "claimcheck-webhook")]
    webhook_service: String,
    /// The MutatingWebhookConfiguration.
    #[arg(long, default_value = crate::webhook::CONFIGURATION)]
    webhook_configuration: String,
}

/// A policy name no one uses: the webhook must refuse a pod that names it.
const ABSENT_POLICY: &str = "claimcheck-check-install-absent";

pub async fn run(args: CheckArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    Api::<PayloadStoragePolicy>::all(client.clone())
        .list(&ListParams::default().limit(1))
        .await
        .context("the PayloadStoragePolicy API is not served: is the CRD installed?")?;
    println!("ok: PayloadStoragePolicy is served");
    let ca = ca_bundle(&client, &args.webhook_configuration).await?;
    println!(
        "ok: MutatingWebhookConfiguration {} carries a CA",
        args.webhook_configuration
    );
    let replicas = replicas(&client, &args.namespace, &args.webhook_service).await?;
    let host = format!("{}.{}.svc", args.webhook_service, args.namespace);
    for address in &replicas {
        refuses_an_absent_policy(&ca, &host, *address).await?;
        println!("ok: the webhook at {address} answers over TLS as {host} and refuses an unknown policy");
    }
    Ok(())
}

async fn ca_bundle(client: &kube::Client, name: &str) -> anyhow::Result<Vec<u8>> {
    let configuration = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .get(name)
        .await
        .with_context(|| format!("MutatingWebhookConfiguration {name}"))?;
    configuration
        .webhooks
        .unwrap_or_default()
        .into_iter()
        .find_map(|w| w.client_config.ca_bundle)
        .map(|bundle| bundle.0)
        .with_context(|| format!("MutatingWebhookConfiguration {name} has no caBundle yet"))
}

/// The ready addresses behind the Service: each replica is checked, not one by chance.
async fn replicas(client: &kube::Client, namespace: &str, service: &str) -> anyhow::Result<Vec<SocketAddr>> {
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await?;
    let mut addresses = Vec::new();
    for slice in slices {
        let port = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some("webhook"))
            .and_then(|p| p.port);
        let Some(port) = port.and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        if slice.address_type == "FQDN" {
            continue;
        }
        for endpoint in slice.endpoints {
            // An unset `ready` means ready (discovery.k8s.io/v1).
            if endpoint.conditions.and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for ip in endpoint.addresses {
                let ip: IpAddr = ip.parse().with_context(|| format!("endpoint address {ip}"))?;
                addresses.push(SocketAddr::new(ip, port));
            }
        }
    }
    if addresses.is_empty() {
        bail!("no ready replica behind Service {namespace}/{service}");
    }
    Ok(addresses)
}

async fn refuses_an_absent_policy(ca: &[u8], host: &str, address: SocketAddr) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca)?])
        .resolve(host, address)
        .timeout(Duration::from_secs(10))
        .build()?;
    let body = http
        .post(format!("https://{host}:{}/mutate", address.port()))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&review())?)
        .send()
        .await
        .with_context(|| format!("the webhook at {address}"))?
        .error_for_status()?
        .bytes()
        .await?;
    let answer: Value = serde_json::from_slice(&body)?;
    let response = &answer["response"];
    let message = response["status"]["message"].as_str().unwrap_or_default();
    if response["allowed"] != false || !message.contains(ABSENT_POLICY) {
        bail!("the webhook at {address} did not refuse a pod naming an unknown policy: {response}");
    }
    Ok(())
}

/// The review the API server would send for a labelled pod created in `default`.
fn review() -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "00000000-0000-0000-0000-000000000000",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE",
            "namespace": "default",
            "userInfo": {"username": "claimcheck-check-install"},
            "dryRun": true,
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "check-install", "namespace": "default",
                             "labels": {POLICY_LABEL: ABSENT_POLICY}},
                "spec": {"containers": [{"name": "worker", "image": "worker"}]},
            },
        }
    })
}
