//! The filesystem's lifecycle rule: a store on a volume has no bucket rules, so the proxy
//! sidecar deletes what it wrote there once it is older than the TTL. Only objects under
//! the driver's own `{prefix}v0/` are ever considered.

use std::time::{Duration, SystemTime};

use crate::driver::{Driver, StoreError};

/// Deletes this driver's objects older than `ttl`; returns how many went.
pub async fn sweep(driver: &Driver, ttl: Duration) -> Result<usize, StoreError> {
    let cutoff = SystemTime::now()
        .checked_sub(ttl)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let expired = driver.written_before(cutoff).await?;
    for key in &expired {
        driver.delete(key).await?;
    }
    Ok(expired.len())
}

/// Sweeps every hour, for as long as the proxy runs.
pub async fn run(driver: Driver, ttl: Duration) {
    let mut every = tokio::time::interval(Duration::from_secs(3_600));
    loop {
        every.tick().await;
        match sweep(&driver, ttl).await {
            Ok(0) => {}
            Ok(deleted) => {
                tracing::info!(deleted, store = %driver.object_name(driver.prefix()), "expired payloads deleted")
            }
            Err(e) => tracing::warn!(error = %e, "janitor sweep failed; will try again"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn age(path: &std::path::Path, days: u64) {
        let when = SystemTime::now() - Duration::from_secs(days * 86_400);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }

    #[tokio::test]
    async fn only_expired_objects_under_the_prefix_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let driver = Driver::open(&url, "billing", &Default::default()).unwrap();
        let write = |rel: &str, days: u64| {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"x").unwrap();
            age(&path, days);
            path
        };
        let old = write("billing/v0/ns/default/d/sha256/old", 10);
        let young = write("billing/v0/ns/default/d/sha256/young", 1);
        let other_prefix = write("payroll/v0/ns/default/d/sha256/old", 10);
        let not_ours = write("billing/backup/old", 10);

        assert_eq!(sweep(&driver, Duration::from_secs(5 * 86_400)).await.unwrap(), 1);
        assert!(!old.exists(), "expired and ours: deleted");
        assert!(young.exists() && other_prefix.exists() && not_ours.exists());
    }
}
