//! TLS: the process-wide crypto provider, and the certificate a server presents (the
//! webhook's, the codec server's).

use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Selects ring for every rustls client and server that does not pick its own. The cloud
/// store clients bring aws-lc-rs too, and rustls refuses to guess between two providers.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[derive(Debug, thiserror::Error)]
#[error("unusable certificate or key: {0}")]
pub struct UnusableCert(String);

/// The certificate the TLS server presents, replaced in place on renewal: connections
/// already open keep theirs, new ones get the new one.
#[derive(Debug)]
pub struct ServingCert(RwLock<Arc<CertifiedKey>>);

impl ServingCert {
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, UnusableCert> {
        Ok(ServingCert(RwLock::new(certified_key(cert_pem, key_pem)?)))
    }

    pub fn replace(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<(), UnusableCert> {
        let key = certified_key(cert_pem, key_pem)?;
        match self.0.write() {
            Ok(mut current) => *current = key,
            Err(poisoned) => *poisoned.into_inner() = key,
        }
        Ok(())
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().ok().map(|key| key.clone())
    }
}

fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>, UnusableCert> {
    let load = |e: &dyn std::fmt::Display| UnusableCert(e.to_string());
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| load(&e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| load(&e))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| load(&e))?;
    Ok(Arc::new(CertifiedKey::new(chain, signer)))
}
