//! Verifying OIDC/JWT bearer tokens against a JWKS for the codec server.
//!
//! The codec server hands out plaintext payloads, so a caller off loopback shows an access token
//! from the identity provider. Only RS256 and ES256 are accepted, and only with keys from the
//! configured JWKS: a token's own `jku`, `x5u` or `jwk` headers are never followed, and `none` or
//! HMAC algorithms are refused before any key is looked at (an HMAC keyed with the public key is
//! the classic forgery). The namespaces a token grants are read the way Temporal's default JWT
//! claim mapper reads them, so the token that opens a namespace on the Temporal frontend opens the
//! same namespace here.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::alphabet::URL_SAFE;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};

/// Far above any real access token, far below what would make parsing costly.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
const MAX_JWKS_BYTES: usize = 1024 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Clock skew tolerated between the identity provider and us.
const LEEWAY_SECS: f64 = 60.0;
const MIN_RSA_BITS: usize = 2048;
/// ring's upper bound for RSA verification.
const MAX_RSA_BITS: usize = 8192;
/// Strings taken from a token or a JWKS are shown in errors at most this long.
const SHOWN_CHARS: usize = 64;
/// Temporal's roles; a permission with any other role grants nothing, as in Temporal.
const ROLES: [&str; 4] = ["read", "write", "worker", "admin"];
/// `*`, and Temporal's system scope, whose roles apply to every namespace in Temporal's authorizer.
const EVERY_NAMESPACE: [&str; 2] = ["*", "temporal-system"];
const DEFAULT_TIMING: Timing = Timing {
    refetch_after: Duration::from_secs(30),
    refresh_after: Duration::from_secs(600),
};

/// JWK fields are base64url; some providers pad them, which costs nothing to accept. Tokens are
/// decoded strictly.
const JWK_BASE64: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtConfig {
    /// `https://issuer/.well-known/jwks.json`; plain http only on loopback.
    pub jwks_url: String,
    /// Must appear in the token's `aud` (a string or an array).
    pub audience: String,
    /// When set, must equal the token's `iss`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The claim listing the namespaces, Temporal-style (`["default:read", "billing:admin"]`).
    #[serde(default = "default_namespaces_claim")]
    pub namespaces_claim: String,
}

fn default_namespaces_claim() -> String {
    "permissions".to_owned()
}

/// Who a verified token names, and which namespaces it may read.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    pub subject: String,
    pub namespaces: Namespaces,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Namespaces {
    All,
    /// Empty when the token has no namespaces claim: authenticated, but allowed nothing.
    Only(BTreeSet<String>),
}

impl Namespaces {
    pub fn allows(&self, namespace: &str) -> bool {
        match self {
            Namespaces::All => true,
            Namespaces::Only(namespaces) => namespaces.contains(namespace),
        }
    }
}

/// Why a token was refused or could not be checked. No variant carries the token or its
/// signature; strings taken from the token (alg, kid, aud, iss) are clipped and quoted.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("JWT configuration: {0}")]
    Config(String),
    #[error("bearer token is {len} bytes, over the {MAX_TOKEN_BYTES}-byte limit")]
    TooLarge { len: usize },
    #[error("bearer token is not a valid JWT: {0}")]
    Malformed(String),
    #[error("token algorithm {0:?} is refused: only RS256 and ES256 are accepted")]
    Algorithm(String),
    #[error("JWKS at {url} could not be fetched: {reason}")]
    Jwks { url: String, reason: String },
    #[error(
        "no key in the JWKS at {url} for this {alg} token ({}); an unknown kid refetches it at most every 30 s",
        kid.as_deref().map_or("no kid".to_owned(), |kid| format!("kid {kid:?}"))
    )]
    UnknownKey {
        url: String,
        alg: &'static str,
        kid: Option<String>,
    },
    #[error("key {kid:?} in the JWKS cannot verify this {alg} token: {reason}")]
    UnfitKey {
        kid: String,
        alg: &'static str,
        reason: String,
    },
    #[error("token signature does not verify")]
    Signature,
    #[error("token expired at {exp} (now {now}, leeway {LEEWAY_SECS} s)")]
    Expired { exp: String, now: String },
    #[error("token claim {claim} is {at}, in the future (now {now}, leeway {LEEWAY_SECS} s)")]
    NotYetValid {
        claim: &'static str,
        at: String,
        now: String,
    },
    #[error("token audience {found:?} does not include {expected:?}")]
    Audience { expected: String, found: Vec<String> },
    #[error("token issuer {found:?} is not {expected:?}")]
    Issuer { expected: String, found: Option<String> },
    #[error("token has no {0:?} claim")]
    MissingClaim(&'static str),
    #[error("token claim {claim:?} is invalid: {reason}")]
    InvalidClaim { claim: String, reason: &'static str },
}

/// Verifies bearer tokens; one per configuration, shared by all requests.
pub struct JwtVerifier {
    config: JwtConfig,
    url: reqwest::Url,
    http: reqwest::Client,
    timing: Timing,
    cache: Mutex<KeyCache>,
    /// Held for the duration of a fetch, so that concurrent verifies share one.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Debug, Clone, Copy)]
struct Timing {
    /// Fetch attempts are at least this far apart, whatever tokens arrive: forged kids must not
    /// turn into a flood of requests to the identity provider.
    refetch_after: Duration,
    /// Keys older than this are refetched even when every kid is known.
    refresh_after: Duration,
}

#[derive(Clone, Default)]
struct KeyCache {
    keys: Arc<[Key]>,
    /// When the last successful fetch completed; `keys` is meaningful only once it is set.
    fetched: Option<Instant>,
    attempted: Option<Instant>,
    attempts: u64,
    /// Why the last attempt failed; cleared by a success.
    failure: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    Cached,
    /// The token names a key we do not have: a rotation may have published it since.
    Newer,
}

impl JwtVerifier {
    pub fn new(config: JwtConfig) -> Result<Self, JwtError> {
        Self::with_timing(config, DEFAULT_TIMING)
    }

    fn with_timing(config: JwtConfig, timing: Timing) -> Result<Self, JwtError> {
        let url = jwks_url(&config.jwks_url)?;
        if config.audience.is_empty() {
            return Err(JwtError::Config("audience is empty".to_owned()));
        }
        if config.issuer.as_deref() == Some("") {
            return Err(JwtError::Config(
                "issuer is empty (leave it out to accept any)".to_owned(),
            ));
        }
        if config.namespaces_claim.is_empty() {
            return Err(JwtError::Config("namespacesClaim is empty".to_owned()));
        }
        let mut http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            // A redirect could lead off https; the configured URL must be the final one.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("claimcheck/", env!("CARGO_PKG_VERSION")));
        if is_loopback(&url) {
            http = http.no_proxy();
        }
        let http = http
            .build()
            .map_err(|e| JwtError::Config(format!("HTTP client for the JWKS: {}", chain(&e))))?;
        Ok(JwtVerifier {
            config,
            url,
            http,
            timing,
            cache: Mutex::default(),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// Checks the token's signature against the JWKS, then its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, JwtError> {
        let jws = Jws::parse(token)?;
        let keys = self.keys(Want::Cached).await?;
        match jws.check_signature(&keys) {
            Ok(()) => {}
            Err(Miss::NoKey) => {
                let keys = self.keys(Want::Newer).await?;
                jws.check_signature(&keys)
                    .map_err(|miss| self.refusal(miss, &jws.header))?;
            }
            Err(miss) => return Err(self.refusal(miss, &jws.header)),
        }
        self.claims(&jws.claims)
    }

    fn refusal(&self, miss: Miss, header: &Header) -> JwtError {
        match miss {
            Miss::NoKey => JwtError::UnknownKey {
                url: self.config.jwks_url.clone(),
                alg: header.alg.name(),
                kid: header.kid.as_deref().map(clip),
            },
            Miss::Refused(error) => error,
        }
    }

    async fn keys(&self, want: Want) -> Result<Arc<[Key]>, JwtError> {
        let seen = self.cached();
        if self.due(&seen, want) {
            let _only_fetch = self.fetching.lock().await;
            // Whoever held the lock before us may have fetched already: then its answer is ours.
            if self.cached().attempts == seen.attempts {
                self.refresh().await;
            }
        }
        let cache = self.cached();
        match cache.fetched {
            Some(_) => Ok(cache.keys),
            None => Err(JwtError::Jwks {
                url: self.config.jwks_url.clone(),
                reason: cache.failure.unwrap_or_else(|| "no attempt was made".to_owned()),
            }),
        }
    }

    fn due(&self, cache: &KeyCache, want: Want) -> bool {
        match cache.attempted {
            None => true,
            Some(attempted) if attempted.elapsed() < self.timing.refetch_after => false,
            Some(_) => {
                want == Want::Newer
                    || cache
                        .fetched
                        .is_none_or(|at| at.elapsed() >= self.timing.refresh_after)
            }
        }
    }

    fn cached(&self) -> KeyCache {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// On failure the keys fetched before stay in use: an identity provider that is briefly
    /// down must not lock everyone out.
    async fn refresh(&self) {
        let result = self.fetch().await;
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.attempted = Some(Instant::now());
        cache.attempts += 1;
        match result {
            Ok(keys) => {
                tracing::info!(url = %self.url, keys = keys.len(), "fetched the JWKS");
                cache.keys = keys.into();
                cache.fetched = cache.attempted;
                cache.failure = None;
            }
            Err(reason) => {
                tracing::warn!(url = %self.url, %reason, "could not fetch the JWKS");
                cache.failure = Some(reason);
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<Key>, String> {
        let mut response = self
            .http
            .get(self.url.clone())
            .header(
                reqwest::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .send()
            .await
            .map_err(|e| chain(&e.without_url()))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(format!(
                "it answered {status}: redirects are not followed, configure the final URL"
            ));
        }
        if !status.is_success() {
            return Err(format!("it answered {status}"));
        }
        let too_large = || format!("the answer is over {MAX_JWKS_BYTES} bytes");
        if response
            .content_length()
            .is_some_and(|len| len > MAX_JWKS_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| chain(&e.without_url()))? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        parse_jwks(&body)
    }

    fn claims(&self, claims: &Map<String, Value>) -> Result<Claims, JwtError> {
        let now = unix_now();
        let exp = numeric_date(claims, "exp")?.ok_or(JwtError::MissingClaim("exp"))?;
        if now >= exp + LEEWAY_SECS {
            return Err(JwtError::Expired {
                exp: when(exp),
                now: when(now),
            });
        }
        for claim in ["nbf", "iat"] {
            if let Some(at) = numeric_date(claims, claim)?
                && at > now + LEEWAY_SECS
            {
                return Err(JwtError::NotYetValid {
                    claim,
                    at: when(at),
                    now: when(now),
                });
            }
        }
        self.check_audience(claims)?;
        self.check_issuer(claims)?;
        let subject = match claims.get("sub") {
            Some(Value::String(subject)) if !subject.is_empty() => subject.clone(),
            None => return Err(JwtError::MissingClaim("sub")),
            Some(_) => return Err(invalid("sub", "not a non-empty string")),
        };
        let name = &self.config.namespaces_claim;
        let namespaces =
            granted(claims.get(name)).ok_or_else(|| invalid(name, "neither a string nor an array"))?;
        Ok(Claims { subject, namespaces })
    }

    fn check_audience(&self, claims: &Map<String, Value>) -> Result<(), JwtError> {
        let found: Vec<&str> = match claims.get("aud") {
            Some(Value::String(aud)) => vec![aud],
            Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if found.contains(&self.config.audience.as_str()) {
            return Ok(());
        }
        Err(JwtError::Audience {
            expected: self.config.audience.clone(),
            found: found.into_iter().take(8).map(clip).collect(),
        })
    }

    fn check_issuer(&self, claims: &Map<String, Value>) -> Result<(), JwtError> {
        let Some(expected) = &self.config.issuer else {
            return Ok(());
        };
        match claims.get("iss").and_then(Value::as_str) {
            Some(iss) if iss == expected => Ok(()),
            found => Err(JwtError::Issuer {
                expected: expected.clone(),
                found: found.map(clip),
            }),
        }
    }
}

fn jwks_url(text: &str) -> Result<reqwest::Url, JwtError> {
    let url = reqwest::Url::parse(text).map_err(|e| JwtError::Config(format!("jwksUrl {text:?}: {e}")))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(JwtError::Config(format!(
            "jwksUrl {text:?} is plain http off loopback: the keys that vouch for every token must come over https"
        ))),
        scheme => Err(JwtError::Config(format!(
            "jwksUrl {text:?}: scheme {scheme:?} is not https"
        ))),
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// The token split into what is signed and what signs it, with nothing trusted yet.
struct Jws<'t> {
    header: Header,
    claims: Map<String, Value>,
    signed: &'t [u8],
    signature: Vec<u8>,
}

struct Header {
    alg: Alg,
    kid: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Alg {
    Rs256,
    Es256,
}

impl Alg {
    fn parse(name: &str) -> Option<Alg> {
        match name {
            "RS256" => Some(Alg::Rs256),
            "ES256" => Some(Alg::Es256),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
        }
    }
}

/// Why no key verified the signature.
enum Miss {
    /// No key of the JWKS could be meant: the JWKS may be worth refetching.
    NoKey,
    Refused(JwtError),
}

impl<'t> Jws<'t> {
    fn parse(token: &'t str) -> Result<Self, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::TooLarge { len: token.len() });
        }
        let segments: Vec<&str> = token.split('.').collect();
        let [header, payload, signature] = segments[..] else {
            return Err(JwtError::Malformed(format!(
                "{} dot-separated segments, not 3 (header.payload.signature; an encrypted JWE has 5)",
                segments.len()
            )));
        };
        let header = parse_header(&json_object("header", header)?)?;
        let claims = json_object("payload", payload)?;
        let signed = &token.as_bytes()[..token.len() - signature.len() - 1];
        let signature = decode("signature", signature)?;
        if signature.is_empty() {
            return Err(JwtError::Malformed("the signature is empty".to_owned()));
        }
        Ok(Jws {
            header,
            claims,
            signed,
            signature,
        })
    }

    /// With a kid, only that key may verify; without one, every key of the token's type is tried.
    fn check_signature(&self, keys: &[Key]) -> Result<(), Miss> {
        let alg = self.header.alg;
        let named = keys.iter().filter(|key| match &self.header.kid {
            Some(kid) => key.kid.as_ref() == Some(kid),
            None => true,
        });
        let mut fitting = 0;
        let mut unfit = None;
        for key in named {
            match key.fit(alg) {
                Ok(()) if key.verifies(self.signed, &self.signature) => return Ok(()),
                Ok(()) => fitting += 1,
                Err(reason) => {
                    unfit.get_or_insert(reason);
                }
            }
        }
        match (fitting, &self.header.kid, unfit) {
            (1.., _, _) => Err(Miss::Refused(JwtError::Signature)),
            (0, Some(kid), Some(reason)) => Err(Miss::Refused(JwtError::UnfitKey {
                kid: clip(kid),
                alg: alg.name(),
                reason,
            })),
            _ => Err(Miss::NoKey),
        }
    }
}

fn parse_header(header: &Map<String, Value>) -> Result<Header, JwtError> {
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => Alg::parse(alg).ok_or_else(|| JwtError::Algorithm(clip(alg)))?,
        Some(_) => return Err(JwtError::Malformed("the header's alg is not a string".to_owned())),
        None => return Err(JwtError::Malformed("the header has no alg".to_owned())),
    };
    if header.contains_key("crit") {
        return Err(JwtError::Malformed(
            "the header lists critical extensions (crit), none of which is supported".to_owned(),
        ));
    }
    let kid = match header.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(JwtError::Malformed("the header's kid is not a string".to_owned())),
    };
    Ok(Header { alg, kid })
}

fn decode(segment: &str, text: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| JwtError::Malformed(format!("the {segment} is not unpadded base64url")))
}

fn json_object(segment: &str, text: &str) -> Result<Map<String, Value>, JwtError> {
    // serde_json's message could quote the input; its position cannot.
    match serde_json::from_slice(&decode(segment, text)?) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(JwtError::Malformed(format!(
            "the {segment} is JSON but not an object"
        ))),
        Err(e) => Err(JwtError::Malformed(format!(
            "the {segment} is not JSON (line {}, column {})",
            e.line(),
            e.column()
        ))),
    }
}

fn invalid(claim: &str, reason: &'static str) -> JwtError {
    JwtError::InvalidClaim {
        claim: claim.to_owned(),
        reason,
    }
}

/// A key of the JWKS, kept even when unusable so that a token naming it learns why.
#[derive(Debug)]
struct Key {
    kid: Option<String>,
    alg: Option<String>,
    usage: Option<String>,
    material: Material,
}

#[derive(Debug)]
enum Material {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed SEC1 point: 0x04, x, y.
    P256 {
        point: Vec<u8>,
    },
    Unusable(String),
}

impl Key {
    fn from_jwk(jwk: &Map<String, Value>) -> Key {
        let text = |name: &str| jwk.get(name).and_then(Value::as_str).map(str::to_owned);
        let material = match jwk.get("kty").and_then(Value::as_str) {
            Some("RSA") => rsa(jwk),
            Some("EC") => p256(jwk),
            Some(kty) => Err(format!("its key type {:?} is not supported", clip(kty))),
            None => Err("it has no kty".to_owned()),
        };
        Key {
            kid: text("kid"),
            alg: text("alg"),
            usage: text("use"),
            material: material.unwrap_or_else(Material::Unusable),
        }
    }

    fn fit(&self, alg: Alg) -> Result<(), String> {
        if let Some(usage) = &self.usage
            && usage != "sig"
        {
            return Err(format!("its use is {:?}, not \"sig\"", clip(usage)));
        }
        if let Some(key_alg) = &self.alg
            && key_alg != alg.name()
        {
            return Err(format!("its alg is {:?}", clip(key_alg)));
        }
        match (&self.material, alg) {
            (Material::Rsa { .. }, Alg::Rs256) | (Material::P256 { .. }, Alg::Es256) => Ok(()),
            (Material::Rsa { .. }, _) => Err("it is an RSA key".to_owned()),
            (Material::P256 { .. }, _) => Err("it is an EC P-256 key".to_owned()),
            (Material::Unusable(reason), _) => Err(reason.clone()),
        }
    }

    fn verifies(&self, signed: &[u8], signature: &[u8]) -> bool {
        match &self.material {
            Material::Rsa { n, e } => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, signed, signature)
                .is_ok(),
            Material::P256 { point } => UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(signed, signature)
                .is_ok(),
            Material::Unusable(_) => false,
        }
    }
}

fn rsa(jwk: &Map<String, Value>) -> Result<Material, String> {
    let n = without_leading_zeros(jwk_bytes(jwk, "n")?);
    let e = without_leading_zeros(jwk_bytes(jwk, "e")?);
    let bits = n
        .first()
        .map_or(0, |top| (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize));
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "its RSA modulus is {bits} bits, under the {MIN_RSA_BITS} required"
        ));
    }
    if bits > MAX_RSA_BITS {
        return Err(format!(
            "its RSA modulus is {bits} bits, over the {MAX_RSA_BITS} supported"
        ));
    }
    Ok(Material::Rsa { n, e })
}

fn p256(jwk: &Map<String, Value>) -> Result<Material, String> {
    match jwk.get("crv").and_then(Value::as_str) {
        Some("P-256") => {}
        Some(crv) => return Err(format!("its curve {:?} is not supported (only P-256)", clip(crv))),
        None => return Err("it has no crv".to_owned()),
    }
    let (x, y) = (jwk_bytes(jwk, "x")?, jwk_bytes(jwk, "y")?);
    if x.len() != 32 || y.len() != 32 {
        return Err(format!(
            "its coordinates are {} and {} bytes, not 32",
            x.len(),
            y.len()
        ));
    }
    Ok(Material::P256 {
        point: [&[0x04][..], &x, &y].concat(),
    })
}

fn jwk_bytes(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let text = jwk
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("it has no {name}"))?;
    JWK_BASE64
        .decode(text)
        .map_err(|_| format!("its {name} is not base64url"))
}

fn without_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    bytes.drain(..zeros);
    bytes
}

fn parse_jwks(body: &[u8]) -> Result<Vec<Key>, String> {
    let document: Value = serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let keys = document
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("the answer is not a JWK set: it has no \"keys\" array")?;
    Ok(keys
        .iter()
        .filter_map(Value::as_object)
        .map(Key::from_jwk)
        .collect())
}

/// Reads the namespaces claim as Temporal's default claim mapper does (`namespace:role`, the
/// namespace before the last colon), and also as plain names or one space-separated string.
/// `None` when the claim is neither a string nor an array.
fn granted(claim: Option<&Value>) -> Option<Namespaces> {
    let entries: Vec<&str> = match claim {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(entries)) => entries.split_whitespace().collect(),
        // Temporal skips entries that are not strings; so do we.
        Some(Value::Array(entries)) => entries.iter().filter_map(Value::as_str).collect(),
        Some(_) => return None,
    };
    let mut only = BTreeSet::new();
    for namespace in entries.into_iter().filter_map(namespace_of) {
        if EVERY_NAMESPACE.contains(&namespace) {
            return Some(Namespaces::All);
        }
        only.insert(namespace.to_owned());
    }
    Some(Namespaces::Only(only))
}

fn namespace_of(entry: &str) -> Option<&str> {
    let namespace = match entry.rsplit_once(':') {
        Some((namespace, role)) => ROLES
            .iter()
            .any(|known| known.eq_ignore_ascii_case(role))
            .then_some(namespace)?,
        None => entry,
    };
    (!namespace.is_empty()).then_some(namespace)
}

fn numeric_date(claims: &Map<String, Value>, claim: &'static str) -> Result<Option<f64>, JwtError> {
    match claims.get(claim) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|secs| secs.is_finite())
            .map(Some)
            .ok_or_else(|| invalid(claim, "not a finite number")),
        Some(_) => Err(invalid(claim, "not a number of seconds since the epoch")),
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// RFC 3339 when representable, else the raw number.
fn when(secs: f64) -> String {
    jiff::Timestamp::from_second(secs as i64).map_or_else(|_| secs.to_string(), |at| at.to_string())
}

fn clip(text: &str) -> String {
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// An error with its causes, which reqwest keeps out of its own message.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    //! An identity provider is not something the registries give us as a library, so these tests
    //! sign real tokens with ring and serve the JWKS from a small axum server on loopback, which
    //! also counts how often it is asked.

    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::extract::State;
    use proptest::prelude::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, RsaKeyPair};
    use serde_json::json;

    use super::*;

    /// A 2048-bit RSA key made with `openssl genrsa` for these tests only; it signs nothing else.
    const TEST_RSA_KEY: &[u8] = include_bytes!("../../tests/fixtures/jwt-test-rsa.pk8");
    const AUDIENCE: &str = "claimcheck-codec";
    const ISSUER: &str = "https://idp.test";

    enum Pair {
        Rsa(RsaKeyPair),
        Ec(EcdsaKeyPair),
    }

    struct Signer {
        kid: String,
        pair: Pair,
    }

    impl Signer {
        fn rsa(kid: &str) -> Signer {
            let pair = RsaKeyPair::from_pkcs8(TEST_RSA_KEY).expect("the test RSA key parses");
            Signer {
                kid: kid.to_owned(),
                pair: Pair::Rsa(pair),
            }
        }

        fn ec(kid: &str) -> Signer {
            let rng = SystemRandom::new();
            let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
            let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
            Signer {
                kid: kid.to_owned(),
                pair: Pair::Ec(pair),
            }
        }

        fn alg(&self) -> &'static str {
            match self.pair {
                Pair::Rsa(_) => "RS256",
                Pair::Ec(_) => "ES256",
            }
        }

        fn jwk(&self) -> Value {
            match &self.pair {
                Pair::Rsa(pair) => {
                    let public = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
                    json!({"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
                           "n": b64(&public.n), "e": b64(&public.e)})
                }
                Pair::Ec(pair) => {
                    let point = pair.public_key().as_ref();
                    json!({"kty": "EC", "kid": self.kid, "crv": "P-256",
                           "x": b64(&point[1..33]), "y": b64(&point[33..])})
                }
            }
        }

        fn sign(&self, claims: &Value) -> String {
            self.sign_with(&json!({"alg": self.alg(), "kid": self.kid, "typ": "JWT"}), claims)
        }

        fn sign_with(&self, header: &Value, claims: &Value) -> String {
            compact(header, claims, |input| self.signature(input))
        }

        fn signature(&self, input: &[u8]) -> Vec<u8> {
            let rng = SystemRandom::new();
            match &self.pair {
                Pair::Rsa(pair) => {
                    let mut signature = vec![0; pair.public().modulus_len()];
                    pair.sign(&signature::RSA_PKCS1_SHA256, &rng, input, &mut signature)
                        .unwrap();
                    signature
                }
                Pair::Ec(pair) => pair.sign(&rng, input).unwrap().as_ref().to_vec(),
            }
        }
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn compact(header: &Value, claims: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = sign(input.as_bytes());
        format!("{input}.{}", b64(&signature))
    }

    fn now() -> i64 {
        unix_now() as i64
    }

    fn claims() -> Value {
        json!({"sub": "alice", "aud": AUDIENCE, "iss": ISSUER, "iat": now(), "exp": now() + 300,
               "permissions": ["default:read"]})
    }

    fn with(mut claims: Value, name: &str, value: Value) -> Value {
        claims[name] = value;
        claims
    }

    fn without(mut claims: Value, name: &str) -> Value {
        claims.as_object_mut().unwrap().remove(name);
        claims
    }

    struct Idp {
        url: String,
        document: Mutex<String>,
        hits: AtomicUsize,
    }

    impl Idp {
        async fn start(keys: &[Value]) -> Arc<Idp> {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let idp = Arc::new(Idp {
                url: format!("http://{}/jwks.json", listener.local_addr().unwrap()),
                document: Mutex::new(String::new()),
                hits: AtomicUsize::new(0),
            });
            idp.publish(keys);
            let app = axum::Router::new()
                .route("/jwks.json", axum::routing::get(serve_jwks))
                .with_state(idp.clone());
            tokio::spawn(async move { axum::serve(listener, app).await });
            idp
        }

        fn publish(&self, keys: &[Value]) {
            self.serve(json!({ "keys": keys }).to_string());
        }

        fn serve(&self, document: String) {
            *self.document.lock().unwrap() = document;
        }

        fn hits(&self) -> usize {
            self.hits.load(Ordering::SeqCst)
        }

        fn config(&self) -> JwtConfig {
            JwtConfig {
                jwks_url: self.url.clone(),
                audience: AUDIENCE.to_owned(),
                issuer: Some(ISSUER.to_owned()),
                namespaces_claim: default_namespaces_claim(),
            }
        }
    }

    /// Slow enough that verifies started together overlap the fetch.
    async fn serve_jwks(State(idp): State<Arc<Idp>>) -> String {
        idp.hits.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        idp.document.lock().unwrap().clone()
    }

    fn only(namespaces: &[&str]) -> Namespaces {
        Namespaces::Only(namespaces.iter().map(|ns| ns.to_string()).collect())
    }

    /// The token, and each of its segments, must stay out of what gets logged.
    fn assert_secret_kept(error: &JwtError, token: &str) {
        let text = format!("{error} {error:?}");
        let secrets = std::iter::once(token).chain(token.split('.'));
        for secret in secrets.filter(|secret| secret.len() >= 8) {
            assert!(
                !text.contains(secret),
                "the error shows (part of) the token: {text}"
            );
        }
    }

    #[tokio::test]
    async fn rs256_and_es256_tokens_verify() {
        let (rsa, ec) = (Signer::rsa("rsa-1"), Signer::ec("ec-1"));
        let idp = Idp::start(&[rsa.jwk(), ec.jwk()]).await;
        let verifier = JwtVerifier::new(idp.config()).unwrap();

        let alice = verifier.verify(&rsa.sign(&claims())).await.unwrap();
        let expected = Claims {
            subject: "alice".to_owned(),
            namespaces: only(&["default"]),
        };
        assert_eq!(alice, expected);

        let bob = with(claims(), "sub", json!("bob"));
        let token = ec.sign(&with(bob, "aud", json!(["other", AUDIENCE])));
        let bob = verifier.verify(&token).await.unwrap();
        assert_eq!(bob.subject, "bob");
        assert!(bob.namespaces.allows("default") && !bob.namespaces.allows("billing"));
        assert_eq!(idp.hits(), 1, "the JWKS is fetched once and cached");
    }

    #[tokio::test]
    async fn refuses_what_must_not_pass_and_never_shows_the_token() {
        let (rsa, ec) = (Signer::rsa("rsa-1"), Signer::ec("ec-1"));
        let idp = Idp::start(&[rsa.jwk(), ec.jwk()]).await;
        let verifier = JwtVerifier::new(idp.config()).unwrap();
        let forger = Signer::ec("ec-1");
        let good = rsa.sign(&claims());
        let parts: Vec<&str> = good.split('.').collect();
        let escalated = b64(with(claims(), "permissions", json!(["*"])).to_string().as_bytes());
        let tampered = format!("{}.{escalated}.{}", parts[0], parts[2]);
        // The classic confusion: HS256 keyed with the public key, which anyone can read.
        let public_key = idp.document.lock().unwrap().clone();
        let hmac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, public_key.as_bytes());
        let hs256 = compact(&json!({"alg": "HS256", "kid": "rsa-1"}), &claims(), |input| {
            ring::hmac::sign(&hmac_key, input).as_ref().to_vec()
        });
        let none = compact(&json!({"alg": "none"}), &claims(), |_| Vec::new());

        type Expect = fn(&JwtError) -> bool;
        let cases: Vec<(&str, String, Expect)> = vec![
            (
                "wrong audience",
                rsa.sign(&with(claims(), "aud", json!("someone-else"))),
                |e| matches!(e, JwtError::Audience { .. }),
            ),
            ("no audience", rsa.sign(&without(claims(), "aud")), |e| {
                matches!(e, JwtError::Audience { .. })
            }),
            (
                "expired beyond the leeway",
                rsa.sign(&with(claims(), "exp", json!(now() - 90))),
                |e| matches!(e, JwtError::Expired { .. }),
            ),
            ("no exp", rsa.sign(&without(claims(), "exp")), |e| {
                matches!(e, JwtError::MissingClaim("exp"))
            }),
            (
                "not yet valid",
                rsa.sign(&with(claims(), "nbf", json!(now() + 300))),
                |e| matches!(e, JwtError::NotYetValid { claim: "nbf", .. }),
            ),
            (
                "issued in the future",
                ec.sign(&with(claims(), "iat", json!(now() + 300))),
                |e| matches!(e, JwtError::NotYetValid { claim: "iat", .. }),
            ),
            (
                "wrong issuer",
                rsa.sign(&with(claims(), "iss", json!("https://evil.test"))),
                |e| matches!(e, JwtError::Issuer { .. }),
            ),
            ("no issuer", rsa.sign(&without(claims(), "iss")), |e| {
                matches!(e, JwtError::Issuer { found: None, .. })
            }),
            ("no subject", rsa.sign(&without(claims(), "sub")), |e| {
                matches!(e, JwtError::MissingClaim("sub"))
            }),
            ("tampered payload", tampered, |e| matches!(e, JwtError::Signature)),
            (
                "signed by another key under a known kid",
                forger.sign(&claims()),
                |e| matches!(e, JwtError::Signature),
            ),
            (
                "alg none",
                none.clone(),
                |e| matches!(e, JwtError::Algorithm(alg) if alg == "none"),
            ),
            (
                "alg none without a signature",
                none[..none.rfind('.').unwrap() + 1].to_owned(),
                |e| matches!(e, JwtError::Algorithm(_)),
            ),
            (
                "HS256 keyed with the public key",
                hs256,
                |e| matches!(e, JwtError::Algorithm(alg) if alg == "HS256"),
            ),
            (
                "ES256 header on an RSA key's kid",
                compact(&json!({"alg": "ES256", "kid": "rsa-1"}), &claims(), |input| {
                    rsa.signature(input)
                }),
                |e| matches!(e, JwtError::UnfitKey { .. }),
            ),
        ];
        for (case, token, expected) in cases {
            let error = verifier.verify(&token).await.expect_err(case);
            assert!(expected(&error), "{case}: {error}");
            assert_secret_kept(&error, &token);
        }

        let within_leeway = rsa.sign(&with(claims(), "exp", json!(now() - 30)));
        assert!(
            verifier.verify(&within_leeway).await.is_ok(),
            "60 s of clock skew are forgiven"
        );
    }

    #[tokio::test]
    async fn malformed_tokens_are_refused_before_any_fetch() {
        let idp = Idp::start(&[Signer::rsa("rsa-1").jwk()]).await;
        let verifier = JwtVerifier::new(idp.config()).unwrap();
        let header = b64(br#"{"alg":"RS256"}"#);
        let payload = b64(claims().to_string().as_bytes());
        let cases = [
            String::new(),
            "not-a-jwt".to_owned(),
            format!("{header}.{payload}"),
            format!("{header}.{payload}.c2ln.ZXh0cmE.ZXh0cmE"),
            format!("!!.{payload}.c2ln"),
            format!("{}.{payload}.c2ln", b64(b"{not json")),
            format!("{}.{payload}.c2ln", b64(b"[\"RS256\"]")),
            format!("{}.{payload}.c2ln", b64(br#"{"alg":"RS256","crit":["exp"]}"#)),
            format!("{header}.{}.c2ln", b64(b"42")),
            format!("{header}.{payload}."),
            format!("{header}.{payload}.c2ln="),
            format!("{header}.{}.c2ln", "A".repeat(MAX_TOKEN_BYTES)),
        ];
        for token in cases {
            let error = verifier
                .verify(&token)
                .await
                .expect_err(&token[..token.len().min(80)]);
            assert!(
                matches!(error, JwtError::Malformed(_) | JwtError::TooLarge { .. }),
                "{error}"
            );
            assert_secret_kept(&error, &token);
        }
        assert_eq!(idp.hits(), 0, "nothing malformed reaches the identity provider");
    }

    #[tokio::test]
    async fn a_rotated_key_is_fetched_once_and_forged_kids_do_not_flood_the_idp() {
        let (old, new) = (Signer::rsa("2024"), Signer::ec("2025"));
        let idp = Idp::start(&[old.jwk()]).await;
        let timing = Timing {
            refetch_after: Duration::from_secs(2),
            ..DEFAULT_TIMING
        };
        let verifier = JwtVerifier::with_timing(idp.config(), timing).unwrap();
        verifier.verify(&old.sign(&claims())).await.unwrap();
        assert_eq!(idp.hits(), 1);

        // Within the throttle window the new kid is not worth a request yet.
        idp.publish(&[old.jwk(), new.jwk()]);
        let error = verifier.verify(&new.sign(&claims())).await.unwrap_err();
        assert!(
            matches!(error, JwtError::UnknownKey { ref kid, .. } if kid.as_deref() == Some("2025")),
            "{error}"
        );
        assert_eq!(idp.hits(), 1);

        tokio::time::sleep(timing.refetch_after).await;
        verifier.verify(&new.sign(&claims())).await.unwrap();
        assert_eq!(idp.hits(), 2, "the unknown kid made one refetch");

        let forged = |n: usize| Signer::ec(&format!("forged-{n}")).sign(&claims());
        let flood = futures::future::join_all((0..20).map(|n| {
            let token = forged(n);
            let verifier = &verifier;
            async move { verifier.verify(&token).await }
        }))
        .await;
        assert!(
            flood
                .iter()
                .all(|result| matches!(result, Err(JwtError::UnknownKey { .. })))
        );
        assert_eq!(
            idp.hits(),
            2,
            "forged kids within the throttle window reach no one"
        );
        verifier.verify(&old.sign(&claims())).await.unwrap();
    }

    #[tokio::test]
    async fn concurrent_verifies_share_one_fetch() {
        let (rsa, ec) = (Signer::rsa("rsa-1"), Signer::ec("ec-1"));
        let idp = Idp::start(&[rsa.jwk(), ec.jwk()]).await;
        let verifier = JwtVerifier::new(idp.config()).unwrap();
        let tokens: Vec<String> = (0..16)
            .map(|n| {
                if n % 2 == 0 {
                    rsa.sign(&claims())
                } else {
                    ec.sign(&claims())
                }
            })
            .collect();
        let results = futures::future::join_all(tokens.iter().map(|token| verifier.verify(token))).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(idp.hits(), 1);
    }

    #[tokio::test]
    async fn stale_keys_are_refreshed_and_kept_while_the_idp_is_down() {
        let rsa = Signer::rsa("rsa-1");
        let idp = Idp::start(&[rsa.jwk()]).await;
        let timing = Timing {
            refetch_after: Duration::from_millis(100),
            refresh_after: Duration::from_millis(300),
        };
        let verifier = JwtVerifier::with_timing(idp.config(), timing).unwrap();
        let token = rsa.sign(&claims());
        verifier.verify(&token).await.unwrap();
        verifier.verify(&token).await.unwrap();
        assert_eq!(idp.hits(), 1);

        tokio::time::sleep(timing.refresh_after).await;
        verifier.verify(&token).await.unwrap();
        assert_eq!(idp.hits(), 2, "keys older than refresh_after are refetched");

        idp.serve("<html>maintenance</html>".to_owned());
        tokio::time::sleep(timing.refresh_after).await;
        verifier.verify(&token).await.unwrap();
        assert_eq!(
            idp.hits(),
            3,
            "the refresh was tried, failed, and the old keys still verify"
        );
    }

    #[tokio::test]
    async fn a_jwks_that_cannot_be_had_is_an_error_naming_the_url() {
        let closed: SocketAddr = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let url = format!("http://{closed}/jwks.json");
        let config = JwtConfig {
            jwks_url: url.clone(),
            ..Idp::start(&[]).await.config()
        };
        let token = Signer::rsa("rsa-1").sign(&claims());
        let error = JwtVerifier::new(config)
            .unwrap()
            .verify(&token)
            .await
            .unwrap_err();
        assert!(matches!(error, JwtError::Jwks { .. }), "{error}");
        assert!(error.to_string().contains(&url), "{error}");
        assert_secret_kept(&error, &token);

        let idp = Idp::start(&[]).await;
        for (document, expected) in [
            (" ".repeat(MAX_JWKS_BYTES + 1), "over 1048576 bytes"),
            ("{\"no\": \"keys\"}".to_owned(), "no \"keys\" array"),
        ] {
            idp.serve(document);
            let error = JwtVerifier::new(idp.config())
                .unwrap()
                .verify(&token)
                .await
                .unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
        }
    }

    #[tokio::test]
    async fn keys_that_cannot_verify_say_why() {
        let rsa = Signer::rsa("rsa-1");
        let small = json!({"kty": "RSA", "kid": "small", "n": b64(&[0xc1; 128]), "e": "AQAB"});
        let enc = with(with(rsa.jwk(), "kid", json!("enc")), "use", json!("enc"));
        let rs512 = with(with(rsa.jwk(), "kid", json!("rs512")), "alg", json!("RS512"));
        let p384 = json!({"kty": "EC", "kid": "p384", "crv": "P-384", "x": "AA", "y": "AA"});
        let idp = Idp::start(&[small, enc, rs512, p384]).await;
        let verifier = JwtVerifier::new(idp.config()).unwrap();
        for (kid, why) in [
            ("small", "1024 bits"),
            ("enc", "use is \"enc\""),
            ("rs512", "RS512"),
            ("p384", "P-384"),
        ] {
            let token = rsa.sign_with(&json!({"alg": "RS256", "kid": kid}), &claims());
            let error = verifier.verify(&token).await.unwrap_err();
            assert!(
                matches!(error, JwtError::UnfitKey { .. }) && error.to_string().contains(why),
                "{kid}: {error}"
            );
        }
    }

    #[tokio::test]
    async fn without_a_kid_every_key_of_the_type_is_tried() {
        let (rsa, ec, other) = (Signer::rsa("rsa-1"), Signer::ec("ec-1"), Signer::ec("ec-2"));
        let idp = Idp::start(&[other.jwk(), ec.jwk(), rsa.jwk()]).await;
        let verifier = JwtVerifier::new(idp.config()).unwrap();
        for signer in [&rsa, &ec] {
            let token = signer.sign_with(&json!({"alg": signer.alg()}), &claims());
            verifier.verify(&token).await.unwrap();
        }
        let stranger = Signer::ec("x");
        let token = stranger.sign_with(&json!({"alg": "ES256"}), &claims());
        assert!(matches!(verifier.verify(&token).await, Err(JwtError::Signature)));
    }

    #[tokio::test]
    async fn a_configured_claim_names_the_namespaces() {
        let ec = Signer::ec("ec-1");
        let idp = Idp::start(&[ec.jwk()]).await;
        let config = JwtConfig {
            namespaces_claim: "temporal_namespaces".to_owned(),
            ..idp.config()
        };
        let verifier = JwtVerifier::new(config).unwrap();
        let token = ec.sign(&with(
            claims(),
            "temporal_namespaces",
            json!("billing payments:write"),
        ));
        assert_eq!(
            verifier.verify(&token).await.unwrap().namespaces,
            only(&["billing", "payments"])
        );
        let token = ec.sign(&with(claims(), "temporal_namespaces", json!(7)));
        let error = verifier.verify(&token).await.unwrap_err();
        assert!(matches!(error, JwtError::InvalidClaim { .. }), "{error}");
    }

    #[test]
    fn namespaces_follow_temporals_claim_mapper() {
        let cases = [
            (json!(["default:read"]), only(&["default"])),
            (
                json!(["default:read", "billing:admin", "default:write"]),
                only(&["billing", "default"]),
            ),
            (json!(["billing", "orders:READ"]), only(&["billing", "orders"])),
            (json!("default:read billing"), only(&["billing", "default"])),
            (json!(["*"]), Namespaces::All),
            (json!(["default:read", "*:read"]), Namespaces::All),
            (json!("*"), Namespaces::All),
            (json!(["temporal-system:admin"]), Namespaces::All),
            (json!(["billing:owner", ":read", "", 3, null]), only(&[])),
            (json!([]), only(&[])),
            (Value::Null, only(&[])),
        ];
        for (claim, expected) in cases {
            assert_eq!(granted(Some(&claim)), Some(expected), "{claim}");
        }
        assert_eq!(granted(None), Some(only(&[])), "no claim grants no namespace");
        assert_eq!(granted(Some(&json!({"default": "read"}))), None);
    }

    fn config(url: &str) -> JwtConfig {
        JwtConfig {
            jwks_url: url.to_owned(),
            audience: AUDIENCE.to_owned(),
            issuer: None,
            namespaces_claim: default_namespaces_claim(),
        }
    }

    #[test]
    fn configuration_is_checked_at_construction() {
        for url in [
            "https://idp.example.com/jwks",
            "http://127.0.0.1:8080/jwks",
            "http://localhost/jwks",
            "http://[::1]:1/",
        ] {
            assert!(JwtVerifier::new(config(url)).is_ok(), "{url}");
        }
        for url in [
            "http://idp.example.com/jwks",
            "http://10.0.0.1/jwks",
            "ftp://idp/jwks",
            "idp/jwks",
        ] {
            assert!(
                matches!(JwtVerifier::new(config(url)), Err(JwtError::Config(_))),
                "{url}"
            );
        }
        let empty = JwtConfig {
            audience: String::new(),
            ..config("https://idp.example.com/jwks")
        };
        assert!(matches!(JwtVerifier::new(empty), Err(JwtError::Config(_))));

        let parsed: JwtConfig =
            serde_json::from_value(json!({"jwksUrl": "https://idp/jwks", "audience": "a"})).unwrap();
        assert_eq!(
            parsed,
            JwtConfig {
                audience: "a".to_owned(),
                ..config("https://idp/jwks")
            }
        );
        let typo = json!({"jwksUrl": "https://idp/jwks", "audience": "a", "namespaceClaim": "x"});
        assert!(serde_json::from_value::<JwtConfig>(typo).is_err());
    }

    #[test]
    fn the_verifier_can_be_shared_across_tasks() {
        fn shareable<T: Send + Sync>(_: &T) {}
        fn sendable<F: Send>(_: F) {}
        let verifier = JwtVerifier::new(config("https://idp.example.com/jwks")).unwrap();
        shareable(&verifier);
        sendable(verifier.verify("x"));
    }

    proptest! {
        /// Headers near enough to valid to reach every branch of the parser.
        #[test]
        fn parsing_never_panics(
            header in "\\{(\"(alg|kid|crit)\":(\"(RS256|ES256|none|[a-z]{0,4})\"|[0-9]{1,3}|null|\\[\\]),?){0,3}\\}?",
            payload in "\\PC{0,40}",
            signature in proptest::collection::vec(any::<u8>(), 0..80),
            raw in "[A-Za-z0-9_.=-]{0,60}",
        ) {
            let _ = Jws::parse(&format!("{}.{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()), b64(&signature)));
            let _ = Jws::parse(&raw);
        }
    }
}
