//! The reconciler's state machine: from a policy's spec and the world outside (Secrets,
//! Temporal, the stores) to the verdict of each condition. Nothing here writes to the
//! cluster, so every state is unit-tested without one.

use super::OpenDriver;
use super::rules::RuleScope;
use super::status::{LIFECYCLE_CONFIGURED, READY, RECONCILING, STALLED, STORAGE_VERIFIED, Verdict};
use super::world::{SecretData, World};
use crate::lifecycle::{Ttl, effective_ttl};
use crate::payload::transform::Tier;
use crate::policy::{DurationError, PayloadStoragePolicySpec, parse_duration};
use crate::probe::{Probe, ProbeReport};
use crate::proxy::UpstreamTls;

/// Everything the status reports, worked out from the spec and the outside world.
#[derive(Debug)]
pub struct Evaluation {
    pub verdicts: Vec<Verdict>,
    pub ttl: Option<Ttl>,
    pub probe: Option<ProbeReport>,
}

impl Evaluation {
    pub fn verdict(&self, type_: &str) -> Option<&Verdict> {
        self.verdicts.iter().find(|v| v.type_ == type_)
    }

    pub fn ready(&self) -> bool {
        self.verdict(READY).is_some_and(|v| v.ok)
    }
}

/// Reasons that only a change of the spec can fix.
const SPEC_ERRORS: [&str; 2] = ["InvalidDriver", "InvalidDuration"];

pub async fn evaluate(spec: &PayloadStoragePolicySpec, scope: &RuleScope, world: &impl World) -> Evaluation {
    let ttl = ttl(spec, &scope.k8s_namespace, world).await;
    let drivers = drivers(spec, &scope.k8s_namespace, world).await;
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
        (Ok(ttl), Ok(drivers), true) => world.apply_rules(drivers, ttl, scope).await,
        (Ok(_), Err(verdict), true) => Verdict::new(
            LIFECYCLE_CONFIGURED,
            false,
            verdict.reason.clone(),
            verdict.message.clone(),
        ),
    };
    let ready = match [&storage, &lifecycle].into_iter().find(|v| !v.ok) {
        None => Verdict::new(
            READY,
            true,
            "Verified",
            "the round-trip probe passed and the objects' lifetime is set",
        ),
        Some(v) => Verdict::new(READY, false, v.reason.clone(), v.message.clone()),
    };
    let stalled = match SPEC_ERRORS.contains(&ready.reason.as_str()) {
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

/// What happens to the bucket when the policy is deleted: its rules go, its objects stay. A
/// policy whose credential Secret is gone cannot reach its bucket: the rule stays (it only
/// expires objects) and deletion goes on. A store that refuses, or a Secret that cannot be
/// read, is an error, retried.
pub async fn release(
    spec: &PayloadStoragePolicySpec,
    scope: &RuleScope,
    world: &impl World,
) -> Result<(), String> {
    match drivers(spec, &scope.k8s_namespace, world).await {
        Ok(drivers) => world.remove_rules(&drivers, scope).await,
        Err(verdict) if verdict.reason == "SecretNotFound" => {
            tracing::warn!(reason = %verdict.message, "cannot reach the bucket to remove the policy's rule");
            Ok(())
        }
        // The Secret may be there but unreadable for now: try again, keep the finalizer.
        Err(verdict) => Err(verdict.message),
    }
}

async fn ttl(spec: &PayloadStoragePolicySpec, namespace: &str, world: &impl World) -> Result<Ttl, Verdict> {
    let invalid =
        |e: DurationError| Verdict::new(LIFECYCLE_CONFIGURED, false, "InvalidDuration", e.to_string());
    let run = parse_duration(&spec.lifecycle.max_workflow_run_timeout).map_err(invalid)?;
    let grace = parse_duration(&spec.lifecycle.grace).map_err(invalid)?;
    let (retention, source) = if spec.lifecycle.retention == "auto" {
        let unknown =
            |message: String| Verdict::new(LIFECYCLE_CONFIGURED, false, "RetentionUnknown", message);
        let tls = temporal_tls(spec, namespace, world)
            .await
            .map_err(|v| unknown(v.message))?;
        let retention = world
            .retention(&spec.temporal.address, &spec.temporal.namespace, tls)
            .await
            .map_err(unknown)?;
        (retention, format!("namespace {}", spec.temporal.namespace))
    } else {
        (
            parse_duration(&spec.lifecycle.retention).map_err(invalid)?,
            "spec".to_owned(),
        )
    };
    Ok(effective_ttl(run, retention, grace, &source))
}

async fn temporal_tls(
    spec: &PayloadStoragePolicySpec,
    namespace: &str,
    world: &impl World,
) -> Result<Option<UpstreamTls>, Verdict> {
    let Some(tls) = &spec.temporal.tls else {
        return Ok(None);
    };
    let mut secret = secret_data(&tls.secret_name, namespace, world).await?;
    Ok(Some(UpstreamTls {
        ca_pem: secret.remove("ca.crt"),
        client_cert_pem: secret.remove("tls.crt"),
        client_key_pem: secret.remove("tls.key"),
        server_name: tls.server_name.clone(),
    }))
}

async fn secret_data(name: &str, namespace: &str, world: &impl World) -> Result<SecretData, Verdict> {
    match world.secret(namespace, name).await {
        Ok(Some(data)) => Ok(data),
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

/// The drivers, with their credentials: a Secret's keys are the environment variables the
/// store clients read (AWS_ACCESS_KEY_ID, ...), which are also their option names, lower-cased.
pub async fn drivers(
    spec: &PayloadStoragePolicySpec,
    namespace: &str,
    world: &impl World,
) -> Result<Vec<OpenDriver>, Verdict> {
    let mut drivers = Vec::with_capacity(spec.drivers.len());
    for driver in &spec.drivers {
        let mut config = driver.proxy_driver();
        if let Some(secret) = &driver.credentials_secret_ref {
            for (key, value) in secret_data(&secret.name, namespace, world).await? {
                let value = String::from_utf8_lossy(&value);
                // `kubectl create secret --from-file` keeps a file's last newline.
                let value = value.trim_end_matches(['\r', '\n']).to_owned();
                config.options.insert(key.to_lowercase(), value);
            }
        }
        let tier = Tier::open(&config).map_err(|e| {
            Verdict::new(
                STORAGE_VERIFIED,
                false,
                "InvalidDriver",
                format!("driver {}: {e}", driver.name),
            )
        })?;
        drivers.push(OpenDriver {
            name: driver.name.clone(),
            config,
            tier,
        });
    }
    Ok(drivers)
}

pub async fn probe(spec: &PayloadStoragePolicySpec, tiers: Vec<Tier>) -> (Verdict, Option<ProbeReport>) {
    let threshold = u64::try_from(spec.threshold_bytes).unwrap_or(0);
    let large = usize::try_from(spec.probe.large_bytes).unwrap_or(0);
    let probe = match Probe::new(tiers, &spec.temporal.namespace, threshold, large) {
        Ok(probe) => probe,
        Err(e) => return (Verdict::new(STORAGE_VERIFIED, false, "ProbeUnavailable", e), None),
    };
    let report = probe.run().await;
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

/// The reconciler's states, without a cluster: the world is a fake (Secrets in a map,
/// Temporal's retention and the bucket rules' answers set by the test); the stores are real
/// (`memory://`, or an S3 endpoint nothing listens on).
#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::controller::status::STORAGE_VERIFIED;

    #[derive(Default)]
    struct Fake {
        secrets: BTreeMap<String, SecretData>,
        retention: Option<Duration>,
        rules: Option<Verdict>,
        refuse_removal: bool,
        removed: Mutex<Vec<RuleScope>>,
    }

    use std::collections::BTreeMap;

    impl World for Fake {
        async fn secret(&self, _: &str, name: &str) -> Result<Option<SecretData>, String> {
            Ok(self.secrets.get(name).cloned())
        }
        async fn retention(
            &self,
            address: &str,
            _: &str,
            _: Option<UpstreamTls>,
        ) -> Result<Duration, String> {
            self.retention
                .ok_or_else(|| format!("cannot reach Temporal at {address}"))
        }
        async fn apply_rules(&self, _: &[OpenDriver], ttl: &Ttl, _: &RuleScope) -> Verdict {
            self.rules.clone().unwrap_or_else(|| {
                Verdict::new(
                    LIFECYCLE_CONFIGURED,
                    true,
                    "RuleInstalled",
                    format!("{} days", ttl.days),
                )
            })
        }
        async fn remove_rules(&self, _: &[OpenDriver], scope: &RuleScope) -> Result<(), String> {
            if self.refuse_removal {
                return Err("s3://bucket: 503 SlowDown".into());
            }
            self.removed.lock().unwrap().push(scope.clone());
            Ok(())
        }
    }

    fn scope() -> RuleScope {
        RuleScope {
            temporal_namespace: "billing".into(),
            k8s_namespace: "workers".into(),
            policy: "large-payloads".into(),
        }
    }

    fn spec(driver: serde_json::Value, lifecycle: serde_json::Value) -> PayloadStoragePolicySpec {
        serde_json::from_value(json!({
            "temporal": {"address": "temporal:7233", "namespace": "billing"},
            "thresholdBytes": 1024,
            "drivers": [driver],
            "lifecycle": lifecycle,
            "probe": {"largeBytes": 4096},
        }))
        .unwrap()
    }

    fn memory() -> serde_json::Value {
        json!({"name": "hot", "url": "memory://"})
    }

    fn verdict<'e>(evaluation: &'e Evaluation, type_: &str) -> &'e Verdict {
        evaluation.verdict(type_).unwrap()
    }

    #[tokio::test]
    async fn a_reachable_store_and_installed_rules_make_the_policy_ready() {
        let fake = Fake {
            retention: Some(Duration::from_secs(3 * 86_400)),
            ..Fake::default()
        };
        let spec = spec(
            memory(),
            json!({"maxWorkflowRunTimeout": "7d", "retention": "auto", "grace": "1d"}),
        );
        let evaluation = evaluate(&spec, &scope(), &fake).await;
        assert!(evaluation.ready(), "{evaluation:?}");
        assert_eq!(
            evaluation.ttl.as_ref().unwrap().days,
            11,
            "7d run + 3d retention (from Temporal) + 1d grace"
        );
        assert!(verdict(&evaluation, STORAGE_VERIFIED).ok);
        assert!(!verdict(&evaluation, STALLED).ok);
        assert_eq!(evaluation.probe.as_ref().unwrap().status, "passed");
    }

    #[tokio::test]
    async fn missing_credentials_leave_the_policy_not_ready_and_retried_soon() {
        let driver =
            json!({"name": "hot", "url": "s3://payloads/", "credentialsSecretRef": {"name": "s3-creds"}});
        let spec = spec(driver, json!({"retention": "3d"}));
        let evaluation = evaluate(&spec, &scope(), &Fake::default()).await;
        let ready = verdict(&evaluation, READY);
        assert!(!ready.ok);
        assert_eq!(ready.reason, "SecretNotFound");
        assert_eq!(ready.message, "Secret workers/s3-creds does not exist");
        assert_eq!(
            verdict(&evaluation, LIFECYCLE_CONFIGURED).reason,
            "SecretNotFound"
        );
        assert!(
            !verdict(&evaluation, STALLED).ok,
            "creating the Secret fixes it: not stalled"
        );
        assert!(evaluation.probe.is_none());
    }

    #[tokio::test]
    async fn a_failing_store_fails_the_probe_naming_the_object() {
        // Nothing listens on port 9 of loopback: every request is refused.
        let credentials = SecretData::from([
            ("AWS_ACCESS_KEY_ID".into(), b"key".to_vec()),
            ("AWS_SECRET_ACCESS_KEY".into(), b"secret".to_vec()),
        ]);
        let fake = Fake {
            secrets: BTreeMap::from([("s3-creds".into(), credentials)]),
            ..Fake::default()
        };
        let driver = json!({
            "name": "hot",
            "url": "s3://payloads/",
            "credentialsSecretRef": {"name": "s3-creds"},
            "options": {"endpoint": "http://127.0.0.1:9", "allow_http": "true", "region": "us-east-1"},
        });
        let evaluation = evaluate(&spec(driver, json!({"retention": "3d"})), &scope(), &fake).await;
        let storage = verdict(&evaluation, STORAGE_VERIFIED);
        assert!(!storage.ok);
        assert_eq!(storage.reason, "ProbeFailed");
        assert!(
            storage.message.contains("s3://payloads/v0/ns/billing/"),
            "{}",
            storage.message
        );
        assert!(!storage.message.contains("secret"), "{}", storage.message);
        let ready = verdict(&evaluation, READY);
        assert_eq!((ready.ok, ready.reason.as_str()), (false, "ProbeFailed"));
        assert_eq!(evaluation.probe.as_ref().unwrap().status, "failed");
    }

    #[tokio::test]
    async fn a_conflicting_bucket_rule_keeps_a_verified_store_from_ready() {
        let conflict = Verdict::new(
            LIFECYCLE_CONFIGURED,
            false,
            "RuleFailed",
            "s3://payloads: the rule would overlap rule \"claimcheck-other\"",
        );
        let fake = Fake {
            rules: Some(conflict.clone()),
            ..Fake::default()
        };
        let evaluation = evaluate(&spec(memory(), json!({"retention": "3d"})), &scope(), &fake).await;
        assert!(verdict(&evaluation, STORAGE_VERIFIED).ok);
        assert_eq!(verdict(&evaluation, LIFECYCLE_CONFIGURED), &conflict);
        let ready = verdict(&evaluation, READY);
        assert_eq!(
            (ready.ok, ready.message.as_str()),
            (false, conflict.message.as_str())
        );
    }

    #[tokio::test]
    async fn unmanaged_rules_are_reported_not_installed() {
        let fake = Fake {
            rules: Some(Verdict::new(
                LIFECYCLE_CONFIGURED,
                false,
                "RuleFailed",
                "must not be called",
            )),
            ..Fake::default()
        };
        let evaluation = evaluate(
            &spec(memory(), json!({"retention": "3d", "manage": false})),
            &scope(),
            &fake,
        )
        .await;
        assert!(evaluation.ready());
        assert_eq!(verdict(&evaluation, LIFECYCLE_CONFIGURED).reason, "NotManaged");
    }

    #[tokio::test]
    async fn an_unknown_retention_says_why_and_is_not_a_spec_error() {
        let evaluation = evaluate(
            &spec(memory(), json!({"retention": "auto"})),
            &scope(),
            &Fake::default(),
        )
        .await;
        let ready = verdict(&evaluation, READY);
        assert_eq!(ready.reason, "RetentionUnknown");
        assert!(ready.message.contains("temporal:7233"), "{}", ready.message);
        assert!(evaluation.ttl.is_none());
        assert!(!verdict(&evaluation, STALLED).ok);
    }

    #[tokio::test]
    async fn a_spec_only_an_edit_can_fix_is_stalled() {
        let evaluation = evaluate(
            &spec(memory(), json!({"grace": "soon"})),
            &scope(),
            &Fake::default(),
        )
        .await;
        let stalled = verdict(&evaluation, STALLED);
        assert!(stalled.ok);
        assert!(stalled.message.contains("soon"), "{}", stalled.message);
    }

    #[tokio::test]
    async fn deletion_removes_the_rules_and_survives_lost_credentials() {
        let fake = Fake::default();
        release(&spec(memory(), json!({})), &scope(), &fake)
            .await
            .unwrap();
        assert_eq!(*fake.removed.lock().unwrap(), vec![scope()]);

        let gone =
            json!({"name": "hot", "url": "s3://payloads/", "credentialsSecretRef": {"name": "deleted"}});
        let fake = Fake::default();
        release(&spec(gone, json!({})), &scope(), &fake).await.unwrap();
        assert!(
            fake.removed.lock().unwrap().is_empty(),
            "no credentials: the rule stays, deletion goes on"
        );

        let refusing = Fake {
            refuse_removal: true,
            ..Fake::default()
        };
        let error = release(&spec(memory(), json!({})), &scope(), &refusing)
            .await
            .unwrap_err();
        assert!(
            error.contains("SlowDown"),
            "a store that refuses keeps the finalizer: {error}"
        );
    }
}
