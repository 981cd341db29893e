//! Leader election by Lease: every replica runs, only the holder of the Lease reconciles
//! (and so writes status); when it stops renewing, another takes over within the lease
//! duration.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;

const LEASE: &str = "claimcheck-controller";

#[derive(Debug, Clone)]
pub struct Election {
    /// The namespace of the Lease: the operator's own.
    pub namespace: String,
    /// This replica's name, unique among replicas (the pod name).
    pub identity: String,
    pub lease_duration: Duration,
}

/// Runs the controller whenever this replica holds the Lease, until SIGTERM or SIGINT.
pub async fn run(
    client: Client,
    election: Election,
    options: super::Options,
) -> Result<(), kube_lease_manager::LeaseManagerError> {
    let telemetry = options.telemetry.clone();
    let seconds = election.lease_duration.as_secs().max(2);
    let manager = LeaseManagerBuilder::new(client.clone(), LEASE)
        .with_namespace(&election.namespace)
        .with_identity(&election.identity)
        .with_duration(seconds)
        .with_grace((seconds / 3).max(1))
        .build()
        .await?;
    // The Lease was read or created: the API server answers.
    telemetry.set_ready();
    let (mut leading, _renewal) = manager.watch().await;
    loop {
        while !*leading.borrow_and_update() {
            if leading.changed().await.is_err() {
                return Ok(());
            }
        }
        tracing::info!(identity = %election.identity, "leading: reconciling policies");
        let lost = async {
            while *leading.borrow_and_update() {
                if leading.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            () = super::run(client.clone(), &election.identity, options.clone()) => return Ok(()),
            () = lost => {
                tracing::warn!(identity = %election.identity, "lost the lease: stopped reconciling");
                telemetry.forget_policies();
            }
        }
    }
}
