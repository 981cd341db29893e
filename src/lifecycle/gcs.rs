//! The GCS bucket rule that expires a policy's objects, through the JSON API: read the
//! bucket's lifecycle rules and metageneration, replace our rule, write the rules back only
//! if the bucket has not changed since (`ifMetagenerationMatch`), else read again. GCS rules
//! have no ID: a Delete rule matching exactly our prefix (one Temporal namespace's objects)
//! is ours; every other rule is left as it is.

use std::collections::BTreeMap;

use object_store::gcp::{GcpCredentialProvider, GoogleConfigKey};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{ExpiryRule, RuleError};
use crate::driver::gcs_builder;

const DEFAULT_BASE_URL: &str = "https://storage.googleapis.com";
/// Concurrent writers each re-read and retry; a few rounds settle any realistic race.
const ATTEMPTS: usize = 5;

/// One bucket's rules, reached with the driver's own options and credentials.
pub struct GcsRules {
    http: reqwest::Client,
    credentials: GcpCredentialProvider,
    /// `{base}/storage/v1/b/{bucket}`.
    bucket_url: String,
    bucket: String,
}

impl GcsRules {
    /// `options` are the driver's object_store options, credentials included; credentials
    /// are found the way the proxy finds them (service account key, workload identity,
    /// metadata server). An emulator is named by the key's `gcs_base_url`, as object_store
    /// reads it.
    pub fn new(bucket: &str, options: &BTreeMap<String, String>) -> Result<Self, RuleError> {
        let url = format!("gs://{bucket}");
        let no_credentials = |reason: String| RuleError::NoCredentials {
            bucket: url.clone(),
            reason,
        };
        let builder = gcs_builder(&url, options).map_err(|e| no_credentials(e.to_string()))?;
        let base = builder
            .get_config_value(&GoogleConfigKey::ServiceAccountKey)
            .and_then(|key| serde_json::from_str::<Value>(&key).ok())
            .and_then(|key| key.get("gcs_base_url")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
        let store = builder.build().map_err(|e| no_credentials(e.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| no_credentials(e.to_string()))?;
        Ok(GcsRules {
            http,
            credentials: store.credentials().clone(),
            bucket_url: format!("{}/storage/v1/b/{bucket}", base.trim_end_matches('/')),
            bucket: url,
        })
    }

    /// Installs or replaces our rule, leaving every other rule as it is.
    pub async fn apply(&self, rule: &ExpiryRule) -> Result<(), RuleError> {
        let ours = json!({
            "action": {"type": "Delete"},
            "condition": {"age": rule.days, "matchesPrefix": [rule.prefix]},
        });
        self.update(&rule.prefix, Some(ours)).await
    }

    /// Removes our rule (never the objects), leaving every other rule as it is.
    pub async fn remove(&self, prefix: &str) -> Result<(), RuleError> {
        self.update(prefix, None).await
    }

    /// The bucket's rules, as the store reports them.
    pub async fn rules(&self) -> Result<Vec<Value>, RuleError> {
        Ok(self.read().await?.0)
    }

    async fn update(&self, prefix: &str, ours: Option<Value>) -> Result<(), RuleError> {
        for _ in 0..ATTEMPTS {
            let (mut rules, metageneration) = self.read().await?;
            let before = rules.len();
            rules.retain(|r| !is_rule_for(r, prefix));
            if ours.is_none() && rules.len() == before {
                return Ok(());
            }
            rules.extend(ours.clone());
            match self.write(rules, &metageneration).await? {
                Written::Yes => return Ok(()),
                Written::Raced => continue,
            }
        }
        Err(self.error(format!(
            "the bucket changed under every one of {ATTEMPTS} attempts"
        )))
    }

    async fn read(&self) -> Result<(Vec<Value>, String), RuleError> {
        let request = self
            .http
            .get(format!("{}?fields=lifecycle,metageneration", self.bucket_url));
        let body = self
            .send(request)
            .await?
            .bytes()
            .await
            .map_err(|e| self.error(e))?;
        let bucket: Value = serde_json::from_slice(&body).map_err(|e| self.error(e))?;
        let rules = bucket
            .pointer("/lifecycle/rule")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let metageneration = match &bucket["metageneration"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Ok((rules, metageneration))
    }

    async fn write(&self, rules: Vec<Value>, metageneration: &str) -> Result<Written, RuleError> {
        let request = self
            .http
            .patch(format!(
                "{}?ifMetagenerationMatch={metageneration}",
                self.bucket_url
            ))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(json!({"lifecycle": {"rule": rules}}).to_string());
        let response = self.authorized(request).await?;
        if response.status() == StatusCode::PRECONDITION_FAILED {
            return Ok(Written::Raced);
        }
        self.success(response).await.map(|_| Written::Yes)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, RuleError> {
        let response = self.authorized(request).await?;
        self.success(response).await
    }

    async fn authorized(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, RuleError> {
        let credential = self
            .credentials
            .get_credential()
            .await
            .map_err(|e| self.error(crate::driver::redact(&e.to_string())))?;
        let request = match credential.bearer.as_str() {
            "" => request,
            bearer => request.bearer_auth(bearer),
        };
        request.send().await.map_err(|e| self.error(e))
    }

    async fn success(&self, response: reqwest::Response) -> Result<reqwest::Response, RuleError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        // GCS's error body is JSON with a message; it never echoes credentials.
        let body = response.bytes().await.unwrap_or_default();
        let body: Value = serde_json::from_slice(&body).unwrap_or_default();
        let message = body
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("");
        Err(self.error(format!("{status} {message}").trim_end().to_owned()))
    }

    fn error(&self, reason: impl ToString) -> RuleError {
        RuleError::Store {
            bucket: self.bucket.clone(),
            reason: reason.to_string(),
        }
    }
}

enum Written {
    Yes,
    Raced,
}

/// Whether `rule` is the Delete rule of exactly `prefix`.
fn is_rule_for(rule: &Value, prefix: &str) -> bool {
    rule.pointer("/action/type").and_then(Value::as_str) == Some("Delete")
        && rule.pointer("/condition/matchesPrefix") == Some(&json!([prefix]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_delete_rule_of_exactly_our_prefix_is_ours() {
        let rule = |action: &str, prefixes: Value| json!({"action": {"type": action}, "condition": {"age": 3, "matchesPrefix": prefixes}});
        let ours = "v0/ns/billing/";
        assert!(is_rule_for(&rule("Delete", json!([ours])), ours));
        assert!(!is_rule_for(&rule("SetStorageClass", json!([ours])), ours));
        assert!(!is_rule_for(&rule("Delete", json!([ours, "logs/"])), ours));
        assert!(!is_rule_for(&rule("Delete", json!(["v0/ns/"])), ours));
        assert!(!is_rule_for(
            &json!({"action": {"type": "Delete"}, "condition": {"age": 3}}),
            ours
        ));
    }
}
