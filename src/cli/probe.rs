//! `claimcheck probe`: the controller's round-trip probe, for a policy file or a policy in
//! the cluster, printed for people or as JSON.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::payload::transform::Tier;
use crate::policy::{PayloadStoragePolicy, PayloadStoragePolicySpec};
use crate::probe::{Probe, ProbeReport};

#[derive(Args)]
pub struct ProbeArgs {
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

/// Runs the probe of a policy, from a file or the cluster; exits non-zero when it fails.
pub async fn run(args: ProbeArgs) -> anyhow::Result<()> {
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
pub(super) fn policy_file(file: &std::path::Path) -> anyhow::Result<(PayloadStoragePolicySpec, Vec<Tier>)> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let policy: PayloadStoragePolicy = crate::yaml::from_str(&text)
        .with_context(|| format!("{} is not a PayloadStoragePolicy", file.display()))?;
    let tiers = policy
        .spec
        .drivers
        .iter()
        .map(|d| Tier::open(&d.proxy_driver()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((policy.spec, tiers))
}

/// A policy in the cluster and its drivers, with credentials from its Secrets.
pub(super) async fn policy_in_cluster(
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
    let world = crate::controller::Live::new(client);
    let drivers = crate::controller::open_drivers(&policy.spec, &namespace, &world)
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
