//! The connection to the Temporal frontend: plaintext, TLS or mutual TLS.

use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// PEM material for TLS to the frontend; with no CA, the system roots are trusted.
#[derive(Debug, Clone, Default)]
pub struct UpstreamTls {
    pub ca_pem: Option<Vec<u8>>,
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Vec<u8>>,
    pub server_name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("invalid upstream address {address:?}: {reason}")]
    Address { address: String, reason: String },
    #[error("TLS to the upstream: {0}")]
    Tls(String),
}

/// A lazily connecting channel: the proxy starts even while the frontend is down, and
/// calls fail with UNAVAILABLE until it is up.
pub fn connect(address: &str, tls: Option<&UpstreamTls>) -> Result<Channel, UpstreamError> {
    let url = if address.contains("://") {
        address.to_owned()
    } else if tls.is_some() {
        format!("https://{address}")
    } else {
        format!("http://{address}")
    };
    let bad = |reason: String| UpstreamError::Address {
        address: address.to_owned(),
        reason,
    };
    let mut endpoint = Endpoint::from_shared(url)
        .map_err(|e| bad(e.to_string()))?
        .tcp_nodelay(true)
        // Large payloads cross this hop whole; small windows would throttle them.
        .initial_stream_window_size(Some(8 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect_timeout(Duration::from_secs(10));
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls_config(tls)?)
            .map_err(|e| UpstreamError::Tls(e.to_string()))?;
    }
    Ok(endpoint.connect_lazy())
}

fn tls_config(tls: &UpstreamTls) -> Result<ClientTlsConfig, UpstreamError> {
    let mut config = ClientTlsConfig::new();
    config = match &tls.ca_pem {
        Some(ca) => config.ca_certificate(Certificate::from_pem(ca)),
        None => config.with_native_roots(),
    };
    match (&tls.client_cert_pem, &tls.client_key_pem) {
        (Some(cert), Some(key)) => config = config.identity(Identity::from_pem(cert, key)),
        (None, None) => {}
        _ => {
            return Err(UpstreamError::Tls(
                "a client certificate needs its key, and the other way round".into(),
            ));
        }
    }
    if let Some(name) = &tls.server_name {
        config = config.domain_name(name.clone());
    }
    Ok(config)
}
