//! Serving the webhook: keep the certificate (issue, renew, reload), keep the
//! configuration's `caBundle`, keep a cache of the policies, and answer AdmissionReviews
//! over HTTPS on every replica.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::Admission;
use super::certs::{CertSource, Certificates, ServingCert};
use super::configuration::{CONFIGURATION, ClientConfig, PATH, mutating_webhook_configuration};
use crate::controller::Telemetry;
use crate::inject::Defaults;
use crate::policy::PayloadStoragePolicy;

/// An AdmissionReview of a pod is well under the API server's 3 MiB request limit.
const MAX_REVIEW_BYTES: usize = 4 << 20;
/// The API server sends a review at once and waits at most its webhook timeout (5 s):
/// a client slower than this is not the API server.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 512;
/// After SIGTERM the replica reports not ready and serves this long, so that the Service
/// stops sending it admissions before it stops answering them.
const DRAIN: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct WebhookOptions {
    pub client_config: ClientConfig,
    pub certs: CertSource,
    /// Whether this replica writes the MutatingWebhookConfiguration (and its caBundle);
    /// off when it comes with the chart and cert-manager injects the CA.
    pub manage_configuration: bool,
    pub operator_namespace: String,
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
    let _keeper = Owned(tokio::spawn(keep_certificate(
        client.clone(),
        options.clone(),
        serving.clone(),
    )));
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
    // Only now is the API server told to call: the cache is warm, the certificate loaded.
    if let Some(certs) = &managed {
        apply_configuration(&client, &options, certs).await?;
    }
    telemetry.set_webhook_ready();
    let mut tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(serving);
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    tracing::info!(address = %listener.local_addr()?, "webhook listening");
    let _server = Owned(tokio::spawn(accept(
        listener,
        TlsAcceptor::from(Arc::new(tls)),
        admission,
    )));
    crate::shutdown::signal().await;
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

async fn accept(listener: TcpListener, acceptor: TlsAcceptor, admission: Arc<Admission>) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::warn!(error = %e, "webhook cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().acquire_owned().await else {
            return;
        };
        let (acceptor, admission) = (acceptor.clone(), admission.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let Ok(Ok(tls)) = tokio::time::timeout(CLIENT_TIMEOUT, acceptor.accept(tcp)).await else {
                return;
            };
            let service = hyper::service::service_fn(move |request| answer(admission.clone(), request));
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(CLIENT_TIMEOUT)
                .serve_connection(TokioIo::new(tls), service);
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "webhook connection closed");
            }
        });
    }
}

async fn answer(
    admission: Arc<Admission>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, body: Vec<u8>| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
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
    let review = match serde_json::from_slice(&body) {
        Ok(review) => review,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                format!("not an AdmissionReview: {e}").into_bytes(),
            );
        }
    };
    match serde_json::to_vec(&admission.review(review)) {
        Ok(json) => reply(StatusCode::OK, json),
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string().into_bytes()),
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
async fn keep_certificate(client: Client, options: WebhookOptions, serving: Arc<ServingCert>) {
    let every = match &options.certs {
        CertSource::Managed { lifetime, .. } => {
            (*lifetime / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
        }
        CertSource::Files(_) => Duration::from_secs(10),
    };
    let mut served = None;
    loop {
        tokio::time::sleep(every).await;
        let loaded = match &options.certs {
            CertSource::Files(dir) => read_files(dir).map_err(|e| e.to_string()),
            CertSource::Managed { .. } => match sync_secret(&client, &options).await {
                Ok(certs) => {
                    if let Err(e) = apply_configuration(&client, &options, &certs).await {
                        tracing::warn!(error = %e, "cannot write the webhook's caBundle");
                    }
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

async fn apply_configuration(
    client: &Client,
    options: &WebhookOptions,
    certs: &Certificates,
) -> anyhow::Result<()> {
    if !options.manage_configuration {
        return Ok(());
    }
    let configuration = mutating_webhook_configuration(
        &options.client_config,
        Some(&certs.ca_pem),
        &options.operator_namespace,
    );
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    api.patch(
        CONFIGURATION,
        &PatchParams::apply(CONFIGURATION).force(),
        &Patch::Apply(&configuration),
    )
    .await?;
    Ok(())
}
