//! The TTL of stored payloads must exceed the longest workflow run plus the namespace's
//! retention (seeds: "TTL > Maximum Workflow Run Timeout + Namespace Retention Period"):
//! a payload written at the start of the longest run is read until its history is gone.
//! Bucket rules count whole days (S3 even rounds up to the next midnight UTC), so the TTL
//! is rounded up to whole days, never down.

use std::time::Duration;

const DAY: u64 = 86_400;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ttl {
    pub days: u64,
    /// How the days were derived, for the policy's status.
    pub derivation: String,
    /// How much longer than run timeout plus retention an object lives: how long after its
    /// write a new reference may still name it without writing it again.
    pub margin: Duration,
}

/// The smallest whole number of days that covers run timeout, retention and grace and is
/// strictly longer than run timeout plus retention, even with no grace.
pub fn effective_ttl(
    run_timeout: Duration,
    retention: Duration,
    grace: Duration,
    retention_source: &str,
) -> Ttl {
    let must_exceed = run_timeout.as_secs().saturating_add(retention.as_secs());
    let wanted = must_exceed.saturating_add(grace.as_secs());
    let mut days = wanted.div_ceil(DAY);
    if days.saturating_mul(DAY) <= must_exceed {
        days += 1;
    }
    let derivation = format!(
        "{} run timeout + {} retention ({retention_source}) + {} grace, rounded up to whole days",
        human(run_timeout),
        human(retention),
        human(grace)
    );
    let margin = Duration::from_secs(days.saturating_mul(DAY).saturating_sub(must_exceed));
    Ttl {
        days,
        derivation,
        margin,
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s.is_multiple_of(DAY) => format!("{}d", s / DAY),
        _ if s.is_multiple_of(3_600) => format!("{}h", s / 3_600),
        _ if s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn days(n: u64) -> Duration {
        Duration::from_secs(n * DAY)
    }

    #[test]
    fn the_seeds_example() {
        // "a Run Timeout of 14 days and a retention period of 30 days: at least 44 days".
        let ttl = effective_ttl(days(14), days(30), Duration::ZERO, "namespace");
        assert_eq!(ttl.days, 45, "strictly more than 44 days");
        assert_eq!(effective_ttl(days(14), days(30), days(1), "namespace").days, 45);
        assert_eq!(
            effective_ttl(days(14), days(30), Duration::from_secs(3_600), "x").days,
            45
        );
        assert!(
            ttl.derivation
                .starts_with("14d run timeout + 30d retention (namespace) + 0d grace")
        );
    }

    proptest! {
        /// Whatever the inputs, the TTL exceeds run timeout plus retention and covers the grace.
        #[test]
        fn the_ttl_always_exceeds_run_timeout_plus_retention(run in 0u64..10_000_000_000, retention in 0u64..10_000_000_000, grace in 0u64..1_000_000_000) {
            let ttl = effective_ttl(Duration::from_secs(run), Duration::from_secs(retention), Duration::from_secs(grace), "test");
            prop_assert!(ttl.days * DAY > run + retention);
            prop_assert!(ttl.days * DAY >= run + retention + grace);
            prop_assert!((ttl.days - 1) * DAY < (run + retention + grace).max(run + retention + 1), "not a day more than needed");
            prop_assert_eq!(run + retention + ttl.margin.as_secs(), ttl.days * DAY, "the margin is what the days leave");
            prop_assert!(ttl.margin >= Duration::from_secs(grace));
        }
    }
}
