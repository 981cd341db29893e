//! `claimcheck controller`: one replica of the operator. Every replica serves health,
//! metrics and the sidecar-injection webhook; the holder of the Lease also reconciles.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgAction, Args};

use crate::controller::{Election, Options, Telemetry, run_elected};
use crate::inject::Defaults;
use crate::policy::{SidecarResources, parse_duration};
use crate::webhook::{CertSource, WebhookOptions};

#[derive(Args)]
pub struct ControllerArgs {
    /// The operator's namespace: its Lease, its webhook Secret and Service.
    #[arg(long, env = "POD_NAMESPACE", default_value = "claimcheck-system")]
    namespace: String,
    /// This replica's unique name.
    #[arg(long, env = "POD_NAME")]
    identity: String,
    /// How long a leader's Lease lasts without renewal, in seconds.
    #[arg(long, default_value_t = 15)]
    lease_seconds: u64,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    #[arg(long, default_value = "0.0.0.0:8080")]
    health_listen: SocketAddr,
    /// Serve the sidecar-injection webhook.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    webhook: bool,
    #[arg(long, default_value = "0.0.0.0:8443")]
    webhook_listen: SocketAddr,
    /// The Service (in --namespace, port 443) the API server calls the webhook through.
    #[arg(long, default_value = "claimcheck-webhook")]
    webhook_service: String,
    /// The URL the API server calls instead (a webhook outside the cluster): the
    /// certificate names its host.
    #[arg(long)]
    webhook_url: Option<String>,
    /// The installed MutatingWebhookConfiguration whose caBundle this replica keeps.
    #[arg(long, default_value = crate::webhook::CONFIGURATION)]
    webhook_configuration: String,
    /// The Secret (in --namespace) that holds the webhook's CA and serving certificate.
    #[arg(long, default_value = crate::controller::WEBHOOK_SECRET)]
    webhook_secret: String,
    /// Lifetime of the serving certificate; it is renewed with a third left.
    #[arg(long, default_value = "90d")]
    webhook_cert_lifetime: String,
    /// Read tls.crt and tls.key from this directory (cert-manager) instead of issuing them;
    /// the MutatingWebhookConfiguration is then left to the chart and cert-manager's CA injector.
    #[arg(long)]
    webhook_cert_dir: Option<PathBuf>,
    /// How many policies are reconciled at once: each reconciliation may probe a store with
    /// the policy's large payload.
    #[arg(long, default_value_t = crate::controller::CONCURRENCY)]
    reconcile_concurrency: u16,
    /// The proxy image injected as the sidecar.
    #[arg(long, env = "CLAIMCHECK_SIDECAR_IMAGE")]
    sidecar_image: Option<String>,
    #[command(flatten)]
    sidecar: SidecarDefaults,
    /// Inject a native sidecar (an init container with restartPolicy Always); false injects
    /// a plain container, for clusters with native sidecars turned off.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    native_sidecars: bool,
}

/// The sidecar's defaults, each [`Defaults::default`]'s when not given; a policy's `sidecar`
/// settings and a pod's annotations win. An empty resource value sets none.
#[derive(Args)]
struct SidecarDefaults {
    #[arg(long)]
    sidecar_pull_policy: Option<String>,
    #[arg(long)]
    sidecar_log_level: Option<String>,
    #[arg(long)]
    sidecar_cpu_request: Option<String>,
    #[arg(long)]
    sidecar_memory_request: Option<String>,
    #[arg(long)]
    sidecar_cpu_limit: Option<String>,
    #[arg(long)]
    sidecar_memory_limit: Option<String>,
}

impl ControllerArgs {
    fn webhook_options(&self) -> anyhow::Result<WebhookOptions> {
        let service = &self.webhook_service;
        let namespace = &self.namespace;
        let certs = match &self.webhook_cert_dir {
            Some(dir) => CertSource::Files(dir.clone()),
            None => CertSource::Managed {
                namespace: namespace.clone(),
                name: self.webhook_secret.clone(),
                lifetime: parse_duration(&self.webhook_cert_lifetime).context("--webhook-cert-lifetime")?,
                dns_names: match &self.webhook_url {
                    Some(url) => vec![host_of(url)],
                    None => vec![
                        service.clone(),
                        format!("{service}.{namespace}"),
                        format!("{service}.{namespace}.svc"),
                        format!("{service}.{namespace}.svc.cluster.local"),
                    ],
                },
                configuration: self.webhook_configuration.clone(),
            },
        };
        Ok(WebhookOptions {
            certs,
            identity: self.identity.clone(),
            defaults: self.sidecar_defaults(),
        })
    }

    fn sidecar_defaults(&self) -> Defaults {
        let given = &self.sidecar;
        let defaults = Defaults::default();
        let quantity = |flag: &Option<String>, default: Option<String>| match flag {
            Some(value) => (!value.is_empty()).then(|| value.clone()),
            None => default,
        };
        Defaults {
            image: self.sidecar_image.clone().unwrap_or(defaults.image),
            image_pull_policy: given
                .sidecar_pull_policy
                .clone()
                .unwrap_or(defaults.image_pull_policy),
            native_sidecars: self.native_sidecars,
            log_level: given.sidecar_log_level.clone().unwrap_or(defaults.log_level),
            resources: SidecarResources {
                cpu_request: quantity(&given.sidecar_cpu_request, defaults.resources.cpu_request),
                memory_request: quantity(&given.sidecar_memory_request, defaults.resources.memory_request),
                cpu_limit: quantity(&given.sidecar_cpu_limit, defaults.resources.cpu_limit),
                memory_limit: quantity(&given.sidecar_memory_limit, defaults.resources.memory_limit),
            },
        }
    }
}

/// The host of `https://host:port/path`.
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host.to_owned(),
        _ => authority.to_owned(),
    }
}

/// Runs the replica until SIGTERM.
pub async fn run(args: ControllerArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    let telemetry = Arc::new(Telemetry::default());
    let health = tokio::net::TcpListener::bind(args.health_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.health_listen))?;
    let health =
        axum::serve(health, telemetry.clone().router()).with_graceful_shutdown(crate::shutdown::signal());
    let health = tokio::spawn(async move { health.await });
    let webhook = match args.webhook {
        true => {
            telemetry.expect_webhook();
            let listener = tokio::net::TcpListener::bind(args.webhook_listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.webhook_listen))?;
            let options = args.webhook_options()?;
            Some(tokio::spawn(crate::webhook::run(
                client.clone(),
                listener,
                options,
                telemetry.clone(),
            )))
        }
        false => None,
    };
    let options = Options {
        telemetry,
        workloads: args.sidecar_defaults(),
        concurrency: args.reconcile_concurrency,
    };
    let election = Election {
        namespace: args.namespace,
        identity: args.identity,
        lease_duration: Duration::from_secs(args.lease_seconds),
    };
    let elected = run_elected(client, election, options);
    let result = match webhook {
        Some(webhook) => tokio::select! {
            result = elected => result.map_err(anyhow::Error::from),
            stopped = webhook => match stopped {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.context("the webhook stopped")),
                Err(e) => Err(anyhow::Error::from(e).context("the webhook panicked")),
            },
        },
        None => elected.await.map_err(anyhow::Error::from),
    };
    health.abort();
    result
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_host_of_a_webhook_url_names_its_certificate() {
        assert_eq!(super::host_of("https://127.0.0.1:8443"), "127.0.0.1");
        assert_eq!(
            super::host_of("https://hooks.example.com/mutate"),
            "hooks.example.com"
        );
    }
}
