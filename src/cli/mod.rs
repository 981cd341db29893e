//! The command line: `claimcheck proxy | codec | controller | probe | objects | crd | check-install`.

mod check;
mod objects;
mod operator;
mod probe;
mod proxy;

use clap::{Parser, Subcommand};
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
    worker_threads: Option<std::num::NonZeroUsize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the payload proxy between Temporal workers and the frontend.
    Proxy(Box<proxy::ProxyArgs>),
    /// Run the codec server alone, for the Temporal Web UI and CLI: the proxy's
    /// configuration (its stores and its `codec` section, or the --codec-* flags), no gRPC.
    Codec(Box<proxy::ProxyArgs>),
    /// Run one replica of the operator: reconciliation (by the Lease holder), the
    /// sidecar-injection webhook, health and metrics.
    Controller(Box<operator::ControllerArgs>),
    /// Print the PayloadStoragePolicy CustomResourceDefinition (YAML).
    Crd {
        /// As the Helm chart's template (charts/claimcheck/templates/crd.yaml).
        #[arg(long)]
        chart: bool,
    },
    /// Prove a policy's stores with a round trip: a small payload stays inline, a large
    /// one is offloaded, both come back with the same size and SHA-256.
    Probe(probe::ProbeArgs),
    /// List one workflow's offloaded payloads (its run-scoped objects), and delete them
    /// with --delete.
    Objects(objects::ObjectsArgs),
    /// Check an installation as the API server uses it (what `helm test` runs): the CRD is
    /// served, and every webhook replica answers over TLS with the configuration's CA.
    CheckInstall(check::CheckArgs),
}

pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(&cli.log_format);
    crate::tls::install_crypto_provider();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.worker_threads {
        runtime.worker_threads(threads.get());
    }
    runtime.enable_all().build()?.block_on(async {
        match cli.command {
            Command::Proxy(args) => proxy::run(*args).await,
            Command::Codec(args) => proxy::run_codec(*args).await,
            Command::Controller(args) => operator::run(*args).await,
            Command::Crd { chart } => {
                let crd = crate::policy::crd();
                match chart {
                    true => print!("{}", crate::chart::crd_template(&crd)?),
                    false => print!("{}", crate::yaml::to_string(&crd)?),
                }
                Ok(())
            }
            Command::Probe(args) => probe::run(args).await,
            Command::Objects(args) => objects::run(args).await,
            Command::CheckInstall(args) => check::run(args).await,
        }
    })
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
