//! The webhook's TLS: a CA and a serving certificate that the operator makes itself and
//! keeps in a Secret, so that every replica serves the same certificate and the
//! MutatingWebhookConfiguration's `caBundle` names the CA. The serving certificate is
//! renewed, by the same CA, once a third of its lifetime is left: the API server keeps
//! trusting the old one and the new one alike, so no admission is dropped. Where
//! cert-manager issues the certificate instead, the replicas only read its files.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot issue a certificate: {0}")]
    Issue(#[from] rcgen::Error),
    #[error(transparent)]
    Load(#[from] crate::tls::UnusableCert),
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum CertSource {
    /// The operator issues it and keeps it in Secret `namespace/name`.
    Managed {
        namespace: String,
        name: String,
        /// The serving certificate's lifetime; the CA lives a hundred times longer.
        lifetime: Duration,
        /// The names the API server dials (the Service's DNS names, or 127.0.0.1).
        dns_names: Vec<String>,
        /// The installed MutatingWebhookConfiguration whose caBundle carries the CA.
        configuration: String,
    },
    /// cert-manager (or anything else) writes `tls.crt` and `tls.key` here.
    Files(PathBuf),
}

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const TLS_CERT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";
/// When the serving certificate expires (Unix seconds), so that renewal needs no X.509 parser.
const NOT_AFTER: &str = "claimcheck.dev/not-after";
/// The names it is for, comma-separated.
const DNS_NAMES: &str = "claimcheck.dev/dns-names";

/// The CA and serving certificate, as PEM.
#[derive(Clone, PartialEq)]
pub struct Certificates {
    pub ca_pem: String,
    ca_key_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// Unix seconds.
    pub not_after: u64,
    /// The names the serving certificate is for; a change calls for a new one.
    pub dns_names: Vec<String>,
}

/// Never the keys.
impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("not_after", &self.not_after)
            .field("dns_names", &self.dns_names)
            .finish_non_exhaustive()
    }
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The CA's subject and powers; the issuer of a renewal is rebuilt from them and the key.
fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "claimcheck webhook CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

/// Validity from a minute ago (clock skew) for `lifetime`.
fn validity(params: &mut CertificateParams, lifetime: Duration) -> u64 {
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(60)).into();
    params.not_after = (now + lifetime).into();
    unix(now + lifetime)
}

impl Certificates {
    /// A new CA and a serving certificate for `dns_names`.
    pub fn issue(dns_names: &[String], lifetime: Duration) -> Result<Self, CertError> {
        let mut ca = ca_params()?;
        validity(&mut ca, lifetime.saturating_mul(100));
        let ca_key = KeyPair::generate()?;
        let ca_pem = ca.self_signed(&ca_key)?.pem();
        Self::serving(ca_pem, ca_key.serialize_pem(), dns_names, lifetime)
    }

    /// A new serving certificate from the same CA.
    pub fn renewed(&self, dns_names: &[String], lifetime: Duration) -> Result<Self, CertError> {
        Self::serving(self.ca_pem.clone(), self.ca_key_pem.clone(), dns_names, lifetime)
    }

    fn serving(
        ca_pem: String,
        ca_key_pem: String,
        dns_names: &[String],
        lifetime: Duration,
    ) -> Result<Self, CertError> {
        let ca_key = KeyPair::from_pem(&ca_key_pem)?;
        let issuer = Issuer::new(ca_params()?, ca_key);
        let mut params = CertificateParams::new(dns_names.to_vec())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "claimcheck webhook");
        let not_after = validity(&mut params, lifetime);
        let key = KeyPair::generate()?;
        let cert_pem = params.signed_by(&key, &issuer)?.pem();
        Ok(Certificates {
            ca_pem,
            ca_key_pem,
            cert_pem,
            key_pem: key.serialize_pem(),
            not_after,
            dns_names: dns_names.to_vec(),
        })
    }

    /// Whether a new serving certificate is due: less than a third of `lifetime` is left,
    /// or the webhook is now reached by other names.
    pub fn due(&self, lifetime: Duration, dns_names: &[String]) -> bool {
        let left = self.not_after.saturating_sub(unix(SystemTime::now()));
        Duration::from_secs(left) < lifetime / 3 || self.dns_names != dns_names
    }

    pub fn to_secret(&self, namespace: &str, name: &str) -> Secret {
        let data = [
            (CA_CERT, &self.ca_pem),
            (CA_KEY, &self.ca_key_pem),
            (TLS_CERT, &self.cert_pem),
            (TLS_KEY, &self.key_pem),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), ByteString(v.clone().into_bytes())))
        .collect();
        Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                annotations: Some(BTreeMap::from([
                    (NOT_AFTER.to_owned(), self.not_after.to_string()),
                    (DNS_NAMES.to_owned(), self.dns_names.join(",")),
                ])),
                ..ObjectMeta::default()
            },
            type_: Some("kubernetes.io/tls".to_owned()),
            data: Some(data),
            ..Secret::default()
        }
    }

    /// The certificates a Secret holds; `None` if it is not one of ours, or incomplete.
    pub fn from_secret(secret: &Secret) -> Option<Self> {
        let data = secret.data.as_ref()?;
        let text = |key: &str| String::from_utf8(data.get(key)?.0.clone()).ok();
        let annotations = secret.metadata.annotations.as_ref()?;
        let dns_names = annotations.get(DNS_NAMES)?;
        Some(Certificates {
            ca_pem: text(CA_CERT)?,
            ca_key_pem: text(CA_KEY)?,
            cert_pem: text(TLS_CERT)?,
            key_pem: text(TLS_KEY)?,
            not_after: annotations.get(NOT_AFTER)?.parse().ok()?,
            dns_names: dns_names.split(',').map(str::to_owned).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::ServingCert;

    #[test]
    fn a_renewed_certificate_keeps_the_ca_and_survives_the_secret() {
        let names = vec!["claimcheck-webhook.claimcheck-system.svc".to_owned()];
        let first = Certificates::issue(&names, Duration::from_secs(90)).unwrap();
        assert!(!first.due(Duration::from_secs(90), &names));
        assert!(
            first.due(Duration::from_secs(300), &names),
            "less than a third of 300 s is left"
        );
        assert!(
            first.due(Duration::from_secs(90), &["elsewhere".to_owned()]),
            "new names"
        );
        let renewed = first.renewed(&names, Duration::from_secs(90)).unwrap();
        assert_eq!(renewed.ca_pem, first.ca_pem);
        assert_ne!(renewed.cert_pem, first.cert_pem);
        let back = Certificates::from_secret(&renewed.to_secret("ns", "tls")).unwrap();
        assert_eq!(back, renewed);
        ServingCert::from_pem(back.cert_pem.as_bytes(), back.key_pem.as_bytes()).unwrap();
    }
}
