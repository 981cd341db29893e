//! Completes on SIGINT or SIGTERM: how Kubernetes stops a container.

pub async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => _ = tokio::signal::ctrl_c().await,
    }
    tracing::info!("shutting down: draining calls in flight");
}
