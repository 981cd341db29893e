//! The controller: turns each PayloadStoragePolicy into a rendered proxy configuration, an
//! effective TTL and a proven store, and says so in the policy's status.
//!
//! Bucket lifecycle rules are installed for S3 drivers; for the other stores the
//! LifecycleConfigured condition says what rule to install.

mod leader;
mod rbac;
mod render;
mod rules;
mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::driver::Driver;
use crate::lifecycle::{Ttl, effective_ttl};
use crate::policy::{PayloadStoragePolicy, PayloadStoragePolicySpec, parse_duration};
use crate::probe::{Probe, ProbeReport};
use crate::proxy::UpstreamTls;
use crate::transform::Tier;
use status::{LIFECYCLE_CONFIGURED, READY, RECONCILING, STALLED, STORAGE_VERIFIED, Verdict};

pub use leader::{Election, run as run_elected};
pub use rbac::{CLUSTER_ROLE, cluster_role};
pub use render::{CONFIG_KEY, SIDECAR_PORT, config_map_data, proxy_config};

/// The field manager of everything the controller applies, followed by the replica's name.
const MANAGER: &str = "claimcheck-controller";
const FINALIZER: &str = "claimcheck.dev/lifecycle-rule";
/// How soon a policy that is not Ready is looked at again.
const RETRY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("cannot render the proxy configuration: {0}")]
    Render(#[from] serde_yaml::Error),
    #[error("the policy has no namespace")]
    NoNamespace,
    #[error("cannot remove the bucket rule: {0}")]
    Rules(String),
}

/// What every reconciliation shares.
pub struct Context {
    pub client: Client,
    /// The field manager of this replica's server-side applies: status and ConfigMaps show
    /// which replica wrote them.
    pub manager: String,
}

/// The name of the ConfigMap that holds a policy's proxy configuration.
pub fn config_map_name(policy: &str) -> String {
    format!("{policy}-claimcheck-proxy")
}

/// Runs the controller until SIGTERM or SIGINT, as replica `identity`. With several
/// replicas, run it through [`run_elected`] so that only one reconciles.
pub async fn run(client: Client, identity: &str) {
    let policies = Api::<PayloadStoragePolicy>::all(client.clone());
    let config_maps = Api::<ConfigMap>::all(client.clone());
    let context = Arc::new(Context {
        client,
        manager: format!("{MANAGER}-{identity}"),
    });
    Controller::new(policies, watcher::Config::default())
        .owns(config_maps, watcher::Config::default())
        .shutdown_on_signal()
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::warn!(error = %e, "reconciliation failed");
            }
        })
        .await;
}

pub async fn reconcile(policy: Arc<PayloadStoragePolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = policy.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<PayloadStoragePolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, policy, |event| async {
        match event {
            Event::Apply(policy) => apply(&policy, &ctx).await,
            Event::Cleanup(policy) => cleanup(&policy, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(e.to_string()))
}

/// Removes the policy's bucket rules; the objects stay. A policy whose credentials are gone
/// cannot reach its bucket: its rule stays (it only expires objects) and deletion goes on.
async fn cleanup(policy: &PayloadStoragePolicy, ctx: &Context) -> Result<Action, Error> {
    let namespace = policy.namespace().ok_or(Error::NoNamespace)?;
    match drivers(&policy.spec, &namespace, ctx).await {
        Ok(drivers) => rules::remove(&drivers, &namespace, &policy.name_any())
            .await
            .map_err(Error::Rules)?,
        Err(verdict) => {
            tracing::warn!(reason = %verdict.message, "cannot reach the bucket to remove the policy's rule")
        }
    }
    Ok(Action::await_change())
}

fn error_policy(_: Arc<PayloadStoragePolicy>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(%error, "will retry");
    Action::requeue(RETRY)
}

async fn apply(policy: &PayloadStoragePolicy, ctx: &Context) -> Result<Action, Error> {
    let namespace = policy.namespace().ok_or(Error::NoNamespace)?;
    let evaluation = evaluate(&policy.spec, &namespace, &policy.name_any(), ctx).await;
    let janitor_days = evaluation
        .ttl
        .as_ref()
        .filter(|_| policy.spec.lifecycle.manage)
        .map(|t| t.days);
    apply_config_map(policy, &namespace, janitor_days, ctx).await?;
    write_status(policy, &namespace, &evaluation, ctx).await?;
    let interval = parse_duration(&policy.spec.probe.interval).unwrap_or(Duration::from_secs(300));
    Ok(Action::requeue(if evaluation.ready() {
        interval
    } else {
        RETRY.min(interval)
    }))
}

async fn apply_config_map(
    policy: &PayloadStoragePolicy,
    namespace: &str,
    janitor_days: Option<u64>,
    ctx: &Context,
) -> Result<(), Error> {
    let name = config_map_name(&policy.name_any());
    let config_map = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.to_owned()),
            owner_references: policy.controller_owner_ref(&()).map(|o| vec![o]),
            labels: Some(BTreeMap::from([(
                "claimcheck.dev/policy".to_owned(),
                policy.name_any(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(config_map_data(&policy.spec, janitor_days)?),
        ..ConfigMap::default()
    };
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    api.patch(
        &name,
        &PatchParams::apply(&ctx.manager).force(),
        &Patch::Apply(&config_map),
    )
    .await?;
    Ok(())
}

/// Everything the status reports, worked out from the spec and the outside world.
struct Evaluation {
    verdicts: Vec<Verdict>,
    ttl: Option<Ttl>,
    probe: Option<ProbeReport>,
}

impl Evaluation {
    fn ready(&self) -> bool {
        self.verdicts.iter().any(|v| v.type_ == READY && v.ok)
    }
}

async fn evaluate(
    spec: &PayloadStoragePolicySpec,
    namespace: &str,
    policy: &str,
    ctx: &Context,
) -> Evaluation {
    let ttl = ttl(spec, namespace, ctx).await;
    let drivers = drivers(spec, namespace, ctx).await;
    let (storage, probe) = match &drivers {
        Ok(drivers) => probe(spec, drivers.iter().map(|d| d.tier.clone()).collect()).await,
        Err(verdict) => (verdict.clone(), None),
    };
    let lifecycle = match (&ttl, &drivers, spec.lifecycle.manage) {
        (Err(verdict), _, _) => verdict.clone(),
        (Ok(ttl), _, false) => Verdict::new(
            LIFECYCLE_CONFIGURED,
            true,
            "NotManaged",
            format!(
                "objects must live {} days; bucket rules are left to you",
                ttl.days
            ),
        ),
        (Ok(ttl), Ok(drivers), true) => {
            rules::apply(drivers, ttl, &spec.temporal.namespace, namespace, policy).await
        }
        (Ok(_), Err(verdict), true) => Verdict::new(
            LIFECYCLE_CONFIGURED,
            false,
            verdict.reason.clone(),
            verdict.message.clone(),
        ),
    };
    let blocking = [&storage, &lifecycle].into_iter().find(|v| !v.ok).cloned();
    let ready = match &blocking {
        None => Verdict::new(
            READY,
            true,
            "Verified",
            "the round-trip probe passed and the objects' lifetime is set",
        ),
        Some(v) => Verdict::new(READY, false, v.reason.clone(), v.message.clone()),
    };
    let spec_error = ["InvalidDriver", "InvalidDuration"].contains(&ready.reason.as_str());
    let stalled = match spec_error {
        true => Verdict::new(STALLED, true, "SpecInvalid", ready.message.clone()),
        false => Verdict::new(STALLED, false, "Progressing", ""),
    };
    let reconciling = Verdict::new(RECONCILING, false, "Reconciled", "");
    Evaluation {
        verdicts: vec![ready, reconciling, stalled, storage, lifecycle],
        ttl: ttl.ok(),
        probe,
    }
}

async fn ttl(spec: &PayloadStoragePolicySpec, namespace: &str, ctx: &Context) -> Result<Ttl, Verdict> {
    let invalid = |e: crate::policy::DurationError| {
        Verdict::new(LIFECYCLE_CONFIGURED, false, "InvalidDuration", e.to_string())
    };
    let run = parse_duration(&spec.lifecycle.max_workflow_run_timeout).map_err(invalid)?;
    let grace = parse_duration(&spec.lifecycle.grace).map_err(invalid)?;
    let (retention, source) = if spec.lifecycle.retention == "auto" {
        (
            retention_of(spec, namespace, ctx).await?,
            format!("namespace {}", spec.temporal.namespace),
        )
    } else {
        (
            parse_duration(&spec.lifecycle.retention).map_err(invalid)?,
            "spec".to_owned(),
        )
    };
    Ok(effective_ttl(run, retention, grace, &source))
}

async fn retention_of(
    spec: &PayloadStoragePolicySpec,
    namespace: &str,
    ctx: &Context,
) -> Result<Duration, Verdict> {
    let unknown = |message: String| Verdict::new(LIFECYCLE_CONFIGURED, false, "RetentionUnknown", message);
    let tls = match &spec.temporal.tls {
        Some(tls) => {
            let secret = secret_data(&tls.secret_name, namespace, ctx)
                .await
                .map_err(|v| unknown(v.message))?;
            Some(UpstreamTls {
                ca_pem: secret.get("ca.crt").cloned(),
                client_cert_pem: secret.get("tls.crt").cloned(),
                client_key_pem: secret.get("tls.key").cloned(),
                server_name: tls.server_name.clone(),
            })
        }
        None => None,
    };
    let channel =
        crate::proxy::connect(&spec.temporal.address, tls.as_ref()).map_err(|e| unknown(e.to_string()))?;
    let lookup =
        crate::temporal::namespace_retention(channel, &spec.temporal.address, &spec.temporal.namespace);
    match tokio::time::timeout(Duration::from_secs(10), lookup).await {
        Ok(Ok(retention)) => Ok(retention),
        Ok(Err(e)) => Err(unknown(e.to_string())),
        Err(_) => Err(unknown(format!(
            "Temporal at {} did not answer within 10 s",
            spec.temporal.address
        ))),
    }
}

async fn secret_data(
    name: &str,
    namespace: &str,
    ctx: &Context,
) -> Result<BTreeMap<String, Vec<u8>>, Verdict> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(secret)) => Ok(secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect()),
        Ok(None) => Err(Verdict::new(
            STORAGE_VERIFIED,
            false,
            "SecretNotFound",
            format!("Secret {namespace}/{name} does not exist"),
        )),
        Err(e) => Err(Verdict::new(
            STORAGE_VERIFIED,
            false,
            "SecretUnreadable",
            format!("cannot read Secret {namespace}/{name}: {e}"),
        )),
    }
}

/// A driver of the policy, opened with its credentials.
pub(crate) struct OpenDriver {
    pub name: String,
    /// The driver's configuration, credentials included: never rendered anywhere.
    pub config: crate::config::DriverConfig,
    pub tier: Tier,
}

/// The drivers, with their credentials: a Secret's keys are the environment variables the
/// store clients read (AWS_ACCESS_KEY_ID, ...), which are also their option names, lower-cased.
async fn drivers(
    spec: &PayloadStoragePolicySpec,
    namespace: &str,
    ctx: &Context,
) -> Result<Vec<OpenDriver>, Verdict> {
    let mut drivers = Vec::with_capacity(spec.drivers.len());
    for driver in &spec.drivers {
        let mut config = driver.proxy_driver();
        if let Some(secret) = &driver.credentials_secret_ref {
            for (key, value) in secret_data(&secret.name, namespace, ctx).await? {
                config
                    .options
                    .insert(key.to_lowercase(), String::from_utf8_lossy(&value).into_owned());
            }
        }
        let opened = Driver::open(&config.url, &config.prefix, &config.options).map_err(|e| {
            Verdict::new(
                STORAGE_VERIFIED,
                false,
                "InvalidDriver",
                format!("driver {}: {e}", driver.name),
            )
        })?;
        let tier = Tier {
            driver: opened,
            min_bytes: config.min_bytes,
        };
        drivers.push(OpenDriver {
            name: driver.name.clone(),
            config,
            tier,
        });
    }
    Ok(drivers)
}

async fn probe(spec: &PayloadStoragePolicySpec, tiers: Vec<Tier>) -> (Verdict, Option<ProbeReport>) {
    let threshold = u64::try_from(spec.threshold_bytes).unwrap_or(0);
    let large = usize::try_from(spec.probe.large_bytes).unwrap_or(0);
    let probe = match Probe::new(tiers, &spec.temporal.namespace, threshold, large) {
        Ok(probe) => probe,
        Err(e) => return (Verdict::new(STORAGE_VERIFIED, false, "ProbeUnavailable", e), None),
    };
    let (report, _) = probe.run().await;
    let verdict = match &report.reason {
        None => Verdict::new(
            STORAGE_VERIFIED,
            true,
            "ProbePassed",
            format!("round trip through {} verified", report.driver),
        ),
        Some(reason) => Verdict::new(STORAGE_VERIFIED, false, "ProbeFailed", reason.clone()),
    };
    (verdict, Some(report))
}

async fn write_status(
    policy: &PayloadStoragePolicy,
    namespace: &str,
    evaluation: &Evaluation,
    ctx: &Context,
) -> Result<(), Error> {
    let previous = policy
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let generation = policy.meta().generation;
    let conditions = status::conditions(&evaluation.verdicts, previous, generation);
    let status = json!({
        "apiVersion": PayloadStoragePolicy::api_version(&()),
        "kind": PayloadStoragePolicy::kind(&()),
        "status": {
            "observedGeneration": generation,
            "conditions": conditions,
            "effectiveTTL": evaluation.ttl.as_ref().map(|t| format!("{}d", t.days)),
            "ttlDerivation": evaluation.ttl.as_ref().map(|t| t.derivation.clone()),
            "lastProbe": evaluation.probe,
        }
    });
    let api: Api<PayloadStoragePolicy> = Api::namespaced(ctx.client.clone(), namespace);
    api.patch_status(
        &policy.name_any(),
        &PatchParams::apply(&ctx.manager).force(),
        &Patch::Apply(status),
    )
    .await?;
    Ok(())
}
