//! When each policy is evaluated again, and which evaluation stands until then.
//!
//! Evaluating a policy probes its stores. The status written from an evaluation is itself a
//! change of the policy, which the controller's watch sees and reconciles: that reconciliation
//! finds the evaluation standing and probes nothing, writes nothing but the ConfigMap (a no-op
//! unless someone edited it). A policy is evaluated anew when its spec changes, or when it is
//! due: soon when it is not Ready; when it is, at its own moment of the probe interval, so that
//! a round of probes spreads over the interval instead of hitting the stores at once (policies
//! created together, every policy after the operator restarts).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use super::evaluate::Evaluation;
use crate::policy::{PayloadStoragePolicySpec, parse_duration};

/// The probe interval of a spec whose interval the API server let through unparsable.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
/// The bounds of a probe interval: no busy loop, and time arithmetic far from overflow.
const SHORTEST_INTERVAL: Duration = Duration::from_secs(1);
const LONGEST_INTERVAL: Duration = Duration::from_secs(365 * 86_400);

/// The last evaluation of each policy, by UID.
#[derive(Default)]
pub struct Schedule {
    entries: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    generation: Option<i64>,
    due: Instant,
    evaluation: Arc<Evaluation>,
}

impl Schedule {
    /// The policy's evaluation while it is not due and its spec has not changed, with the
    /// time left until it is due.
    pub fn current(&self, uid: &str, generation: Option<i64>) -> Option<(Arc<Evaluation>, Duration)> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(uid).filter(|e| e.generation == generation)?;
        let left = entry.due.checked_duration_since(Instant::now())?;
        (!left.is_zero()).then(|| (entry.evaluation.clone(), left))
    }

    /// Keeps `evaluation` of the policy at `generation` until `wait` from now.
    pub fn record(&self, uid: &str, generation: Option<i64>, evaluation: Arc<Evaluation>, wait: Duration) {
        let entry = Entry {
            generation,
            due: Instant::now() + wait,
            evaluation,
        };
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.insert(uid.to_owned(), entry);
    }

    pub fn forget(&self, uid: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.remove(uid);
    }
}

/// The spec's probe interval, within a second and a year.
pub fn interval(spec: &PayloadStoragePolicySpec) -> Duration {
    let interval = parse_duration(&spec.probe.interval).unwrap_or(DEFAULT_INTERVAL);
    interval.clamp(SHORTEST_INTERVAL, LONGEST_INTERVAL)
}

/// How long until a policy is evaluated again. Not Ready: `retry`, at most its interval.
/// Ready: until the policy's moment of the interval, which its UID fixes, and at least half an
/// interval from now, so probes stay between half an interval and one and a half apart, and
/// exactly an interval once the policy keeps to its moment.
pub fn next_look(interval: Duration, ready: bool, retry: Duration, uid: &str, now: SystemTime) -> Duration {
    if !ready {
        return retry.min(interval);
    }
    let period = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX).max(1);
    let digest = Sha256::digest(uid.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let moment = u64::from_be_bytes(first) % period;
    let since_epoch = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let phase = u64::try_from(since_epoch.as_millis() % u128::from(period)).unwrap_or(0);
    // Both below `period`, which an interval of a year keeps far from overflow.
    let mut wait = (moment + period - phase) % period;
    if wait < period / 2 {
        wait += period;
    }
    Duration::from_millis(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + seconds)
    }

    #[test]
    fn policies_created_together_spread_their_probes_over_the_interval() {
        let policies = 500;
        let mut per_second = [0usize; 60];
        for i in 0..policies {
            let wait = next_look(MINUTE, true, MINUTE, &format!("uid-{i}"), at(0));
            assert!(wait >= MINUTE / 2 && wait < MINUTE * 3 / 2, "{wait:?}");
            per_second[(wait.as_secs() % 60) as usize] += 1;
        }
        let even = policies as f64 / 60.0;
        let busiest = *per_second.iter().max().unwrap() as f64;
        assert!(
            busiest <= 2.5 * even,
            "busiest second {busiest}, even {even:.1}: {per_second:?}"
        );
        assert!(per_second.iter().all(|n| *n > 0), "{per_second:?}");
    }

    #[test]
    fn a_policy_keeps_to_its_moment_an_interval_apart() {
        let first = next_look(MINUTE, true, MINUTE, "uid", at(7));
        let probed = at(7) + first;
        assert_eq!(next_look(MINUTE, true, MINUTE, "uid", probed), MINUTE);
    }

    #[test]
    fn an_interval_is_taken_within_a_second_and_a_year() {
        let spec = |interval: &str| -> PayloadStoragePolicySpec {
            serde_json::from_value(serde_json::json!({
                "temporal": {"address": "temporal:7233", "namespace": "billing"},
                "drivers": [{"name": "hot", "url": "memory://"}],
                "probe": {"interval": interval},
            }))
            .unwrap()
        };
        assert_eq!(interval(&spec("0s")), SHORTEST_INTERVAL);
        assert_eq!(interval(&spec("2m")), Duration::from_secs(120));
        assert_eq!(interval(&spec("99999999999999d")), LONGEST_INTERVAL);
        let far = next_look(interval(&spec("99999999999999d")), true, MINUTE, "uid", at(0));
        assert!(far <= LONGEST_INTERVAL * 3 / 2);
    }

    #[test]
    fn a_policy_not_ready_is_looked_at_again_soon() {
        let retry = Duration::from_secs(10);
        assert_eq!(next_look(MINUTE, false, retry, "uid", at(0)), retry);
        assert_eq!(
            next_look(Duration::from_secs(5), false, retry, "uid", at(0)),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn an_evaluation_stands_until_due_or_until_the_spec_changes() {
        let schedule = Schedule::default();
        let evaluation = Arc::new(Evaluation {
            verdicts: Vec::new(),
            ttl: None,
            probe: None,
        });
        schedule.record("uid", Some(1), evaluation.clone(), MINUTE);
        let (current, left) = schedule.current("uid", Some(1)).unwrap();
        assert!(Arc::ptr_eq(&current, &evaluation));
        assert!(left <= MINUTE && left > MINUTE / 2);
        assert!(schedule.current("uid", Some(2)).is_none(), "a new generation");
        schedule.record("uid", Some(1), evaluation, Duration::ZERO);
        assert!(schedule.current("uid", Some(1)).is_none(), "due");
        schedule.forget("uid");
        assert!(schedule.current("uid", Some(1)).is_none());
    }
}
