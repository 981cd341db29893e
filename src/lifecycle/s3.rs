//! The S3 bucket rule that expires a policy's objects: read the bucket's lifecycle
//! configuration, insert or replace our rule by its ID, write it back. Rules we did not write
//! are never changed; a rule of another claimcheck policy whose prefix overlaps ours is
//! reported, not merged. Uses the official AWS SDK (no hand-signed requests).

use std::collections::BTreeMap;

use aws_credential_types::provider::{ProvideCredentials, error::CredentialsError, future};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::BuildError;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration,
    LifecycleRule, LifecycleRuleFilter,
};
use object_store::aws::{AmazonS3ConfigKey, AwsCredentialProvider};

use super::{ExpiryRule, RULE_PREFIX, RuleError};
use crate::driver::s3_builder;

/// One bucket's rules, reached with the driver's own options and credentials.
pub struct S3Rules {
    client: Client,
    bucket: String,
}

impl S3Rules {
    /// `options` are the driver's object_store options, credentials included (lower-cased
    /// environment names such as `aws_access_key_id`). Credentials are found the way the
    /// proxy finds them (static keys, web identity / IRSA, instance metadata), through
    /// object_store's chain, so the rules need no second configuration.
    pub fn new(bucket: &str, options: &BTreeMap<String, String>) -> Result<Self, RuleError> {
        let url = format!("s3://{bucket}");
        let no_credentials = |e: crate::driver::DriverError| RuleError::NoCredentials {
            bucket: url.clone(),
            reason: e.to_string(),
        };
        let builder = s3_builder(&url, options).map_err(no_credentials)?;
        let value = |key| builder.get_config_value(&key);
        let region = value(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".into());
        let virtual_hosted = value(AmazonS3ConfigKey::VirtualHostedStyleRequest).is_some_and(|v| v == "true");
        let endpoint = value(AmazonS3ConfigKey::Endpoint);
        let store = builder.build().map_err(|e| RuleError::NoCredentials {
            bucket: url.clone(),
            reason: e.to_string(),
        })?;
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region))
            .credentials_provider(StoreCredentials(store.credentials().clone()))
            // object_store's default, which the proxy uses: path-style addressing.
            .force_path_style(!virtual_hosted);
        if let Some(endpoint) = endpoint {
            config = config.endpoint_url(endpoint);
        }
        Ok(S3Rules {
            client: Client::from_conf(config.build()),
            bucket: bucket.to_owned(),
        })
    }

    /// Installs or replaces `rule`, leaving every other rule as it is.
    pub async fn apply(&self, rule: &ExpiryRule) -> Result<(), RuleError> {
        let mut rules = self.rules().await?;
        if let Some(other) = rules.iter().find(|r| overlaps_claimcheck_rule(r, rule)) {
            return Err(RuleError::Overlap {
                bucket: format!("s3://{}", self.bucket),
                other: other.id().unwrap_or_default().to_owned(),
                other_prefix: rule_prefix(other).unwrap_or_default().to_owned(),
            });
        }
        let ours = lifecycle_rule(rule).map_err(|e| self.error(e))?;
        // Each reconciliation applies the rule again: a rule already in place costs no write.
        if rules.iter().any(|r| same_rule(r, &ours)) {
            return Ok(());
        }
        rules.retain(|r| r.id() != Some(rule.id.as_str()));
        rules.push(ours);
        self.put(rules).await
    }

    /// Removes our rule (never the objects), leaving every other rule as it is.
    pub async fn remove(&self, id: &str) -> Result<(), RuleError> {
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
    pub async fn rules(&self) -> Result<Vec<LifecycleRule>, RuleError> {
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

    async fn put(&self, rules: Vec<LifecycleRule>) -> Result<(), RuleError> {
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

    fn error(&self, error: impl std::error::Error) -> RuleError {
        // The SDK's display of a service error is its code and message, never the request.
        let mut reason = error.to_string();
        let mut source = error.source();
        while let Some(s) = source {
            reason = format!("{reason}: {s}");
            source = s.source();
        }
        RuleError::Store {
            bucket: format!("s3://{}", self.bucket),
            reason,
        }
    }
}

/// Our rule: objects under the prefix expire after the TTL, and uploads in parts that a proxy
/// left unfinished (it died mid-upload) are aborted after a day, since no expiry reaches them.
fn lifecycle_rule(rule: &ExpiryRule) -> Result<LifecycleRule, BuildError> {
    let days = i32::try_from(rule.days).unwrap_or(i32::MAX);
    let unfinished = AbortIncompleteMultipartUpload::builder()
        .days_after_initiation(1)
        .build();
    LifecycleRule::builder()
        .id(&rule.id)
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix(&rule.prefix).build())
        .expiration(LifecycleExpiration::builder().days(days).build())
        .abort_incomplete_multipart_upload(unfinished)
        .build()
}

/// The same rule as far as the store keeps it: MinIO, for one, drops the abort of unfinished
/// uploads.
fn same_rule(existing: &LifecycleRule, ours: &LifecycleRule) -> bool {
    existing.id() == ours.id()
        && existing.status() == ours.status()
        && rule_prefix(existing) == rule_prefix(ours)
        && existing.expiration() == ours.expiration()
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

/// object_store's credential chain, lent to the AWS SDK.
#[derive(Debug)]
struct StoreCredentials(AwsCredentialProvider);

impl ProvideCredentials for StoreCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let credential = self
                .0
                .get_credential()
                .await
                .map_err(|e| CredentialsError::provider_error(crate::driver::redact(&e.to_string())))?;
            Ok(Credentials::new(
                credential.key_id.clone(),
                credential.secret_key.clone(),
                credential.token.clone(),
                None,
                "claimcheck",
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MinIO accepts the abort element but drops it (checked: it does not read back), so the
    /// rule is checked here as it is sent.
    #[test]
    fn the_rule_expires_objects_and_aborts_unfinished_uploads() {
        let rule = ExpiryRule {
            id: format!("{RULE_PREFIX}billing"),
            prefix: "billing/".into(),
            days: 45,
        };
        let built = lifecycle_rule(&rule).unwrap();
        assert_eq!(built.expiration().and_then(|e| e.days()), Some(45));
        assert_eq!(rule_prefix(&built), Some("billing/"));
        let unfinished = built.abort_incomplete_multipart_upload().unwrap();
        assert_eq!(unfinished.days_after_initiation(), Some(1));
    }
}
