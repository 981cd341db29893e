//! The process-wide TLS crypto provider.

/// Selects ring for every rustls client and server that does not pick its own. The cloud
/// store clients bring aws-lc-rs too, and rustls refuses to guess between two providers.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
