//! Who may read which namespace's payloads through the codec server: bearer tokens from a
//! file (a mounted Secret), or OIDC access tokens verified against the provider's JWKS.
//! Refusals never carry the token.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

use sha2::{Digest, Sha256};

use super::jwt::{JwtConfig, JwtError, JwtVerifier, Namespaces};

/// The caller, once authenticated.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub subject: String,
    pub namespaces: Namespaces,
}

#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// 401: no credentials, or credentials that do not verify.
    #[error("{0}")]
    Unauthenticated(String),
    /// 403: a known caller, not allowed in this namespace.
    #[error("{subject} may not read namespace {namespace:?}")]
    Forbidden { subject: String, namespace: String },
    /// 503: the identity provider's keys cannot be had, so no token can be checked.
    #[error("cannot check the bearer token now: {0}")]
    Unavailable(String),
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read the tokens file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} line {line}: expected SUBJECT:TOKEN or SUBJECT:TOKEN:NAMESPACE[,NAMESPACE...]")]
    Line { path: String, line: usize },
    #[error("the tokens file {0} holds no token: every call would be refused")]
    Empty(String),
    #[error(transparent)]
    Jwt(#[from] JwtError),
}

struct Token {
    subject: String,
    /// Compared by digest, so that the comparison's time says nothing of the token.
    sha256: [u8; 32],
    namespaces: Namespaces,
}

pub struct Authorizer {
    /// Replaced when the file changes: a mounted Secret changes under a running pod, and a
    /// revoked token must stop working without a restart.
    tokens: RwLock<Tokens>,
    tokens_file: Option<PathBuf>,
    jwt: Option<JwtVerifier>,
    /// Set by configuring tokens or OIDC, whatever the tokens file holds.
    required: bool,
}

/// Who a call with no credentials is when none are required: a loopback listener with
/// neither tokens nor OIDC configured.
const ANONYMOUS: &str = "anonymous";

/// The tokens in force, and the digest of the file they came from.
#[derive(Default)]
struct Tokens {
    file_sha256: [u8; 32],
    tokens: Vec<Token>,
}

impl Authorizer {
    pub fn new(tokens_file: Option<&Path>, jwt: Option<JwtConfig>) -> Result<Self, AuthError> {
        Ok(Authorizer {
            required: tokens_file.is_some() || jwt.is_some(),
            tokens: RwLock::new(tokens_file.map(read_tokens).transpose()?.unwrap_or_default()),
            tokens_file: tokens_file.map(Path::to_path_buf),
            jwt: jwt.map(JwtVerifier::new).transpose()?,
        })
    }

    /// Reads the tokens file again; true when the tokens changed. A file that does not read
    /// is an error and the tokens in force stay; an emptied file is refused the same way.
    pub fn reload_tokens(&self) -> Result<bool, AuthError> {
        let Some(path) = &self.tokens_file else {
            return Ok(false);
        };
        let fresh = read_tokens(path)?;
        let mut current = self.tokens.write().unwrap_or_else(PoisonError::into_inner);
        if current.file_sha256 == fresh.file_sha256 {
            return Ok(false);
        }
        *current = fresh;
        Ok(true)
    }

    /// True when some credential is required of every call.
    pub fn requires_credentials(&self) -> bool {
        self.required
    }

    /// The caller of a call with this `Authorization` header, if allowed in `namespace`.
    pub async fn authorize(
        &self,
        authorization: Option<&str>,
        namespace: &str,
    ) -> Result<Principal, Refusal> {
        let principal = self.authenticate(authorization).await?;
        if !principal.namespaces.allows(namespace) {
            return Err(Refusal::Forbidden {
                subject: principal.subject,
                namespace: namespace.to_owned(),
            });
        }
        Ok(principal)
    }

    async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, Refusal> {
        if !self.requires_credentials() {
            return Ok(Principal {
                subject: ANONYMOUS.to_owned(),
                namespaces: Namespaces::All,
            });
        }
        let Some(header) = authorization else {
            return Err(Refusal::Unauthenticated(
                "an Authorization: Bearer token is required".into(),
            ));
        };
        let Some(token) = bearer(header) else {
            return Err(Refusal::Unauthenticated(
                "the Authorization header is not a Bearer token".into(),
            ));
        };
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let known = {
            let tokens = self.tokens.read().unwrap_or_else(PoisonError::into_inner);
            tokens
                .tokens
                .iter()
                .find(|t| t.sha256 == digest)
                .map(|t| Principal {
                    subject: t.subject.clone(),
                    namespaces: t.namespaces.clone(),
                })
        };
        if let Some(principal) = known {
            return Ok(principal);
        }
        let Some(jwt) = &self.jwt else {
            return Err(Refusal::Unauthenticated(
                "the bearer token is not one of the configured tokens".into(),
            ));
        };
        match jwt.verify(token).await {
            Ok(claims) => Ok(Principal {
                subject: claims.subject,
                namespaces: claims.namespaces,
            }),
            Err(e @ JwtError::Jwks { .. }) => Err(Refusal::Unavailable(e.to_string())),
            Err(e) => {
                // Why, in the log only: a caller is not told which audience or issuer to forge.
                tracing::info!(error = %e, "a bearer token does not verify");
                Err(Refusal::Unauthenticated(
                    "the bearer token does not verify".into(),
                ))
            }
        }
    }
}

fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn read_tokens(path: &Path) -> Result<Tokens, AuthError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
        path: name.clone(),
        source,
    })?;
    let tokens = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|(i, line)| {
            parse_token(line.trim()).ok_or_else(|| AuthError::Line {
                path: name.clone(),
                line: i + 1,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    match tokens.is_empty() {
        true => Err(AuthError::Empty(name)),
        false => Ok(Tokens {
            file_sha256: Sha256::digest(text.as_bytes()).into(),
            tokens,
        }),
    }
}

fn parse_token(line: &str) -> Option<Token> {
    let mut fields = line.splitn(3, ':');
    let subject = fields.next().filter(|s| !s.is_empty())?;
    let token = fields.next().filter(|t| !t.is_empty())?;
    let namespaces = match fields.next() {
        None => Namespaces::All,
        Some(list) => {
            let set: BTreeSet<String> = list
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect();
            if set.is_empty() {
                return None;
            }
            Namespaces::Only(set)
        }
    };
    Some(Token {
        subject: subject.to_owned(),
        sha256: Sha256::digest(token.as_bytes()).into(),
        namespaces,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authorizer(lines: &str) -> Authorizer {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, lines).unwrap();
        Authorizer::new(Some(&path), None).unwrap()
    }

    #[tokio::test]
    async fn tokens_name_a_subject_and_its_namespaces() {
        let auth = authorizer("# operators\nalice:s3cret\nbob:other:billing, orders\n");
        let alice = auth.authorize(Some("Bearer s3cret"), "anything").await.unwrap();
        assert_eq!(
            (alice.subject.as_str(), alice.namespaces),
            ("alice", Namespaces::All)
        );
        assert!(auth.authorize(Some("bearer other"), "orders").await.is_ok());
        let refused = auth.authorize(Some("Bearer other"), "default").await.unwrap_err();
        assert!(matches!(refused, Refusal::Forbidden { .. }), "{refused}");
    }

    #[tokio::test]
    async fn refusals_never_repeat_the_token() {
        let auth = authorizer("alice:s3cret\n");
        for header in [None, Some("Basic czNjcmV0"), Some("Bearer wrong-token-value")] {
            let refused = auth.authorize(header, "default").await.unwrap_err();
            assert!(matches!(refused, Refusal::Unauthenticated(_)));
            assert!(!refused.to_string().contains("wrong-token-value"), "{refused}");
        }
    }

    #[test]
    fn a_tokens_file_with_no_token_is_refused_rather_than_opening_the_door() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "# nobody yet\n\n").unwrap();
        let error = Authorizer::new(Some(&path), None).err().unwrap().to_string();
        assert!(error.contains("holds no token"), "{error}");
    }

    #[test]
    fn a_malformed_line_is_named_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "alice:ok\njust-a-secret-token\n").unwrap();
        let error = Authorizer::new(Some(&path), None).err().unwrap().to_string();
        assert!(
            error.contains("line 2") && !error.contains("just-a-secret"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn with_no_credentials_configured_every_call_is_anonymous() {
        let auth = Authorizer::new(None, None).unwrap();
        assert!(!auth.requires_credentials());
        assert_eq!(auth.authorize(None, "default").await.unwrap().subject, ANONYMOUS);
    }
}
