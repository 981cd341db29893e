use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use claimcheck::config::{DriverConfig, ProxyConfig, TlsFiles};
use claimcheck::driver::Driver;
use claimcheck::policy::{PayloadStoragePolicy, PayloadStoragePolicySpec};
use claimcheck::probe::{Probe, ProbeReport};
use claimcheck::run::BoundProxy;
use claimcheck::transform::Tier;
use clap::{Args, Parser, Subcommand};
use kube::CustomResourceExt;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "claimcheck",
    version,
    about = "Keeps large Temporal payloads out of workflow history"
)]
struct Cli {
    /// Log format: `text` or `json`.
    #[arg(long, global = true, default_value = "text", env = "CLAIMCHECK_LOG_FORMAT")]
    log_format: String,
    /// Runtime worker threads; defaults to the number of CPUs. A sidecar usually wants 1-2.
    #[arg(long, global = true, env = "CLAIMCHECK_WORKER_THREADS")]
    worker_threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the payload proxy between Temporal workers and the frontend.
    Proxy(Box<ProxyArgs>),
    /// Run the operator's controller (in the cluster, or against the current kubeconfig);
    /// replicas elect a leader by Lease.
    Controller(ControllerArgs),
    /// Print the PayloadStoragePolicy CustomResourceDefinition (YAML).
    Crd,
    /// Print the ClusterRole the controller needs (YAML).
    Rbac,
    /// Prove a policy's stores with a round trip: a small payload stays inline, a large
    /// one is offloaded, both come back with the same size and SHA-256.
    Probe(ProbeArgs),
}

#[derive(Args)]
struct ControllerArgs {
    /// The operator's namespace, where the Lease lives.
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
}

#[derive(Args)]
struct ProbeArgs {
    /// A PayloadStoragePolicy manifest; no cluster is needed. Credentials come from the
    /// environment, as the store clients read them.
    #[arg(
        long,
        short = 'f',
        required_unless_present = "policy",
        conflicts_with = "policy"
    )]
    file: Option<PathBuf>,
    /// A policy in the cluster (current kubeconfig); credentials come from its Secrets, as
    /// the controller reads them.
    #[arg(long)]
    policy: Option<String>,
    /// The policy's namespace; defaults to the kubeconfig's.
    #[arg(long, short = 'n', requires = "policy")]
    namespace: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Flags override the configuration file.
#[derive(Args)]
struct ProxyArgs {
    /// YAML or JSON configuration file (as rendered by the operator).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Temporal frontend: host:port, http://host:port or https://host:port.
    #[arg(long)]
    upstream: Option<String>,
    /// Store URL (file:///dir, memory://); replaces the file's drivers.
    #[arg(long)]
    store: Option<String>,
    /// Key prefix for --store.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Option of --store, as KEY=VALUE (endpoint, region, ...); repeatable.
    #[arg(long, value_parser = key_value)]
    store_option: Vec<(String, String)>,
    #[arg(long)]
    threshold_bytes: Option<u64>,
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    #[arg(long)]
    max_message_bytes: Option<usize>,
    #[arg(long)]
    client_max_message_bytes: Option<usize>,
    /// CA bundle (PEM) for TLS to the upstream; implies TLS.
    #[arg(long)]
    upstream_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS to the upstream.
    #[arg(long, requires = "upstream_key")]
    upstream_cert: Option<PathBuf>,
    #[arg(long, requires = "upstream_cert")]
    upstream_key: Option<PathBuf>,
    #[arg(long)]
    upstream_server_name: Option<String>,
}

impl ProxyArgs {
    fn into_config(self) -> anyhow::Result<ProxyConfig> {
        let mut config = match &self.config {
            Some(path) => ProxyConfig::load(path)?,
            None => ProxyConfig::default(),
        };
        if let Some(v) = self.listen {
            config.listen = v;
        }
        if let Some(v) = self.upstream {
            config.upstream.address = v;
        }
        if let Some(url) = self.store {
            let options = self.store_option.into_iter().collect();
            config.drivers = vec![DriverConfig {
                url,
                prefix: self.prefix,
                min_bytes: 0,
                options,
                credentials_dir: None,
                expire_after_days: None,
            }];
        }
        if let Some(v) = self.threshold_bytes {
            config.threshold_bytes = v;
        }
        if let Some(v) = self.metrics_listen {
            config.metrics_listen = v;
        }
        if let Some(v) = self.max_message_bytes {
            config.limits.max_message_bytes = v;
        }
        if let Some(v) = self.client_max_message_bytes {
            config.limits.client_max_message_bytes = v;
        }
        let tls_flags = [&self.upstream_ca, &self.upstream_cert, &self.upstream_key]
            .iter()
            .any(|f| f.is_some())
            || self.upstream_server_name.is_some();
        if tls_flags {
            let tls = config.upstream.tls.get_or_insert_with(TlsFiles::default);
            tls.ca_file = self.upstream_ca.or(tls.ca_file.take());
            tls.cert_file = self.upstream_cert.or(tls.cert_file.take());
            tls.key_file = self.upstream_key.or(tls.key_file.take());
            tls.server_name = self.upstream_server_name.or(tls.server_name.take());
        }
        Ok(config)
    }
}

fn key_value(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))?;
    Ok((key.to_owned(), value.to_owned()))
}

fn init_tracing(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Completes on SIGINT or SIGTERM (how Kubernetes stops a sidecar).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => _ = tokio::signal::ctrl_c().await,
    }
    tracing::info!("shutting down: draining calls in flight");
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(&cli.log_format);
    claimcheck::tls::install_crypto_provider();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.worker_threads {
        runtime.worker_threads(threads);
    }
    runtime.enable_all().build()?.block_on(async {
        match cli.command {
            Command::Proxy(args) => {
                let config = args.into_config()?;
                BoundProxy::bind(&config).await?.serve(shutdown_signal()).await
            }
            Command::Controller(args) => controller(args).await,
            Command::Crd => {
                print!("{}", serde_yaml::to_string(&PayloadStoragePolicy::crd())?);
                Ok(())
            }
            Command::Rbac => {
                print!(
                    "{}",
                    serde_yaml::to_string(&claimcheck::controller::cluster_role())?
                );
                Ok(())
            }
            Command::Probe(args) => probe(args).await,
        }
    })
}

/// Runs the replica: health and metrics for every replica, reconciliation for the leader.
async fn controller(args: ControllerArgs) -> anyhow::Result<()> {
    use claimcheck::controller::{Election, Telemetry, run_elected};
    let telemetry = std::sync::Arc::new(Telemetry::default());
    let listener = tokio::net::TcpListener::bind(args.health_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.health_listen))?;
    let health = axum::serve(listener, telemetry.clone().router()).with_graceful_shutdown(shutdown_signal());
    let health = tokio::spawn(async move { health.await });
    let election = Election {
        namespace: args.namespace,
        identity: args.identity,
        lease_duration: std::time::Duration::from_secs(args.lease_seconds),
    };
    run_elected(kube::Client::try_default().await?, election, telemetry).await?;
    health.abort();
    Ok(())
}

/// Runs the probe of a policy, from a file or the cluster; exits non-zero when it fails.
async fn probe(args: ProbeArgs) -> anyhow::Result<()> {
    let (spec, tiers) = match (&args.file, &args.policy) {
        (Some(file), _) => policy_file(file)?,
        (None, Some(name)) => policy_in_cluster(name, args.namespace.as_deref()).await?,
        (None, None) => anyhow::bail!("name a policy with -f FILE or --policy NAME"),
    };
    let threshold = u64::try_from(spec.threshold_bytes).context("thresholdBytes must not be negative")?;
    let large = usize::try_from(spec.probe.large_bytes).context("probe.largeBytes must be positive")?;
    let probe = Probe::new(tiers, &spec.temporal.namespace, threshold, large).map_err(anyhow::Error::msg)?;
    let report = probe.run().await;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&snake_case(serde_json::to_value(&report)?))?
        );
    } else {
        print_report(&report);
    }
    if report.status != "passed" {
        std::process::exit(1);
    }
    Ok(())
}

/// A policy manifest and its drivers, with credentials from the environment.
fn policy_file(file: &std::path::Path) -> anyhow::Result<(PayloadStoragePolicySpec, Vec<Tier>)> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let policy: PayloadStoragePolicy = serde_yaml::from_str(&text)
        .with_context(|| format!("{} is not a PayloadStoragePolicy", file.display()))?;
    let tiers = policy
        .spec
        .drivers
        .iter()
        .map(|d| {
            let c = d.proxy_driver();
            Ok(Tier {
                driver: Driver::open(&c.url, &c.prefix, &c.options)?,
                min_bytes: c.min_bytes,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((policy.spec, tiers))
}

/// A policy in the cluster and its drivers, with credentials from its Secrets.
async fn policy_in_cluster(
    name: &str,
    namespace: Option<&str>,
) -> anyhow::Result<(PayloadStoragePolicySpec, Vec<Tier>)> {
    let client = kube::Client::try_default().await?;
    let namespace = namespace.unwrap_or(client.default_namespace()).to_owned();
    let api: kube::Api<PayloadStoragePolicy> = kube::Api::namespaced(client.clone(), &namespace);
    let policy = api
        .get(name)
        .await
        .with_context(|| format!("cannot read PayloadStoragePolicy {namespace}/{name}"))?;
    let world = claimcheck::controller::Live { client };
    let drivers = claimcheck::controller::open_drivers(&policy.spec, &namespace, &world)
        .await
        .map_err(|verdict| anyhow::anyhow!("{}: {}", verdict.reason, verdict.message))?;
    Ok((policy.spec, drivers.into_iter().map(|d| d.tier).collect()))
}

/// The report with snake_case keys (`small_payload`, `write_ms`), as command-line tools
/// expect; the policy's status keeps Kubernetes' camelCase.
fn snake_case(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| {
                    let mut snake = String::with_capacity(key.len() + 4);
                    for c in key.chars() {
                        if c.is_ascii_uppercase() {
                            snake.push('_');
                        }
                        snake.push(c.to_ascii_lowercase());
                    }
                    (snake, snake_case(value))
                })
                .collect(),
        ),
        other => other,
    }
}

fn print_report(report: &ProbeReport) {
    let latencies = &report.latencies;
    println!("probe {} ({})", report.status, report.time);
    for (name, check) in [("small", &report.small_payload), ("large", &report.large_payload)] {
        let place = match &check.reference {
            Some(key) => format!("offloaded to {key}"),
            None => "inline".to_owned(),
        };
        let verified = if check.verified {
            "verified"
        } else {
            "NOT verified"
        };
        println!(
            "  {name:<5} {:>9} bytes  {place}  {verified}  sha256 {}",
            check.bytes, check.sha256
        );
    }
    println!(
        "  write {:.1} ms, read {:.1} ms, delete {:.1} ms",
        latencies.write_ms, latencies.read_ms, latencies.delete_ms
    );
    if let Some(reason) = &report.reason {
        println!("  reason: {reason}");
    }
}
