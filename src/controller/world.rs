//! What the reconciler needs from outside the policy: Secrets, Temporal's retention and the
//! buckets' rules. [`Live`] is the real thing; the reconciler's unit tests put their own
//! world in its place, so the state machine is tested without a cluster.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;

use super::OpenDriver;
use super::rules::{self, BucketLocks, RuleScope};
use super::status::Verdict;
use crate::lifecycle::Ttl;
use crate::proxy::UpstreamTls;

/// A Secret's data by key.
pub type SecretData = BTreeMap<String, Vec<u8>>;

pub trait World: Send + Sync + 'static {
    /// The data of Secret `namespace/name`; `Ok(None)` when it does not exist.
    fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<SecretData>, String>> + Send;

    /// The retention of Temporal namespace `namespace` at `address`.
    fn retention(
        &self,
        address: &str,
        namespace: &str,
        tls: Option<UpstreamTls>,
    ) -> impl Future<Output = Result<Duration, String>> + Send;

    /// Installs the policy's bucket rules; the verdict is LifecycleConfigured's.
    fn apply_rules(
        &self,
        drivers: &[OpenDriver],
        ttl: &Ttl,
        scope: &RuleScope,
    ) -> impl Future<Output = Verdict> + Send;

    /// Removes the policy's bucket rules, never the objects.
    fn remove_rules(
        &self,
        drivers: &[OpenDriver],
        scope: &RuleScope,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// The cluster, Temporal and the stores themselves.
pub struct Live {
    pub client: Client,
    pub buckets: BucketLocks,
}

impl Live {
    pub fn new(client: Client) -> Self {
        Live {
            client,
            buckets: BucketLocks::default(),
        }
    }
}

/// How long Temporal gets to answer DescribeNamespace.
const TEMPORAL_TIMEOUT: Duration = Duration::from_secs(10);

impl World for Live {
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<SecretData>, String> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = api.get_opt(name).await.map_err(|e| e.to_string())?;
        Ok(secret.map(|s| {
            s.data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect()
        }))
    }

    async fn retention(
        &self,
        address: &str,
        namespace: &str,
        tls: Option<UpstreamTls>,
    ) -> Result<Duration, String> {
        let channel = crate::proxy::connect(address, tls.as_ref()).map_err(|e| e.to_string())?;
        let lookup = crate::temporal::namespace_retention(channel, address, namespace);
        match tokio::time::timeout(TEMPORAL_TIMEOUT, lookup).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!(
                "Temporal at {address} did not answer within {} s",
                TEMPORAL_TIMEOUT.as_secs()
            )),
        }
    }

    async fn apply_rules(&self, drivers: &[OpenDriver], ttl: &Ttl, scope: &RuleScope) -> Verdict {
        rules::apply(drivers, ttl, scope, &self.buckets).await
    }

    async fn remove_rules(&self, drivers: &[OpenDriver], scope: &RuleScope) -> Result<(), String> {
        rules::remove(drivers, scope, &self.buckets)
            .await
            .map_err(|e| e.to_string())
    }
}
