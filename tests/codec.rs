//! The codec server as the Web UI and the CLI call it (docs/codec-server.md), over real
//! HTTP against a proxy in this process with a filesystem store: what it resolves, what it
//! keeps, what it refuses and with which status, CORS, tokens, TLS and its metrics.
//! The browser and the `temporal` CLI themselves are in tests/e2e.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use claimcheck::config::{CacheConfig, CodecConfig, DriverConfig, ProxyConfig, ServerTlsFiles};
use claimcheck::run::{BoundCodecServer, BoundProxy};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

const UI: &str = "http://127.0.0.1:8233";
const THRESHOLD: usize = 1024;

struct Codec {
    url: String,
    metrics: String,
    store: tempfile::TempDir,
    http: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

fn config(store: &Path, codec: CodecConfig) -> ProxyConfig {
    ProxyConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        metrics_listen: "127.0.0.1:0".parse().expect("addr"),
        threshold_bytes: THRESHOLD as u64,
        drivers: vec![DriverConfig {
            url: format!("file://{}", store.display()),
            prefix: "team/".into(),
            min_bytes: 0,
            options: Default::default(),
            credentials_dir: None,
            expire_after_days: None,
            accept_unscoped_keys: false,
        }],
        codec: Some(codec),
        ..ProxyConfig::default()
    }
}

fn loopback() -> CodecConfig {
    CodecConfig {
        allowed_origins: vec![UI.into()],
        decode_max_bytes: 64 * 1024,
        ..CodecConfig::new("127.0.0.1:0".parse().expect("addr"))
    }
}

async fn start(codec: CodecConfig) -> Codec {
    start_with_cache(codec, CacheConfig::default()).await
}

/// With the cache off, every reference is read from the store, as by a replica that did not
/// write the object (the one that did serves what it wrote from its cache).
async fn start_with_cache(codec: CodecConfig, cache: CacheConfig) -> Codec {
    let store = tempfile::tempdir().expect("temp dir");
    let https = codec.tls.is_some();
    let config = ProxyConfig {
        cache,
        ..config(store.path(), codec)
    };
    let bound = BoundProxy::bind(&config).await.expect("proxy binds");
    let scheme = if https { "https" } else { "http" };
    let url = format!("{scheme}://{}", bound.codec_addr.expect("a codec listener"));
    let metrics = format!("http://{}/metrics", bound.metrics_addr);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(bound.serve(async move { _ = stopped.await }));
    Codec {
        url,
        metrics,
        store,
        http: reqwest::Client::new(),
        _stop: stop,
    }
}

/// A payload as the UI sends it: protojson, camelCase.
fn payload(data: &[u8]) -> Value {
    json!({"metadata": {"encoding": STANDARD.encode("json/plain")}, "data": STANDARD.encode(data)})
}

fn big(len: usize) -> Vec<u8> {
    let mut data = b"\"".to_vec();
    data.extend((0..len - 2).map(|i| b'a' + (i % 26) as u8));
    data.push(b'"');
    data
}

impl Codec {
    async fn post(&self, path: &str, namespace: &str, payloads: &[Value]) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.url))
            .header("X-Namespace", namespace)
            .json_body(&json!({ "payloads": payloads }))
            .send()
            .await
            .expect("the codec answers")
    }

    async fn ok(&self, path: &str, namespace: &str, payloads: &[Value]) -> Vec<Value> {
        let response = self.post(path, namespace, payloads).await;
        let status = response.status();
        let body = response.text().await.expect("a body");
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let answer: Value = serde_json::from_str(&body).expect("JSON");
        answer["payloads"].as_array().expect("payloads").clone()
    }

    /// Offloads `data` through /encode in `namespace` and returns the reference.
    async fn offload(&self, namespace: &str, data: &[u8]) -> Value {
        let encoded = self.ok("/encode", namespace, &[payload(data)]).await;
        assert!(is_reference(&encoded[0]), "{} bytes stay inline", data.len());
        encoded[0].clone()
    }

    fn object_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out)
                } else {
                    out.push(path)
                }
            }
        }
        let mut files = Vec::new();
        walk(self.store.path(), &mut files);
        files
    }

    async fn metric(&self, needle: &str) -> bool {
        let text = self
            .http
            .get(&self.metrics)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        text.lines().any(|l| l.contains(needle))
    }
}

/// reqwest is built without its `json` feature: the body is written here.
trait JsonBody {
    fn json_body(self, body: &Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, body: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(body.to_string())
    }
}

fn is_reference(payload: &Value) -> bool {
    let message_type = payload["metadata"]["messageType"].as_str().unwrap_or_default();
    STANDARD.decode(message_type).unwrap_or_default() == b"temporal.api.sdk.v1.ExternalStorageReference"
}

fn data_of(payload: &Value) -> Vec<u8> {
    STANDARD
        .decode(payload["data"].as_str().expect("data"))
        .expect("base64")
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test]
async fn the_cli_gets_originals_and_the_ui_gets_small_ones_decoded_and_large_ones_to_download() {
    let codec = start(loopback()).await;
    let (small, large) = (big(8 * 1024), big(200 * 1024));
    let small_ref = codec.offload("default", &small).await;
    let large_ref = codec.offload("default", &large).await;
    assert_eq!(
        large_ref["externalPayloads"][0]["sizeBytes"]
            .as_str()
            .map(|s| s.parse::<usize>().is_ok()),
        Some(true)
    );
    let inline = payload(b"\"tiny\"");

    // The CLI: no flag, every reference it can resolve comes back, in order.
    let cli = codec
        .ok(
            "/decode",
            "default",
            &[small_ref.clone(), inline.clone(), large_ref.clone()],
        )
        .await;
    assert_eq!(sha256(&data_of(&cli[0])), sha256(&small));
    assert_eq!(data_of(&cli[1]), b"\"tiny\"");
    // The CLI cannot download: over decodeMaxBytes it still gets the original.
    assert_eq!(sha256(&data_of(&cli[2])), sha256(&large));

    // The UI: the small one decoded, the large one kept with its size for the Download label.
    let ui = codec
        .ok(
            "/decode?preserveStorageRefs=true",
            "default",
            &[small_ref, large_ref.clone()],
        )
        .await;
    assert_eq!(sha256(&data_of(&ui[0])), sha256(&small));
    assert_eq!(ui[1], large_ref, "the reference comes back exactly as sent");

    // Download gives the original payload, metadata and all.
    let downloaded = codec
        .ok("/download?preserveStorageRefs=true", "default", &[large_ref])
        .await;
    assert_eq!(sha256(&data_of(&downloaded[0])), sha256(&large));
    assert_eq!(
        downloaded[0]["metadata"]["encoding"],
        STANDARD.encode("json/plain")
    );
    assert!(
        codec
            .metric(
                r#"claimcheck_codec_requests_total{operation="download",namespace="default",outcome="ok"} 1"#
            )
            .await
    );
}

#[tokio::test]
async fn the_cli_spelling_and_a_namespace_in_the_path_are_understood() {
    let codec = start(loopback()).await;
    let data = big(4 * 1024);
    let reference = codec.offload("billing", &data).await;
    // What Go's encoding/json sends: snake_case, size as a number.
    let size: u64 = reference["externalPayloads"][0]["sizeBytes"]
        .as_str()
        .expect("size")
        .parse()
        .expect("number");
    let cli = json!({"metadata": reference["metadata"], "data": reference["data"],
                     "external_payloads": [{"size_bytes": size}]});
    let response = codec
        .http
        .post(format!("{}/billing/decode", codec.url))
        .json_body(&json!({ "payloads": [cli] }))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = serde_json::from_str(&response.text().await.expect("text")).expect("JSON");
    assert_eq!(sha256(&data_of(&answer["payloads"][0])), sha256(&data));
}

#[tokio::test]
async fn references_outside_the_namespace_or_prefix_are_refused_and_nothing_else_is_returned() {
    let codec = start(loopback()).await;
    let reference = codec.offload("billing", &big(4 * 1024)).await;
    let response = codec
        .post("/decode", "default", std::slice::from_ref(&reference))
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let message = response.text().await.expect("text");
    assert!(
        message.contains("team/v0/ns/billing/") && message.contains("default"),
        "{message}"
    );

    // A forged key under the prefix but outside any namespace scope.
    let mut body: Value = serde_json::from_slice(&data_of(&reference)).expect("reference JSON");
    body["claimData"]["path"] = json!("team/../secrets/d/sha256/00");
    body["claimData"]["key"] = json!("team/../secrets/d/sha256/00");
    let forged = json!({"metadata": reference["metadata"], "data": STANDARD.encode(body.to_string()),
                        "externalPayloads": reference["externalPayloads"]});
    for path in ["/decode", "/download"] {
        let response = codec.post(path, "billing", std::slice::from_ref(&forged)).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
    }
    assert!(
        codec
            .metric(r#"operation="decode",namespace="default",outcome="denied"} 1"#)
            .await
    );
}

#[tokio::test]
async fn a_corrupted_or_missing_object_fails_closed_naming_it() {
    let no_cache = CacheConfig {
        max_entries: 0,
        max_bytes: 0,
    };
    let codec = start_with_cache(loopback(), no_cache).await;
    let reference = codec.offload("default", &big(4 * 1024)).await;
    let files = codec.object_files();
    assert_eq!(files.len(), 1);
    let mut bytes = std::fs::read(&files[0]).expect("object");
    bytes[100] ^= 1;
    std::fs::write(&files[0], &bytes).expect("corrupt it");
    let response = codec
        .post("/decode", "default", std::slice::from_ref(&reference))
        .await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let message = response.text().await.expect("text");
    assert!(
        message.contains("integrity check failed") && message.contains("d/sha256/"),
        "{message}"
    );

    std::fs::remove_file(&files[0]).expect("delete it");
    let response = codec.post("/download", "default", &[reference]).await;
    assert_eq!(response.status(), StatusCode::GONE);
    assert!(response.text().await.expect("text").contains("does not exist"));
}

#[tokio::test]
async fn download_takes_only_references_of_its_own_stores() {
    let codec = start(loopback()).await;
    let response = codec.post("/download", "default", &[payload(b"1")]).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let foreign = json!({"metadata": {"encoding": STANDARD.encode("json/protobuf"),
        "messageType": STANDARD.encode("temporal.api.sdk.v1.ExternalStorageReference")},
        "data": STANDARD.encode(r#"{"driverName":"aws.s3driver","claimData":{"bucket":"other","key":"k"}}"#)});
    let response = codec
        .post("/download", "default", std::slice::from_ref(&foreign))
        .await;
    // The UI reads a 404 as "not configured to download from external storage".
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // /decode leaves a reference it cannot resolve to whoever can.
    assert_eq!(
        codec
            .ok("/decode", "default", std::slice::from_ref(&foreign))
            .await[0],
        foreign
    );
    for body in ["{", r#"{"payloads":[{"data":"%%%"}]}"#] {
        let response = codec
            .http
            .post(format!("{}/decode", codec.url))
            .header("X-Namespace", "default")
            .body(body)
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
    }
}

#[tokio::test]
async fn cors_is_granted_to_the_configured_origin_only() {
    let codec = start(loopback()).await;
    let preflight = |origin: &'static str| {
        codec
            .http
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/decode?preserveStorageRefs=true", codec.url),
            )
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "content-type,x-namespace,authorization,authorization-extras",
            )
            .send()
    };
    let granted = preflight(UI).await.expect("answer");
    assert!(granted.status().is_success());
    let header = |name: &str| {
        granted
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("access-control-allow-origin"), UI);
    assert_eq!(header("access-control-allow-credentials"), "true");
    let allowed = header("access-control-allow-headers").to_ascii_lowercase();
    for name in [
        "content-type",
        "x-namespace",
        "authorization",
        "authorization-extras",
    ] {
        assert!(allowed.contains(name), "{name} missing from {allowed}");
    }
    let refused = preflight("http://evil.example").await.expect("answer");
    assert!(refused.headers().get("access-control-allow-origin").is_none());
    let post = codec
        .http
        .post(format!("{}/decode", codec.url))
        .header("Origin", "http://evil.example")
        .header("X-Namespace", "default")
        .json_body(&json!({"payloads": []}))
        .send()
        .await
        .expect("answer");
    assert_eq!(post.status(), StatusCode::FORBIDDEN);
    // The call itself, from the UI's origin, carries the grant too, or the browser hides it.
    let call = codec
        .http
        .post(format!("{}/decode", codec.url))
        .header("Origin", UI)
        .header("X-Namespace", "default")
        .json_body(&json!({"payloads": []}))
        .send()
        .await
        .expect("answer");
    assert_eq!(call.status(), StatusCode::OK);
    assert_eq!(call.headers()["access-control-allow-origin"], UI);
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

#[tokio::test]
async fn tokens_authenticate_and_name_the_namespaces_they_may_read() {
    let dir = tempfile::tempdir().expect("dir");
    let tokens = write(
        dir.path(),
        "tokens",
        "oncall:t0ken-oncall\nbilling-team:t0ken-billing:billing\n",
    );
    let codec = start(CodecConfig {
        tokens_file: Some(tokens),
        ..loopback()
    })
    .await;
    let call = |token: Option<&'static str>, namespace: &'static str| {
        let mut request = codec
            .http
            .post(format!("{}/decode", codec.url))
            .header("X-Namespace", namespace)
            .json_body(&json!({"payloads": []}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let none = call(None, "default").await.expect("answer");
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    let wrong = call(Some("guess"), "default").await.expect("answer");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(!wrong.text().await.expect("text").contains("guess"));
    assert_eq!(
        call(Some("t0ken-oncall"), "default")
            .await
            .expect("answer")
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        call(Some("t0ken-billing"), "billing")
            .await
            .expect("answer")
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        call(Some("t0ken-billing"), "default")
            .await
            .expect("answer")
            .status(),
        StatusCode::FORBIDDEN
    );
    assert!(
        codec
            .metric(r#"operation="decode",namespace="",outcome="unauthenticated"} 2"#)
            .await
    );

    // The Secret changes under the running codec: the revoked token stops working, no restart.
    write(dir.path(), "tokens", "billing-team:t0ken-billing:billing\n");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while call(Some("t0ken-oncall"), "default")
        .await
        .expect("answer")
        .status()
        == StatusCode::OK
    {
        assert!(
            std::time::Instant::now() < deadline,
            "a revoked token still works"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        call(Some("t0ken-oncall"), "default")
            .await
            .expect("answer")
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(Some("t0ken-billing"), "billing")
            .await
            .expect("answer")
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn off_loopback_the_codec_needs_tls_and_credentials() {
    let store = tempfile::tempdir().expect("dir");
    let open = CodecConfig::new("0.0.0.0:0".parse().expect("addr"));
    let error = BoundProxy::bind(&config(store.path(), open))
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        error.contains("not loopback") && error.contains("codec.tls"),
        "{error}"
    );

    let dir = tempfile::tempdir().expect("dir");
    let tls = self_signed(dir.path());
    let no_auth = CodecConfig {
        tls: Some(tls.clone()),
        ..CodecConfig::new("0.0.0.0:0".parse().expect("addr"))
    };
    let error = BoundProxy::bind(&config(store.path(), no_auth))
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(error.contains("tokensFile") && error.contains("oidc"), "{error}");
}

#[tokio::test]
async fn over_tls_the_codec_serves_https() {
    let dir = tempfile::tempdir().expect("dir");
    let tls = self_signed(dir.path());
    let tokens = write(dir.path(), "tokens", "oncall:secret\n");
    let codec = start(CodecConfig {
        tls: Some(tls.clone()),
        tokens_file: Some(tokens),
        ..loopback()
    })
    .await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&tls.cert_file).expect("cert")).expect("PEM");
    let https = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .expect("client");
    let url = codec.url.replace("127.0.0.1", "localhost");
    let answer = https
        .post(format!("{url}/encode"))
        .header("X-Namespace", "default")
        .bearer_auth("secret")
        .json_body(&json!({"payloads": [payload(&big(4096))]}))
        .send()
        .await
        .expect("an HTTPS answer");
    assert_eq!(answer.status(), StatusCode::OK);
    let body: Value = serde_json::from_str(&answer.text().await.expect("text")).expect("JSON");
    assert!(is_reference(&body["payloads"][0]));

    // cert-manager renews the certificate in the mounted Secret: new connections get the new one.
    let renewed = self_signed(dir.path());
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&renewed.cert_file).expect("cert")).expect("PEM");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        // A client per try: a kept-alive connection would keep the old certificate.
        let renewed_only = reqwest::Client::builder()
            .tls_certs_only([ca.clone()])
            .build()
            .expect("client");
        let answered = renewed_only.post(format!("{url}/decode")).send().await;
        if answered.is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the renewed certificate is not served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn self_signed(dir: &Path) -> ServerTlsFiles {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    ServerTlsFiles {
        cert_file: write(dir, "tls.crt", &cert.pem()),
        key_file: write(dir, "tls.key", &key.serialize_pem()),
    }
}

/// An OIDC provider's JWKS, served on loopback by the test: no identity provider comes from
/// the registries as something a test can run, so this one signs its tokens with ring.
struct Idp {
    key: ring::signature::EcdsaKeyPair,
    jwks_url: String,
}

impl Idp {
    async fn start() -> Idp {
        use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).expect("key");
        let point = key.public_key().as_ref(); // 0x04 || x || y
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
                                    "x": b64(&point[1..33]), "y": b64(&point[33..65])}]})
        .to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let jwks_url = format!("http://{}/jwks.json", listener.local_addr().expect("addr"));
        let app = axum::Router::new().route("/jwks.json", axum::routing::get(move || async move { jwks }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Idp { key, jwks_url }
    }

    fn token(&self, audience: &str, permissions: &[&str]) -> String {
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let header = json!({"alg": "ES256", "kid": "k1", "typ": "JWT"});
        let claims = json!({"sub": "oncall@example.com", "aud": audience, "iss": "https://idp.test",
                            "exp": now + 300, "iat": now, "permissions": permissions});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = ring::rand::SystemRandom::new();
        let signature = self.key.sign(&rng, input.as_bytes()).expect("sign");
        format!("{input}.{}", b64(signature.as_ref()))
    }
}

#[tokio::test]
async fn oidc_tokens_are_verified_and_their_permissions_name_the_namespaces() {
    let idp = Idp::start().await;
    let codec = start(CodecConfig {
        oidc: Some(claimcheck::codec::jwt::JwtConfig {
            jwks_url: idp.jwks_url.clone(),
            audience: "temporal-codec".into(),
            issuer: Some("https://idp.test".into()),
            namespaces_claim: "permissions".into(),
        }),
        ..loopback()
    })
    .await;
    let decode = |token: String, namespace: &'static str| {
        codec
            .http
            .post(format!("{}/decode", codec.url))
            .header("X-Namespace", namespace)
            .bearer_auth(token)
            .json_body(&json!({"payloads": []}))
            .send()
    };
    let billing = idp.token("temporal-codec", &["billing:read"]);
    assert_eq!(
        decode(billing.clone(), "billing").await.expect("answer").status(),
        StatusCode::OK
    );
    assert_eq!(
        decode(billing, "default").await.expect("answer").status(),
        StatusCode::FORBIDDEN
    );
    let other_audience = idp.token("another-app", &["billing:read"]);
    let refused = decode(other_audience, "billing").await.expect("answer");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    // Which audience was wanted is logged, not told to the caller.
    assert_eq!(
        refused.text().await.expect("text"),
        "the bearer token does not verify"
    );
    let everything = idp.token("temporal-codec", &["temporal-system:admin"]);
    assert_eq!(
        decode(everything, "default").await.expect("answer").status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_codec_server_alone_reads_what_a_proxy_stored() {
    let proxy = start(loopback()).await;
    let data = big(16 * 1024);
    let reference = proxy.offload("default", &data).await;

    let mut alone = config(proxy.store.path(), loopback());
    let error = BoundCodecServer::bind(&ProxyConfig {
        codec: None,
        ..alone.clone()
    })
    .await
    .err()
    .expect("refused")
    .to_string();
    assert!(error.contains("codec.listen"), "{error}");
    // No Temporal frontend: a codec server alone never dials one.
    alone.upstream.address = "127.0.0.1:1".into();
    let bound = BoundCodecServer::bind(&alone).await.expect("binds");
    let url = format!("http://{}/decode", bound.codec_addr);
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(bound.serve(async move { _ = stopped.await }));
    let answer = proxy
        .http
        .post(url)
        .header("X-Namespace", "default")
        .json_body(&json!({ "payloads": [reference] }))
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), StatusCode::OK);
    let body: Value = serde_json::from_str(&answer.text().await.expect("text")).expect("JSON");
    assert_eq!(sha256(&data_of(&body["payloads"][0])), sha256(&data));
}

#[tokio::test]
async fn a_call_takes_its_whole_budget_at_once_and_one_over_the_budget_is_refused_at_once() {
    let store = tempfile::tempdir().expect("dir");
    let mut small = config(store.path(), loopback());
    small.limits.inflight_bytes = 1 << 20;
    small.limits.max_message_bytes = 1 << 20;
    let bound = BoundProxy::bind(&small).await.expect("binds");
    let url = format!("http://{}", bound.codec_addr.expect("codec"));
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(bound.serve(async move { _ = stopped.await }));
    let post = |path: &'static str, payloads: Vec<Value>| {
        reqwest::Client::new()
            .post(format!("{url}{path}"))
            .header("X-Namespace", "default")
            .json_body(&json!({ "payloads": payloads }))
            .send()
    };
    let mut references = Vec::new();
    for seed in 0..3 {
        let mut data = big(100 * 1024);
        data[1] = b'0' + seed;
        let answer = post("/encode", vec![payload(&data)]).await.expect("answer");
        let body: Value = serde_json::from_str(&answer.text().await.expect("text")).expect("JSON");
        references.push(body["payloads"][0].clone());
    }
    // Two originals of 100 KiB, held four times over, fit the 1 MiB budget in one call.
    let two = post("/decode", references[..2].to_vec()).await.expect("answer");
    assert_eq!(two.status(), StatusCode::OK);
    // Three do not: refused now, rather than waiting for budget it already holds.
    let three = post("/decode", references.clone()).await.expect("answer");
    assert_eq!(three.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(three.text().await.expect("text").contains("in-flight budget"));
}

#[tokio::test]
async fn a_codec_for_one_namespace_serves_no_other_whatever_the_token_allows() {
    let codec = start(CodecConfig {
        namespaces: vec!["billing".into()],
        ..loopback()
    })
    .await;
    codec.offload("billing", &big(4096)).await;
    let response = codec.post("/decode", "default", &[]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        response
            .text()
            .await
            .expect("text")
            .contains("does not serve namespace \"default\"")
    );
}
