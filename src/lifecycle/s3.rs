//! The S3 bucket rule that expires a policy's objects: read the bucket's lifecycle
//! configuration, insert or replace our rule by its ID, write it back. Rules we did not write
//! are never changed; a rule of another claimcheck policy whose prefix overlaps ours is
//! reported, not merged. Uses the official AWS SDK (no hand-signed requests).

use std::collections::BTreeMap;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter,
};

/// The ID prefix of every rule claimcheck writes.
pub const RULE_PREFIX: &str = "claimcheck-";

#[derive(Debug, thiserror::Error)]
pub enum S3RuleError {
    #[error("s3://{bucket}: {reason}")]
    Store { bucket: String, reason: String },
    #[error(
        "s3://{bucket}: the rule would overlap rule {other:?} of another claimcheck policy (prefix {other_prefix:?})"
    )]
    Overlap {
        bucket: String,
        other: String,
        other_prefix: String,
    },
    #[error(
        "s3://{bucket}: this version needs static credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) to manage bucket rules"
    )]
    NoCredentials { bucket: String },
}

/// One bucket's rules, reached with the driver's own options and credentials.
pub struct S3Rules {
    client: Client,
    bucket: String,
}

/// Our rule: objects under `prefix` expire after `days`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryRule {
    pub id: String,
    pub prefix: String,
    pub days: u64,
}

impl S3Rules {
    /// `options` are the driver's object_store options, credentials included (lower-cased
    /// environment names such as `aws_access_key_id`).
    pub fn new(bucket: &str, options: &BTreeMap<String, String>) -> Result<Self, S3RuleError> {
        let get = |keys: &[&str]| keys.iter().find_map(|k| options.get(*k)).cloned();
        let (Some(key), Some(secret)) = (
            get(&["aws_access_key_id", "access_key_id"]),
            get(&["aws_secret_access_key", "secret_access_key"]),
        ) else {
            return Err(S3RuleError::NoCredentials {
                bucket: bucket.to_owned(),
            });
        };
        let credentials = Credentials::new(
            key,
            secret,
            get(&["aws_session_token", "session_token", "token"]),
            None,
            "claimcheck",
        );
        let region =
            get(&["aws_region", "region", "aws_default_region"]).unwrap_or_else(|| "us-east-1".into());
        let virtual_hosted = get(&["aws_virtual_hosted_style_request", "virtual_hosted_style_request"])
            .is_some_and(|v| v == "true");
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region))
            .credentials_provider(credentials)
            // object_store's default, which the proxy uses: path-style addressing.
            .force_path_style(!virtual_hosted);
        if let Some(endpoint) = get(&["aws_endpoint", "endpoint", "aws_endpoint_url", "endpoint_url"]) {
            config = config.endpoint_url(endpoint);
        }
        Ok(S3Rules {
            client: Client::from_conf(config.build()),
            bucket: bucket.to_owned(),
        })
    }

    /// Installs or replaces `rule`, leaving every other rule as it is.
    pub async fn apply(&self, rule: &ExpiryRule) -> Result<(), S3RuleError> {
        let mut rules = self.rules().await?;
        if let Some(other) = rules.iter().find(|r| overlaps_claimcheck_rule(r, rule)) {
            return Err(S3RuleError::Overlap {
                bucket: self.bucket.clone(),
                other: other.id().unwrap_or_default().to_owned(),
                other_prefix: rule_prefix(other).unwrap_or_default().to_owned(),
            });
        }
        rules.retain(|r| r.id() != Some(rule.id.as_str()));
        rules.push(self.to_rule(rule)?);
        self.put(rules).await
    }

    /// Removes our rule (never the objects), leaving every other rule as it is.
    pub async fn remove(&self, id: &str) -> Result<(), S3RuleError> {
        let mut rules = self.rules().await?;
        let before = rules.len();
        rules.retain(|r| r.id() != Some(id));
        if rules.len() == before {
            return Ok(());
        }
        if rules.is_empty() {
            let deleted = self
                .client
                .delete_bucket_lifecycle()
                .bucket(&self.bucket)
                .send()
                .await;
            return deleted.map(|_| ()).map_err(|e| self.error(e));
        }
        self.put(rules).await
    }

    /// The bucket's rules, as the store reports them.
    pub async fn rules(&self) -> Result<Vec<LifecycleRule>, S3RuleError> {
        match self
            .client
            .get_bucket_lifecycle_configuration()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(out) => Ok(out.rules().to_vec()),
            Err(e)
                if e.as_service_error().and_then(|s| s.meta().code())
                    == Some("NoSuchLifecycleConfiguration") =>
            {
                Ok(Vec::new())
            }
            Err(e) => Err(self.error(e)),
        }
    }

    async fn put(&self, rules: Vec<LifecycleRule>) -> Result<(), S3RuleError> {
        let configuration = BucketLifecycleConfiguration::builder()
            .set_rules(Some(rules))
            .build()
            .map_err(|e| self.error(e))?;
        let put = self
            .client
            .put_bucket_lifecycle_configuration()
            .bucket(&self.bucket)
            .lifecycle_configuration(configuration);
        put.send().await.map(|_| ()).map_err(|e| self.error(e))
    }

    fn to_rule(&self, rule: &ExpiryRule) -> Result<LifecycleRule, S3RuleError> {
        let days = i32::try_from(rule.days).unwrap_or(i32::MAX);
        LifecycleRule::builder()
            .id(&rule.id)
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix(&rule.prefix).build())
            .expiration(LifecycleExpiration::builder().days(days).build())
            .build()
            .map_err(|e| self.error(e))
    }

    fn error(&self, error: impl std::error::Error) -> S3RuleError {
        // The SDK's display of a service error is its code and message, never the request.
        let mut reason = error.to_string();
        let mut source = error.source();
        while let Some(s) = source {
            reason = format!("{reason}: {s}");
            source = s.source();
        }
        S3RuleError::Store {
            bucket: self.bucket.clone(),
            reason,
        }
    }
}

fn rule_prefix(rule: &LifecycleRule) -> Option<&str> {
    rule.filter().and_then(|f| f.prefix())
}

/// Another policy's claimcheck rule whose prefix contains ours or is contained in it.
fn overlaps_claimcheck_rule(existing: &LifecycleRule, ours: &ExpiryRule) -> bool {
    let Some(id) = existing.id() else { return false };
    if !id.starts_with(RULE_PREFIX) || id == ours.id {
        return false;
    }
    rule_prefix(existing).is_some_and(|p| p.starts_with(&ours.prefix) || ours.prefix.starts_with(p))
}
