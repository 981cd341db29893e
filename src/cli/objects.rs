//! `claimcheck objects`: one workflow's offloaded payloads, listed and, on request, deleted
//! (the request that follows "delete this customer's data").
//!
//! It finds the objects stored under the SDKs' run-scoped keys,
//! `v0/ns/{ns}/wt/{type}/wi/{id}/ri/{run}/d/sha256/{hex}`, for every workflow type.
//! Objects stored under namespace-scoped keys (`v0/ns/{ns}/d/...`) are shared by every
//! workflow that sent the same bytes, so they are neither listed nor deleted here; the
//! bucket's expiry removes them.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::config::DriverConfig;
use crate::driver::Driver;
use crate::payload::reference;
use crate::payload::transform::Tier;

#[derive(Args)]
pub struct ObjectsArgs {
    /// A PayloadStoragePolicy manifest: its drivers, with credentials from the environment.
    #[arg(long, short = 'f', conflicts_with_all = ["policy", "store"])]
    file: Option<PathBuf>,
    /// A policy in the cluster (current kubeconfig): its drivers and Secrets.
    #[arg(long, conflicts_with = "store")]
    policy: Option<String>,
    /// The Kubernetes namespace of --policy; defaults to the kubeconfig's.
    #[arg(long, requires = "policy")]
    policy_namespace: Option<String>,
    /// A store URL, as a standalone proxy's --store (file:///dir, s3://bucket/prefix, ...).
    #[arg(long)]
    store: Option<String>,
    /// Key prefix for --store.
    #[arg(long, default_value = "", requires = "store")]
    prefix: String,
    /// Option of --store, as KEY=VALUE (endpoint, region, ...); repeatable.
    #[arg(long, value_parser = super::proxy::key_value, requires = "store")]
    store_option: Vec<(String, String)>,
    /// The Temporal namespace; defaults to the policy's.
    #[arg(long)]
    namespace: Option<String>,
    #[arg(long)]
    workflow_id: String,
    /// Only this run's objects. Objects stored before the run had an id (its start input,
    /// signals that named no run) lie under `ri/null` and are listed without --run-id.
    #[arg(long)]
    run_id: Option<String>,
    /// Delete the objects listed, after confirmation (or --yes). A run still open that
    /// references one of them fails closed when it next needs it.
    #[arg(long)]
    delete: bool,
    /// Delete without asking.
    #[arg(long, requires = "delete")]
    yes: bool,
}

pub async fn run(args: ObjectsArgs) -> anyhow::Result<()> {
    let (tiers, policy_namespace) = tiers(&args).await?;
    let namespace = args
        .namespace
        .clone()
        .or(policy_namespace)
        .context("name the Temporal namespace with --namespace")?;
    let mut found = Vec::new();
    for tier in &tiers {
        for object in workflow_objects(
            &tier.driver,
            &namespace,
            &args.workflow_id,
            args.run_id.as_deref(),
        )
        .await?
        {
            println!(
                "{}\t{}\t{}",
                tier.driver.object_name(object.location.as_ref()),
                object.size,
                object.last_modified.to_rfc3339()
            );
            found.push((&tier.driver, object.location.to_string()));
        }
    }
    println!(
        "{} objects of workflow {:?} in namespace {namespace}",
        found.len(),
        args.workflow_id
    );
    if !args.delete || found.is_empty() {
        return Ok(());
    }
    if !args.yes && !confirmed(found.len())? {
        anyhow::bail!("nothing deleted");
    }
    for (driver, key) in &found {
        driver.delete(key).await?;
    }
    println!("deleted {} objects", found.len());
    Ok(())
}

/// The objects stored under one workflow's run-scoped keys, whatever its type.
async fn workflow_objects(
    driver: &Driver,
    namespace: &str,
    workflow_id: &str,
    run_id: Option<&str>,
) -> anyhow::Result<Vec<object_store::ObjectMeta>> {
    let mut objects = Vec::new();
    let types = reference::workflow_types_scope(driver.prefix(), namespace);
    for type_folder in driver.folders(&types).await? {
        let scope = reference::workflow_scope(&type_folder, workflow_id, run_id);
        objects.extend(driver.objects(&scope).await?);
    }
    Ok(objects)
}

/// The stores to search, and the policy's Temporal namespace when they come from a policy.
async fn tiers(args: &ObjectsArgs) -> anyhow::Result<(Vec<Tier>, Option<String>)> {
    let (spec, tiers) = match (&args.file, &args.policy, &args.store) {
        (Some(file), _, _) => super::probe::policy_file(file)?,
        (None, Some(name), _) => {
            super::probe::policy_in_cluster(name, args.policy_namespace.as_deref()).await?
        }
        (None, None, Some(url)) => {
            let config = DriverConfig {
                url: url.clone(),
                prefix: args.prefix.clone(),
                min_bytes: 0,
                options: args.store_option.iter().cloned().collect(),
                credentials_dir: None,
                expire_after_days: None,
                accept_unscoped_keys: false,
            };
            return Ok((vec![Tier::open(&config)?], None));
        }
        (None, None, None) => anyhow::bail!("name the store with -f FILE, --policy NAME or --store URL"),
    };
    Ok((tiers, Some(spec.temporal.namespace)))
}

fn confirmed(count: usize) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("refusing to delete {count} objects without --yes: standard input is not a terminal");
    }
    print!("Delete these {count} objects? [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
