//! Serving the webhook: keep the certificate (issue, renew, reload), keep the
//! configuration's `caBundle`, keep a cache of the policies, and answer AdmissionReviews
//! over HTTPS on every replica.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::certs::{CertSource, Certificates};
use super::configuration::PATH;
use super::{Admission, AnswerError};
use crate::controller::Telemetry;
use crate::inject::Defaults;
use crate::policy::PayloadStoragePolicy;
use crate::serve::Bounds;
use crate::tls::ServingCert;

/// An AdmissionReview of a pod is well under the API server's 3 MiB request limit.
const MAX_REVIEW_BYTES: usize = 4 << 20;
/// The API server sends a review at once and waits at most its webhook timeout (5 s):
/// a client slower than this is not the API server.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 512;
/// After SIGTERM the replica reports not ready and serves this long, so that the Service
/// stops sending it admissions before it stops answering them. The endpoint goes as soon as
/// the pod terminates, but the EndpointSlice controller and kube-proxy on a busy node took
/// longer than 5 s once (a review refused, connection refused, in the cluster test).
const DRAIN: Duration = Duration::from_secs(10);
/// How soon a caBundle that could not be written is tried again.
const BUNDLE_RETRY: Duration = Duration::from_secs(2);
/// The field manager of the caBundle.
const BUNDLE_MANAGER: &str = "claimcheck-webhook";

#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// Issued by the operator (which then keeps the configuration's caBundle), or files from
    /// cert-manager (whose CA injector keeps it).
    pub certs: CertSource,
    pub identity: String,
    pub defaults: Defaults,
}

/// Serves the webhook on `listener` until SIGTERM or SIGINT.
pub async fn run(
    client: Client,
    listener: TcpListener,
    options: WebhookOptions,
    telemetry: Arc<Telemetry>,
) -> anyhow::Result<()> {
    let (policies, writer) = reflector::store();
    let watch = watcher(
        Api::<PayloadStoragePolicy>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(writer)
    .applied_objects()
    .for_each(|_| async {});
    let _watch = Owned(tokio::spawn(watch));
    let (serving, managed) = first_certificate(&client, &options).await?;
    let serving = Arc::new(serving);
    policies.wait_until_ready().await?;
    let reporter = Reporter {
        controller: "claimcheck-webhook".to_owned(),
        instance: Some(options.identity.clone()),
    };

    let admission = Arc::new(Admission {
        policies,
        defaults: options.defaults.clone(),
        recorder: Some(Recorder::new(client.clone(), reporter)),
        metrics: telemetry.clone(),
    });
    // Only now is the API server given the CA to call with: the cache is warm, the
    // certificate loaded. A configuration not installed yet is retried by the keeper.
    let mut bundle_kept = true;
    if let (Some(certs), CertSource::Managed { configuration, .. }) = (&managed, &options.certs)
        && let Err(e) = keep_ca_bundle(&client, configuration, certs).await
    {
        tracing::warn!(error = %format!("{e:#}"), "cannot write the webhook's caBundle yet");
        bundle_kept = false;
    }
    let _keeper = Owned(tokio::spawn(keep_certificate(
        client.clone(),
        options.clone(),
        serving.clone(),
        bundle_kept,
    )));
    telemetry.set_webhook_ready();
    let mut tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(serving);
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    tracing::info!(address = %listener.local_addr()?, "webhook listening");
    let bounds = Bounds {
        max_connections: MAX_CONNECTIONS,
        client_timeout: CLIENT_TIMEOUT,
        // The API server keeps connections open across reviews.
        max_connection: Duration::from_secs(3600),
    };
    let draining = Arc::new(AtomicBool::new(false));
    let stopping = draining.clone();
    let _server = Owned(tokio::spawn(crate::serve::accept(
        listener,
        Some(TlsAcceptor::from(Arc::new(tls))),
        bounds,
        "webhook",
        move |request, _| answer(admission.clone(), stopping.clone(), request),
    )));
    crate::shutdown::signal().await;
    draining.store(true, Ordering::Relaxed);
    telemetry.set_webhook_not_ready();
    tokio::time::sleep(DRAIN).await;
    Ok(())
}

/// A task that stops when its owner does (the webhook's run is aborted or returns).
struct Owned(tokio::task::JoinHandle<()>);

impl Drop for Owned {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `draining`: the replica is stopping. Each answer then closes its connection, so that the
/// API server's next review opens a new one, to a replica that stays, rather than reusing
/// this one as the process exits (a POST on a connection closed under it is not retried).
async fn answer(
    admission: Arc<Admission>,
    draining: Arc<AtomicBool>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, body: Vec<u8>| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        if draining.load(Ordering::Relaxed) {
            headers.insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
        }
        Ok(response)
    };
    if request.method() != Method::POST || request.uri().path() != PATH {
        return reply(StatusCode::NOT_FOUND, b"{}".to_vec());
    }
    let body = Limited::new(request.into_body(), MAX_REVIEW_BYTES).collect();
    let body = match tokio::time::timeout(CLIENT_TIMEOUT, body).await {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(e)) => return reply(StatusCode::BAD_REQUEST, e.to_string().into_bytes()),
        Err(_) => {
            return reply(
                StatusCode::REQUEST_TIMEOUT,
                b"the review did not arrive in time".to_vec(),
            );
        }
    };
    match admission.answer(&body) {
        Ok(json) => reply(StatusCode::OK, json),
        Err(e @ AnswerError::NotAReview(_)) => reply(StatusCode::BAD_REQUEST, e.to_string().into_bytes()),
        Err(e @ AnswerError::Encode(_)) => {
            reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string().into_bytes())
        }
    }
}

/// The certificate to serve at start: read (cert-manager's files) or from the Secret,
/// issuing it if this is the first replica ever.
async fn first_certificate(
    client: &Client,
    options: &WebhookOptions,
) -> anyhow::Result<(ServingCert, Option<Certificates>)> {
    match &options.certs {
        CertSource::Files(dir) => {
            let (cert, key) = read_files(dir)?;
            Ok((ServingCert::from_pem(&cert, &key)?, None))
        }
        CertSource::Managed { .. } => {
            let certs = sync_secret(client, options).await?;
            let serving = ServingCert::from_pem(certs.cert_pem.as_bytes(), certs.key_pem.as_bytes())?;
            Ok((serving, Some(certs)))
        }
    }
}

/// Renews and reloads the certificate, and keeps the caBundle, for as long as the webhook runs.
async fn keep_certificate(
    client: Client,
    options: WebhookOptions,
    serving: Arc<ServingCert>,
    mut bundle_kept: bool,
) {
    let every = match &options.certs {
        CertSource::Managed { lifetime, .. } => {
            (*lifetime / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
        }
        CertSource::Files(_) => Duration::from_secs(10),
    };
    let mut served = None;
    loop {
        // Until the caBundle is written, labelled pods are refused: try again soon.
        tokio::time::sleep(if bundle_kept { every } else { BUNDLE_RETRY }).await;
        let loaded = match &options.certs {
            CertSource::Files(dir) => read_files(dir).map_err(|e| e.to_string()),
            CertSource::Managed { configuration, .. } => match sync_secret(&client, &options).await {
                Ok(certs) => {
                    let kept = keep_ca_bundle(&client, configuration, &certs).await;
                    if let Err(e) = &kept {
                        tracing::warn!(error = %format!("{e:#}"), "cannot write the webhook's caBundle");
                    }
                    bundle_kept = kept.is_ok();
                    Ok((certs.cert_pem.into_bytes(), certs.key_pem.into_bytes()))
                }
                Err(e) => Err(e.to_string()),
            },
        };
        match loaded {
            Ok(pair) if served.as_ref() != Some(&pair) => {
                match serving.replace(&pair.0, &pair.1) {
                    Ok(()) => tracing::info!("webhook certificate loaded"),
                    Err(e) => tracing::warn!(error = %e, "cannot load the webhook certificate"),
                }
                served = Some(pair);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot refresh the webhook certificate; serving the current one")
            }
        }
    }
}

fn read_files(dir: &std::path::Path) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    Ok((
        std::fs::read(dir.join("tls.crt"))?,
        std::fs::read(dir.join("tls.key"))?,
    ))
}

/// The certificates in the Secret, issued or renewed first if need be. Replicas race
/// safely: a create or replace that loses (409) reads the winner's.
async fn sync_secret(client: &Client, options: &WebhookOptions) -> anyhow::Result<Certificates> {
    let CertSource::Managed {
        namespace,
        name,
        lifetime,
        dns_names,
        ..
    } = &options.certs
    else {
        anyhow::bail!("the webhook certificate is not managed by claimcheck");
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for _ in 0..3 {
        let existing = api.get_opt(name).await?;
        let current = existing.as_ref().and_then(Certificates::from_secret);
        let next = match &current {
            Some(certs) if !certs.due(*lifetime, dns_names) => return Ok(certs.clone()),
            Some(certs) => certs.renewed(dns_names, *lifetime)?,
            None => Certificates::issue(dns_names, *lifetime)?,
        };
        let mut secret = next.to_secret(namespace, name);
        let written = match existing {
            Some(old) => {
                secret.metadata.resource_version = old.metadata.resource_version;
                api.replace(name, &PostParams::default(), &secret).await
            }
            None => api.create(&PostParams::default(), &secret).await,
        };
        match written {
            Ok(_) => {
                tracing::info!(secret = %format!("{namespace}/{name}"), "webhook certificate issued");
                return Ok(next);
            }
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("Secret {namespace}/{name} kept changing under three attempts")
}

/// Writes the CA into the caBundle of every webhook of the installed configuration: the one
/// field this replica owns (server-side apply, its own field manager). The configuration
/// comes with the chart or deploy/ and goes with them: a replica never creates one, so a
/// replica still running while its release is uninstalled cannot bring it back.
async fn keep_ca_bundle(client: &Client, name: &str, certs: &Certificates) -> anyhow::Result<()> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let Some(installed) = api.get_opt(name).await? else {
        anyhow::bail!(
            "MutatingWebhookConfiguration {name} is not installed (it comes with the chart or deploy/operator.yaml)"
        );
    };
    let webhooks = installed.webhooks.unwrap_or_default();
    let ca = certs.ca_pem.as_bytes();
    if webhooks
        .iter()
        .all(|w| w.client_config.ca_bundle.as_ref().is_some_and(|b| b.0 == ca))
    {
        return Ok(());
    }
    let ca = base64::engine::general_purpose::STANDARD.encode(ca);
    let bundles: Vec<_> = webhooks
        .iter()
        .map(|w| json!({"name": w.name, "clientConfig": {"caBundle": ca}}))
        .collect();
    let patch = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": bundles,
    });
    api.patch(
        name,
        &PatchParams::apply(BUNDLE_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .with_context(|| format!("MutatingWebhookConfiguration {name}"))?;
    Ok(())
}
