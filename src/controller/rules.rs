//! The bucket rules of a policy: one expiry rule per S3 driver, under the prefix the
//! policy's Temporal namespace writes to; `file://` drivers are expired by the sidecar's
//! janitor, configured through the rendered proxy configuration.

use crate::driver::{FILE, S3};
use crate::lifecycle::{ExpiryRule, RULE_PREFIX, S3Rules, Ttl};
use crate::reference::namespace_scope;

use super::OpenDriver;
use super::status::{LIFECYCLE_CONFIGURED, Verdict};

/// The rule ID of one driver of one policy; stable, so a re-apply replaces the rule.
fn rule_id(k8s_namespace: &str, policy: &str, driver: &str) -> String {
    format!("{RULE_PREFIX}{k8s_namespace}-{policy}-{driver}")
}

fn s3_rules(driver: &OpenDriver) -> Option<Result<S3Rules, String>> {
    (driver.tier.driver.name() == S3.name).then(|| {
        let bucket = driver.tier.driver.bucket().unwrap_or_default();
        S3Rules::new(bucket, &driver.config.options).map_err(|e| e.to_string())
    })
}

/// Installs the rules; the verdict says what was installed, or what to install by hand.
pub async fn apply(
    drivers: &[OpenDriver],
    ttl: &Ttl,
    temporal_namespace: &str,
    k8s_namespace: &str,
    policy: &str,
) -> Verdict {
    let mut installed = Vec::new();
    let mut by_hand = Vec::new();
    for driver in drivers {
        let prefix = namespace_scope(driver.tier.driver.prefix(), temporal_namespace);
        let location = driver.tier.driver.object_name(&prefix);
        if driver.tier.driver.name() == FILE.name {
            installed.push(format!(
                "{location} after {} days (the sidecar's janitor)",
                ttl.days
            ));
            continue;
        }
        let Some(rules) = s3_rules(driver) else {
            by_hand.push(location);
            continue;
        };
        let rule = ExpiryRule {
            id: rule_id(k8s_namespace, policy, &driver.name),
            prefix,
            days: ttl.days,
        };
        let applied = match rules {
            Ok(rules) => rules.apply(&rule).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match applied {
            Ok(()) => installed.push(format!("{location} after {} days (rule {})", ttl.days, rule.id)),
            Err(e) => return Verdict::new(LIFECYCLE_CONFIGURED, false, "RuleFailed", e),
        }
    }
    if by_hand.is_empty() {
        return Verdict::new(
            LIFECYCLE_CONFIGURED,
            true,
            "RuleInstalled",
            format!("objects expire: {}", installed.join("; ")),
        );
    }
    Verdict::new(
        LIFECYCLE_CONFIGURED,
        false,
        "RuleNotInstalled",
        format!(
            "this version installs S3 rules only: expire {} after {} days",
            by_hand.join(", "),
            ttl.days
        ),
    )
}

/// Removes the policy's rules, never its objects.
pub async fn remove(drivers: &[OpenDriver], k8s_namespace: &str, policy: &str) -> Result<(), String> {
    for driver in drivers {
        if let Some(rules) = s3_rules(driver) {
            rules?
                .remove(&rule_id(k8s_namespace, policy, &driver.name))
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
