//! Conditions in the kstatus style: Ready, Reconciling, Stalled, StorageVerified,
//! LifecycleConfigured, each with a reason a user can act on.

use crate::policy::Condition;

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
pub const STORAGE_VERIFIED: &str = "StorageVerified";
pub const LIFECYCLE_CONFIGURED: &str = "LifecycleConfigured";

/// One condition's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub type_: &'static str,
    pub ok: bool,
    pub reason: String,
    pub message: String,
}

impl Verdict {
    pub fn new(type_: &'static str, ok: bool, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Verdict {
            type_,
            ok,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// The conditions for `verdicts`, keeping each one's transition time while its status holds.
pub fn conditions(verdicts: &[Verdict], previous: &[Condition], generation: Option<i64>) -> Vec<Condition> {
    let now = jiff::Timestamp::now().to_string();
    verdicts
        .iter()
        .map(|v| {
            let status = if v.ok { "True" } else { "False" }.to_owned();
            let since = previous
                .iter()
                .find(|c| c.type_ == v.type_ && c.status == status)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Condition {
                type_: v.type_.to_owned(),
                status,
                reason: v.reason.clone(),
                message: v.message.clone(),
                last_transition_time: since,
                observed_generation: generation,
            }
        })
        .collect()
}
