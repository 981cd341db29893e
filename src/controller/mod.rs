//! The controller: turns each PayloadStoragePolicy into a rendered proxy configuration, an
//! effective TTL and a proven store, and says so in the policy's status and Events.
//!
//! The decisions live in `evaluate` (no cluster needed); this module applies them: the
//! finalizer, the ConfigMap, the status, the Events.

mod codec;
mod evaluate;
mod leader;
mod rbac;
mod render;
mod rules;
mod schedule;
mod status;
mod telemetry;
mod world;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::inject::Defaults;
use crate::lifecycle::Ttl;
use crate::payload::transform::Tier;
use crate::policy::PayloadStoragePolicy;
use crate::policy::pod::{POLICY_LABEL, config_map_name};
use evaluate::{Evaluation, evaluate, release};
use schedule::{Schedule, next_look};
use status::READY;

pub use codec::{CODEC_LABEL, codec_config, codec_name};
pub use evaluate::drivers as open_drivers;
pub use leader::{Election, run as run_elected};
pub use rbac::{CLUSTER_ROLE, WEBHOOK_SECRET, cluster_role, role};
pub use render::{config_map_data, proxy_config};
pub use rules::RuleScope;
pub use status::Verdict;
pub use telemetry::Telemetry;
pub use world::{Live, World};

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
    Render(#[from] crate::yaml::WriteError),
    #[error("the policy has no namespace")]
    NoNamespace,
    #[error("cannot remove the bucket rule: {0}")]
    Rules(String),
}

impl Error {
    /// The `error` label of the failure metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::Render(_) => "render",
            Error::NoNamespace => "no_namespace",
            Error::Rules(_) => "rules",
        }
    }
}

/// What every reconciliation shares.
pub struct Context<W> {
    pub client: Client,
    /// The image and resources of the codec servers that policies ask for.
    pub workloads: Defaults,
    /// The field manager of this replica's server-side applies: status and ConfigMaps show
    /// which replica wrote them.
    pub manager: String,
    pub world: W,
    pub recorder: Recorder,
    pub telemetry: Arc<Telemetry>,
    pub schedule: Schedule,
}

/// What the operator gives the controller besides the cluster: its metrics, the image and
/// resources of what it runs for policies (their codec servers), and how many it reconciles
/// at once.
#[derive(Clone)]
pub struct Options {
    pub telemetry: Arc<Telemetry>,
    pub workloads: Defaults,
    pub concurrency: u16,
}

/// The default of `--reconcile-concurrency`.
pub const CONCURRENCY: u16 = 8;

impl Default for Options {
    fn default() -> Self {
        Options {
            telemetry: Arc::default(),
            workloads: Defaults::default(),
            concurrency: CONCURRENCY,
        }
    }
}

/// Runs the controller until SIGTERM or SIGINT, as replica `identity`. With several
/// replicas, run it through [`run_elected`] so that only one reconciles.
pub async fn run(client: Client, identity: &str, options: Options) {
    let policies = Api::<PayloadStoragePolicy>::all(client.clone());
    let config_maps = Api::<ConfigMap>::all(client.clone());
    let reporter = Reporter {
        controller: MANAGER.to_owned(),
        instance: Some(identity.to_owned()),
    };
    let context = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        world: Live::new(client.clone()),
        client,
        manager: format!("{MANAGER}-{identity}"),
        telemetry: options.telemetry,
        workloads: options.workloads,
        schedule: Schedule::default(),
    });
    // Bounded, so that a cluster's worth of policies (at start, or after a leader change) does
    // not probe every store at once, nor hold every probe's payloads in memory together.
    let config = controller::Config::default().concurrency(options.concurrency);
    Controller::new(policies, watcher::Config::default())
        .with_config(config)
        // Only the ConfigMaps we render, not every ConfigMap of the cluster.
        .owns(config_maps, watcher::Config::default().labels(POLICY_LABEL))
        .shutdown_on_signal()
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::warn!(error = %e, "reconciliation failed");
            }
        })
        .await;
}

pub async fn reconcile<W: World>(
    policy: Arc<PayloadStoragePolicy>,
    ctx: Arc<Context<W>>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let namespace = policy.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<PayloadStoragePolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let action = finalizer(&api, FINALIZER, policy, |event| async {
        match event {
            Event::Apply(policy) => apply(&policy, &ctx).await,
            Event::Cleanup(policy) => cleanup(&policy, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(e.to_string()));
    ctx.telemetry.reconciled(started.elapsed(), action.as_ref().err());
    action
}

fn error_policy<W: World>(_: Arc<PayloadStoragePolicy>, error: &Error, _: Arc<Context<W>>) -> Action {
    tracing::warn!(%error, "will retry");
    Action::requeue(RETRY)
}

fn scope_of(policy: &PayloadStoragePolicy, namespace: &str) -> RuleScope {
    RuleScope {
        temporal_namespace: policy.spec.temporal.namespace.clone(),
        k8s_namespace: namespace.to_owned(),
        policy: policy.name_any(),
    }
}

async fn cleanup<W: World>(policy: &PayloadStoragePolicy, ctx: &Context<W>) -> Result<Action, Error> {
    let namespace = policy.namespace().ok_or(Error::NoNamespace)?;
    release(&policy.spec, &scope_of(policy, &namespace), &ctx.world)
        .await
        .map_err(Error::Rules)?;
    let note = "the policy's bucket rules are removed; stored payloads are kept";
    let kind = (EventType::Normal, "RulesRemoved", "Delete");
    crate::events::publish(&ctx.recorder, policy, kind, note).await;
    ctx.telemetry.forget_policy(&namespace, &policy.name_any());
    ctx.schedule.forget(&policy.uid().unwrap_or_default());
    Ok(Action::await_change())
}

async fn apply<W: World>(policy: &PayloadStoragePolicy, ctx: &Context<W>) -> Result<Action, Error> {
    let namespace = policy.namespace().ok_or(Error::NoNamespace)?;
    let uid = policy.uid().unwrap_or_default();
    let generation = policy.meta().generation;
    if let Some((evaluation, wait)) = ctx.schedule.current(&uid, generation) {
        // What the last evaluation wrote triggered this, or an edit of the ConfigMap: the
        // evaluation stands, and the ConfigMap is put back as rendered from it.
        apply_config_map(policy, &namespace, managed_ttl(policy, &evaluation), ctx).await?;
        return Ok(Action::requeue(wait));
    }
    let evaluation = evaluate(&policy.spec, &scope_of(policy, &namespace), &ctx.world).await;
    apply_config_map(policy, &namespace, managed_ttl(policy, &evaluation), ctx).await?;
    apply_codec(policy, &namespace, ctx).await?;
    write_status(policy, &namespace, &evaluation, ctx).await?;
    ctx.telemetry
        .policy_ready(&namespace, &policy.name_any(), evaluation.ready());
    announce(policy, &evaluation, ctx).await;
    let interval = schedule::interval(&policy.spec);
    let wait = next_look(interval, evaluation.ready(), RETRY, &uid, SystemTime::now());
    // Kept once all of it is written: a failed write is retried with a new evaluation.
    ctx.schedule.record(&uid, generation, Arc::new(evaluation), wait);
    Ok(Action::requeue(wait))
}

/// The TTL the rendered configuration carries when the policy manages lifecycle (see
/// `render::proxy_config`).
fn managed_ttl<'e>(policy: &PayloadStoragePolicy, evaluation: &'e Evaluation) -> Option<&'e Ttl> {
    evaluation.ttl.as_ref().filter(|_| policy.spec.lifecycle.manage)
}

/// An Event when Ready changes, status or reason: what changed and why, once.
async fn announce<W: World>(policy: &PayloadStoragePolicy, evaluation: &Evaluation, ctx: &Context<W>) {
    let Some(now) = evaluation.verdict(READY) else {
        return;
    };
    let before = policy
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == READY));
    let status = if now.ok { "True" } else { "False" };
    if before.is_some_and(|c| c.status == status && c.reason == now.reason) {
        return;
    }
    let type_ = if now.ok {
        EventType::Normal
    } else {
        EventType::Warning
    };
    crate::events::publish(
        &ctx.recorder,
        policy,
        (type_, &now.reason, "Reconcile"),
        &now.message,
    )
    .await;
}

async fn apply_config_map(
    policy: &PayloadStoragePolicy,
    namespace: &str,
    managed_ttl: Option<&Ttl>,
    ctx: &Context<impl World>,
) -> Result<(), Error> {
    let name = config_map_name(&policy.name_any());
    let config_map = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.to_owned()),
            owner_references: policy.controller_owner_ref(&()).map(|o| vec![o]),
            labels: Some(BTreeMap::from([(POLICY_LABEL.to_owned(), policy.name_any())])),
            ..ObjectMeta::default()
        },
        data: Some(config_map_data(&policy.spec, managed_ttl)?),
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

/// The codec server the policy asks for, or none: what a removed `codec` left is deleted.
async fn apply_codec(
    policy: &PayloadStoragePolicy,
    namespace: &str,
    ctx: &Context<impl World>,
) -> Result<(), Error> {
    let name = codec::codec_name(&policy.name_any());
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(spec) = &policy.spec.codec else {
        let params = DeleteParams::background();
        if services.get_metadata_opt(&name).await?.is_some() {
            deployments.delete(&name, &params).await.map(drop).or_else(gone)?;
            config_maps.delete(&name, &params).await.map(drop).or_else(gone)?;
            services.delete(&name, &params).await.map(drop).or_else(gone)?;
        }
        return Ok(());
    };
    let owned = |labels: Option<BTreeMap<String, String>>| ObjectMeta {
        name: Some(name.clone()),
        namespace: Some(namespace.to_owned()),
        owner_references: policy.controller_owner_ref(&()).map(|o| vec![o]),
        labels,
        ..ObjectMeta::default()
    };
    let data = codec::config_map_data(&policy.spec, spec)?;
    let config_map = ConfigMap {
        metadata: owned(Some(BTreeMap::from([(
            POLICY_LABEL.to_owned(),
            policy.name_any(),
        )]))),
        data: Some(data.clone()),
        ..ConfigMap::default()
    };
    let mut deployment = codec::deployment(&policy.name_any(), &policy.spec, spec, &data, &ctx.workloads);
    deployment.metadata = owned(deployment.metadata.labels.take());
    let mut service = codec::service(&policy.name_any(), spec);
    service.metadata = owned(service.metadata.labels.take());
    let params = PatchParams::apply(&ctx.manager).force();
    config_maps
        .patch(&name, &params, &Patch::Apply(&config_map))
        .await?;
    deployments
        .patch(&name, &params, &Patch::Apply(&deployment))
        .await?;
    services.patch(&name, &params, &Patch::Apply(&service)).await?;
    Ok(())
}

/// A delete of what is already gone succeeded.
fn gone(error: kube::Error) -> Result<(), kube::Error> {
    match &error {
        kube::Error::Api(status) if status.code == 404 => Ok(()),
        _ => Err(error),
    }
}

/// A driver of the policy, opened with its credentials.
pub struct OpenDriver {
    pub name: String,
    /// The driver's configuration, credentials included: never rendered anywhere.
    pub config: crate::config::DriverConfig,
    pub tier: Tier,
}

async fn write_status(
    policy: &PayloadStoragePolicy,
    namespace: &str,
    evaluation: &Evaluation,
    ctx: &Context<impl World>,
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
