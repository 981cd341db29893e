//! The bucket rules of a policy: one expiry rule per S3 or GCS driver, under the prefix the
//! policy's Temporal namespace writes to. `file://` and Azure drivers are expired by the
//! sidecar's janitor, configured through the rendered proxy configuration: a volume has no
//! rules, and an Azure management policy is set through Azure Resource Manager with
//! account-level rights that blob credentials do not (and should not) carry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OwnedMutexGuard;

use crate::driver::{GCS, S3};
use crate::lifecycle::{ExpiryRule, GcsRules, RULE_PREFIX, RuleError, S3Rules, Ttl};
use crate::payload::reference::namespace_scope;

use super::OpenDriver;
use super::status::{LIFECYCLE_CONFIGURED, Verdict};

/// Which policy the rules belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleScope {
    pub temporal_namespace: String,
    pub k8s_namespace: String,
    pub policy: String,
}

impl RuleScope {
    /// The rule ID of one driver; stable, so a re-apply replaces the rule.
    fn rule_id(&self, driver: &str) -> String {
        format!("{RULE_PREFIX}{}-{}-{driver}", self.k8s_namespace, self.policy)
    }
}

/// Whether the sidecar, not the store, expires the objects of the driver at `url`.
pub fn expired_by_janitor(url: &str) -> bool {
    ["file://", "az://", "azure://"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
}

/// One writer per bucket at a time. S3 has no conditional write of a bucket's lifecycle
/// configuration: two policies of one bucket reconciled together would each write back what
/// they read, and the later write would drop the other's rule. The Lease makes this process
/// the only writer, so a lock per bucket here is enough.
#[derive(Default)]
pub struct BucketLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl BucketLocks {
    async fn hold(&self, driver: &OpenDriver) -> OwnedMutexGuard<()> {
        let driver = &driver.tier.driver;
        let bucket = format!("{}:{}", driver.name(), driver.bucket().unwrap_or_default());
        let lock = {
            let mut locks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            locks.entry(bucket).or_default().clone()
        };
        lock.lock_owned().await
    }
}

enum Rules {
    S3(S3Rules),
    Gcs(GcsRules),
}

impl Rules {
    fn of(driver: &OpenDriver) -> Option<Result<Rules, RuleError>> {
        let bucket = driver.tier.driver.bucket().unwrap_or_default();
        let options = &driver.config.options;
        match driver.tier.driver.name() {
            name if name == S3.name => Some(S3Rules::new(bucket, options).map(Rules::S3)),
            name if name == GCS.name => Some(GcsRules::new(bucket, options).map(Rules::Gcs)),
            _ => None,
        }
    }

    async fn apply(&self, rule: &ExpiryRule) -> Result<(), RuleError> {
        match self {
            Rules::S3(rules) => rules.apply(rule).await,
            Rules::Gcs(rules) => rules.apply(rule).await,
        }
    }

    async fn remove(&self, rule: &ExpiryRule) -> Result<(), RuleError> {
        match self {
            Rules::S3(rules) => rules.remove(&rule.id).await,
            Rules::Gcs(rules) => rules.remove(&rule.prefix).await,
        }
    }
}

fn rule_of(driver: &OpenDriver, scope: &RuleScope, days: u64) -> ExpiryRule {
    ExpiryRule {
        id: scope.rule_id(&driver.name),
        prefix: namespace_scope(driver.tier.driver.prefix(), &scope.temporal_namespace),
        days,
    }
}

/// Installs the rules; the verdict says what was installed, or why not.
pub async fn apply(drivers: &[OpenDriver], ttl: &Ttl, scope: &RuleScope, locks: &BucketLocks) -> Verdict {
    let mut installed = Vec::new();
    for driver in drivers {
        let rule = rule_of(driver, scope, ttl.days);
        let location = driver.tier.driver.object_name(&rule.prefix);
        let applied = match Rules::of(driver) {
            None if expired_by_janitor(&driver.config.url) => {
                installed.push(format!(
                    "{location} after {} days (the sidecar's janitor)",
                    ttl.days
                ));
                continue;
            }
            None => Err(format!(
                "driver {}: no lifecycle rules for this store",
                driver.name
            )),
            Some(Ok(rules)) => {
                let _bucket = locks.hold(driver).await;
                rules.apply(&rule).await.map_err(|e| e.to_string())
            }
            Some(Err(e)) => Err(e.to_string()),
        };
        match applied {
            Ok(()) => installed.push(format!("{location} after {} days (bucket rule)", ttl.days)),
            Err(e) => return Verdict::new(LIFECYCLE_CONFIGURED, false, "RuleFailed", e),
        }
    }
    Verdict::new(
        LIFECYCLE_CONFIGURED,
        true,
        "RuleInstalled",
        format!("objects expire: {}", installed.join("; ")),
    )
}

/// Removes the policy's rules, never its objects.
pub async fn remove(drivers: &[OpenDriver], scope: &RuleScope, locks: &BucketLocks) -> Result<(), RuleError> {
    for driver in drivers {
        if let Some(rules) = Rules::of(driver) {
            let _bucket = locks.hold(driver).await;
            rules?.remove(&rule_of(driver, scope, 0)).await?;
        }
    }
    Ok(())
}
