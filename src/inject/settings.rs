//! How the sidecar runs in one pod: the operator's defaults, overridden by the policy's
//! `sidecar` settings, overridden by the pod's annotations.

use std::collections::BTreeMap;

use crate::policy::pod::{METRICS_PORT, SIDECAR_PORT};
use crate::policy::{SidecarResources, SidecarSpec};

use super::Refusal;

pub const PORT: &str = "claimcheck.dev/proxy-port";
pub const METRICS_PORT_ANNOTATION: &str = "claimcheck.dev/proxy-metrics-port";
pub const LOG_LEVEL: &str = "claimcheck.dev/proxy-log-level";
pub const CPU_REQUEST: &str = "claimcheck.dev/proxy-cpu-request";
pub const MEMORY_REQUEST: &str = "claimcheck.dev/proxy-memory-request";
pub const CPU_LIMIT: &str = "claimcheck.dev/proxy-cpu-limit";
pub const MEMORY_LIMIT: &str = "claimcheck.dev/proxy-memory-limit";

const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// The operator's defaults (its command line).
#[derive(Debug, Clone, PartialEq)]
pub struct Defaults {
    pub image: String,
    pub image_pull_policy: String,
    /// Inject an init container with `restartPolicy: Always` (Kubernetes 1.29+); otherwise
    /// a plain container, for clusters with native sidecars turned off.
    pub native_sidecars: bool,
    pub log_level: String,
    pub resources: SidecarResources,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            image: format!("ghcr.io/claimcheck/claimcheck:{}", env!("CARGO_PKG_VERSION")),
            image_pull_policy: "IfNotPresent".into(),
            native_sidecars: true,
            log_level: "info".into(),
            // A payload in flight is held about 1.5 times: 512Mi covers the 128 MiB gRPC limit.
            resources: SidecarResources {
                cpu_request: Some("100m".into()),
                memory_request: Some("128Mi".into()),
                cpu_limit: None,
                memory_limit: Some("512Mi".into()),
            },
        }
    }
}

/// The sidecar's settings for one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub port: u16,
    pub metrics_port: u16,
    pub log_level: String,
    pub resources: SidecarResources,
}

impl Settings {
    pub fn resolve(
        annotations: &BTreeMap<String, String>,
        policy: &SidecarSpec,
        defaults: &Defaults,
    ) -> Result<Settings, Refusal> {
        let default_port = u16::try_from(policy.port).unwrap_or(SIDECAR_PORT);
        let port = port_of(annotations, PORT, default_port)?;
        let metrics_port = port_of(annotations, METRICS_PORT_ANNOTATION, METRICS_PORT)?;
        if port == metrics_port {
            return Err(Refusal::BadAnnotation {
                annotation: METRICS_PORT_ANNOTATION.into(),
                value: metrics_port.to_string(),
                why: "is the proxy's gRPC port too: the two must differ",
            });
        }
        let log_level = match annotations.get(LOG_LEVEL) {
            Some(level) if LEVELS.contains(&level.as_str()) => level.clone(),
            // A pod's author picks a level; RUST_LOG directives (other crates, spans) are the
            // policy's to set.
            Some(other) => {
                return Err(Refusal::BadAnnotation {
                    annotation: LOG_LEVEL.into(),
                    value: other.clone(),
                    why: "is not one of error, warn, info, debug, trace",
                });
            }
            None => policy
                .log_level
                .clone()
                .unwrap_or_else(|| defaults.log_level.clone()),
        };
        let pick = |annotation: &str, policy: &Option<String>, default: &Option<String>| match annotations
            .get(annotation)
        {
            Some(value) if is_quantity(value) => Ok(Some(value.clone())),
            Some(value) => Err(Refusal::BadAnnotation {
                annotation: annotation.into(),
                value: value.clone(),
                why: "is not a Kubernetes quantity (for example 100m or 256Mi)",
            }),
            None => Ok(policy.clone().or_else(|| default.clone())),
        };
        let (p, d) = (&policy.resources, &defaults.resources);
        let resources = SidecarResources {
            cpu_request: pick(CPU_REQUEST, &p.cpu_request, &d.cpu_request)?,
            memory_request: pick(MEMORY_REQUEST, &p.memory_request, &d.memory_request)?,
            cpu_limit: pick(CPU_LIMIT, &p.cpu_limit, &d.cpu_limit)?,
            memory_limit: pick(MEMORY_LIMIT, &p.memory_limit, &d.memory_limit)?,
        };
        Ok(Settings {
            port,
            metrics_port,
            log_level,
            resources,
        })
    }
}

fn port_of(annotations: &BTreeMap<String, String>, annotation: &str, default: u16) -> Result<u16, Refusal> {
    let Some(value) = annotations.get(annotation) else {
        return Ok(default);
    };
    let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    match value.parse::<u16>() {
        Ok(port) if digits && port > 0 => Ok(port),
        _ => Err(Refusal::BadAnnotation {
            annotation: annotation.into(),
            value: value.clone(),
            why: "is not a port (1-65535)",
        }),
    }
}

/// A Kubernetes quantity: digits, an optional fraction, an optional suffix (as
/// `policy::QUANTITY` says for the CRD).
fn is_quantity(text: &str) -> bool {
    const SUFFIXES: [&str; 13] = [
        "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
    ];
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    let mut parts = number.split('.');
    let whole = parts.next().unwrap_or_default();
    let fraction = parts.next();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(whole)
        && fraction.is_none_or(digits)
        && parts.next().is_none()
        && (suffix.is_empty() || SUFFIXES.contains(&suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        for good in ["1", "100m", "1.5", "128Mi", "2Gi", "500k"] {
            assert!(is_quantity(good), "{good}");
        }
        for bad in ["", "lots", "1.", ".5", "1.2.3", "12MB", "-1", "1 Gi"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn annotations_override_the_policy_which_overrides_the_defaults() {
        let policy = SidecarSpec {
            port: 7000,
            resources: SidecarResources {
                memory_limit: Some("1Gi".into()),
                ..SidecarResources::default()
            },
            ..SidecarSpec::default()
        };
        let annotations = BTreeMap::from([
            (CPU_LIMIT.to_owned(), "2".to_owned()),
            (LOG_LEVEL.to_owned(), "debug".to_owned()),
        ]);
        let settings = Settings::resolve(&annotations, &policy, &Defaults::default()).unwrap();
        assert_eq!((settings.port, settings.metrics_port), (7000, METRICS_PORT));
        assert_eq!(settings.log_level, "debug");
        assert_eq!(settings.resources.cpu_limit.as_deref(), Some("2"));
        assert_eq!(settings.resources.memory_limit.as_deref(), Some("1Gi"));
        assert_eq!(settings.resources.memory_request.as_deref(), Some("128Mi"));
    }

    #[test]
    fn bad_annotations_are_refused_naming_the_annotation() {
        let refused = |key: &str, value: &str| {
            let annotations = BTreeMap::from([(key.to_owned(), value.to_owned())]);
            Settings::resolve(&annotations, &SidecarSpec::default(), &Defaults::default())
                .unwrap_err()
                .to_string()
        };
        assert!(
            refused(MEMORY_LIMIT, "lots")
                .starts_with("annotation claimcheck.dev/proxy-memory-limit: \"lots\"")
        );
        assert!(refused(PORT, "0").contains("is not a port"));
        assert!(refused(PORT, "+7000").contains("is not a port"));
        assert!(refused(LOG_LEVEL, "info,h2=trace").contains("is not one of"));
        assert!(refused(METRICS_PORT_ANNOTATION, "7233").contains("must differ"));
    }
}
