//! The proxy's transparency, against a real Temporal dev server: what it must not change
//! (bytes, headers, trailers, status details, deadlines) and what it must (compressed
//! payloads are offloaded too), and TLS to the upstream.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use claimcheck::config::{DriverConfig, ProxyConfig, TlsFiles};
use claimcheck::payload::frame;
use claimcheck::payload::reference::{CLAIM_HASH_VALUE, Reference};
use claimcheck::run::BoundProxy;
use prost::Message;
use sha2::{Digest, Sha256};
use support::{DESCRIBE_NAMESPACE, DevServer, channel, describe_namespace, unary, unary_framed};
use temporalio_protos::temporal::api::common::v1::{Payload, Payloads, WorkflowExecution, WorkflowType};
use temporalio_protos::temporal::api::history::v1::history_event::Attributes;
use temporalio_protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_protos::temporal::api::workflowservice::v1::{
    GetWorkflowExecutionHistoryRequest, GetWorkflowExecutionHistoryResponse, PollWorkflowTaskQueueRequest,
    StartWorkflowExecutionRequest,
};
use tokio::sync::oneshot;

const START: &str = "/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution";
const HISTORY: &str = "/temporal.api.workflowservice.v1.WorkflowService/GetWorkflowExecutionHistory";
const POLL: &str = "/temporal.api.workflowservice.v1.WorkflowService/PollWorkflowTaskQueue";

/// A proxy running in this process; stops when dropped.
struct RunningProxy {
    port: u16,
    store: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

async fn start_proxy(upstream: String, tls: Option<TlsFiles>, threshold_bytes: u64) -> RunningProxy {
    let store = tempfile::tempdir().expect("temp dir");
    let config = ProxyConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        metrics_listen: "127.0.0.1:0".parse().expect("addr"),
        upstream: claimcheck::config::UpstreamConfig {
            address: upstream,
            tls,
        },
        threshold_bytes,
        drivers: vec![DriverConfig {
            url: format!("file://{}", store.path().display()),
            prefix: String::new(),
            min_bytes: 0,
            options: Default::default(),
            credentials_dir: None,
            expire_after_days: None,
            accept_unscoped_keys: false,
        }],
        ..ProxyConfig::default()
    };
    let bound = BoundProxy::bind(&config).await.expect("proxy binds");
    let port = bound.grpc_addr.port();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(bound.serve(async move { _ = stopped.await }));
    RunningProxy {
        port,
        store,
        _stop: stop,
    }
}

fn start_request(workflow_id: &str, input: Vec<u8>) -> StartWorkflowExecutionRequest {
    StartWorkflowExecutionRequest {
        namespace: "default".into(),
        workflow_id: workflow_id.into(),
        workflow_type: Some(WorkflowType {
            name: "Anything".into(),
        }),
        task_queue: Some(TaskQueue {
            name: format!("{workflow_id}-queue"),
            ..Default::default()
        }),
        input: Some(Payloads {
            payloads: vec![Payload {
                metadata: [("encoding".to_owned(), b"binary/plain".to_vec())].into(),
                data: input,
                ..Default::default()
            }],
        }),
        request_id: format!("{workflow_id}-request"),
        ..Default::default()
    }
}

fn history_request(workflow_id: &str) -> Vec<u8> {
    GetWorkflowExecutionHistoryRequest {
        namespace: "default".into(),
        execution: Some(WorkflowExecution {
            workflow_id: workflow_id.into(),
            run_id: String::new(),
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn random_bytes(len: usize) -> Vec<u8> {
    // xorshift: incompressible enough that gzip cannot hide the payload's size.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_with_no_payloads_passes_byte_for_byte() {
    let server = DevServer::start().await;
    let proxy = start_proxy(format!("127.0.0.1:{}", server.port), None, 1024).await;
    let request = describe_namespace("default");
    let direct = unary(&channel(server.port), DESCRIBE_NAMESPACE, &request, &[])
        .await
        .unwrap();
    let proxied = unary(&channel(proxy.port), DESCRIBE_NAMESPACE, &request, &[])
        .await
        .unwrap();
    assert_eq!(proxied.status(), "0", "{}", proxied.grpc_message());
    assert_eq!(proxied.message, direct.message);
    assert_eq!(proxied.trailers, direct.trailers);
    // hyper's HTTP/2 server always adds `date`, and tonic does not let it be turned off;
    // every other header is the server's own.
    let mut headers = proxied.headers.clone();
    assert!(headers.remove("date").is_some());
    assert_eq!(headers, direct.headers);
}

#[tokio::test(flavor = "multi_thread")]
async fn error_status_and_details_pass_unchanged() {
    let server = DevServer::start().await;
    let proxy = start_proxy(format!("127.0.0.1:{}", server.port), None, 1 << 20).await;
    let request = start_request("dup", b"small".to_vec()).encode_to_vec();
    let first = unary(&channel(server.port), START, &request, &[]).await.unwrap();
    assert_eq!(first.status(), "0");
    // Another request id for the same workflow id: the server answers ALREADY_EXISTS with
    // a WorkflowExecutionAlreadyStartedFailure in the status details.
    let again = start_request("dup", b"small".to_vec());
    let again = StartWorkflowExecutionRequest {
        request_id: "other".into(),
        ..again
    }
    .encode_to_vec();
    let direct = unary(&channel(server.port), START, &again, &[]).await.unwrap();
    let proxied = unary(&channel(proxy.port), START, &again, &[]).await.unwrap();
    assert_eq!(direct.status(), "6");
    let details = |r: &support::Reply| {
        r.trailers
            .get("grpc-status-details-bin")
            .or(r.headers.get("grpc-status-details-bin"))
            .cloned()
    };
    assert!(details(&direct).is_some());
    assert_eq!(details(&proxied), details(&direct));
    assert_eq!(
        (proxied.status(), proxied.grpc_message()),
        (direct.status(), direct.grpc_message())
    );
}

/// The reference the server holds for a workflow's input, read straight from the server.
async fn stored_reference(server_port: u16, workflow_id: &str) -> Reference {
    let stored = unary(&channel(server_port), HISTORY, &history_request(workflow_id), &[])
        .await
        .unwrap();
    let stored = GetWorkflowExecutionHistoryResponse::decode(stored.message.unwrap()).unwrap();
    let Some(Attributes::WorkflowExecutionStartedEventAttributes(attrs)) =
        stored.history.unwrap().events[0].attributes.clone()
    else {
        panic!("first event is WorkflowExecutionStarted");
    };
    let reference = attrs.input.unwrap().payloads[0].encode_to_vec();
    Reference::from_payload(&reference)
        .unwrap()
        .expect("the input is a reference")
}

/// A large request arrives in many HTTP/2 frames, and the proxy hashes its payload while
/// they come in: the object must hold exactly the payload, under the name of its SHA-256.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_payload_is_stored_under_the_hash_of_exactly_its_bytes() {
    let server = DevServer::start().await;
    let proxy = start_proxy(format!("127.0.0.1:{}", server.port), None, 1024).await;
    let request = start_request("large", random_bytes(3 << 20));
    let payload = request.input.as_ref().unwrap().payloads[0].encode_to_vec();
    let started = unary(&channel(proxy.port), START, &request.encode_to_vec(), &[])
        .await
        .unwrap();
    assert_eq!(started.status(), "0", "{}", started.grpc_message());

    let reference = stored_reference(server.port, "large").await;
    let hash = hex::encode(Sha256::digest(&payload));
    assert_eq!(reference.claim[CLAIM_HASH_VALUE], hash);
    assert!(reference.claim["key"].ends_with(&hash), "{:?}", reference.claim);
    let stored = std::fs::read(proxy.store.path().join(&reference.claim["key"])).unwrap();
    assert!(stored == payload, "the object holds the payload's bytes");
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_compressed_payloads_are_offloaded_and_put_back() {
    let server = DevServer::start().await;
    let proxy = start_proxy(format!("127.0.0.1:{}", server.port), None, 1024).await;
    let input = random_bytes(1 << 20);
    let request = start_request("gzip", input.clone()).encode_to_vec();
    let gzip = [("grpc-encoding", "gzip"), ("grpc-accept-encoding", "gzip")];
    let started = unary_framed(&channel(proxy.port), START, gzipped(request), &gzip)
        .await
        .unwrap();
    assert_eq!(started.status(), "0", "{}", started.grpc_message());

    // Read straight from the server: history holds a reference, not the megabyte.
    let reference = stored_reference(server.port, "gzip").await;
    let key = &reference.claim["key"];
    assert!(
        proxy.store.path().join(key).is_file(),
        "the object is in the store at {key}"
    );

    // Through the proxy, a gzip client gets the original back, uncompressed: recompressing
    // what was put back cost more on the loopback hop than it saved.
    let reply = unary_framed(
        &channel(proxy.port),
        HISTORY,
        gzipped(history_request("gzip")),
        &gzip,
    )
    .await
    .unwrap();
    assert_eq!(reply.status(), "0", "{}", reply.grpc_message());
    assert!(!reply.compressed, "a rewritten answer is sent with flag 0");
    let history = GetWorkflowExecutionHistoryResponse::decode(reply.message.unwrap()).unwrap();
    let Some(Attributes::WorkflowExecutionStartedEventAttributes(attrs)) =
        history.history.unwrap().events[0].attributes.clone()
    else {
        panic!("first event is WorkflowExecutionStarted");
    };
    assert_eq!(attrs.input.unwrap().payloads[0].data, input);
}

/// A message framed gzip-compressed, as a gzip client sends it.
fn gzipped(message: Vec<u8>) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut encoder, &message).unwrap();
    let mut framed = frame::encode(vec![encoder.finish().unwrap().into()])
        .unwrap()
        .concat();
    framed[0] = 1; // the compressed flag
    Bytes::from(framed)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_poll_keeps_the_callers_deadline() {
    let server = DevServer::start().await;
    let proxy = start_proxy(format!("127.0.0.1:{}", server.port), None, 1024).await;
    let poll = PollWorkflowTaskQueueRequest {
        namespace: "default".into(),
        task_queue: Some(TaskQueue {
            name: "nobody-writes-here".into(),
            ..Default::default()
        }),
        identity: "test".into(),
        ..Default::default()
    }
    .encode_to_vec();
    let started = Instant::now();
    let reply = unary(&channel(proxy.port), POLL, &poll, &[("grpc-timeout", "3S")])
        .await
        .unwrap();
    let elapsed = started.elapsed();
    // The server answers an empty poll just before the deadline it was given; had the proxy
    // dropped the header, the poll would hang for the server's default of about a minute.
    assert!(elapsed < Duration::from_secs(5), "poll took {elapsed:?}");
    assert!(
        elapsed > Duration::from_secs(1),
        "poll returned at once: {reply:?}"
    );
    assert!(["0", "4"].contains(&reply.status()), "{reply:?}");
}

/// TLS terminator requiring a client certificate, in front of the dev server (which has
/// no TLS of its own). Real rustls on both sides; only the byte pipe is the test's.
mod tls {
    use std::path::Path;
    use std::sync::Arc;

    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::TlsAcceptor;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::server::WebPkiClientVerifier;
    use tokio_rustls::rustls::{RootCertStore, ServerConfig};

    pub struct Pki {
        pub ca: String,
        pub server: (String, String),
        pub client: (String, String),
    }

    pub fn pki() -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |name: &str| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(vec![name.to_owned()])
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
            (cert.pem(), key.serialize_pem())
        };
        Pki {
            ca: ca_cert.pem(),
            server: leaf("localhost"),
            client: leaf("worker"),
        }
    }

    /// Serves TLS on a free port and pipes each connection to `upstream_port`.
    pub async fn terminator(pki: &Pki, upstream_port: u16) -> u16 {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(pki.ca.as_bytes()).unwrap())
            .unwrap();
        let verifier = WebPkiClientVerifier::builder(Arc::new(roots)).build().unwrap();
        let chain = vec![CertificateDer::from_pem_slice(pki.server.0.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(pki.server.1.as_bytes()).unwrap();
        let mut config = ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", upstream_port)).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                    }
                });
            }
        });
        port
    }

    pub fn write(dir: &Path, name: &str, pem: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_to_the_upstream() {
    claimcheck::tls::install_crypto_provider();
    let server = DevServer::start().await;
    let pki = tls::pki();
    let tls_port = tls::terminator(&pki, server.port).await;
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles {
        ca_file: Some(tls::write(dir.path(), "ca.pem", &pki.ca)),
        cert_file: Some(tls::write(dir.path(), "client.pem", &pki.client.0)),
        key_file: Some(tls::write(dir.path(), "client.key", &pki.client.1)),
        server_name: Some("localhost".into()),
    };
    let upstream = format!("https://127.0.0.1:{tls_port}");
    let proxy = start_proxy(upstream.clone(), Some(files.clone()), 1024).await;
    let reply = describe_default(proxy.port).await;
    assert_eq!(reply.status(), "0", "{}", reply.grpc_message());

    // Without a client certificate the terminator refuses the handshake.
    let no_client_cert = TlsFiles {
        cert_file: None,
        key_file: None,
        ..files
    };
    let proxy = start_proxy(upstream, Some(no_client_cert), 1024).await;
    let reply = describe_default(proxy.port).await;
    assert_eq!(reply.status(), "14", "UNAVAILABLE: {}", reply.grpc_message());
}

async fn describe_default(port: u16) -> support::Reply {
    let request = describe_namespace("default");
    unary(&channel(port), DESCRIBE_NAMESPACE, &request, &[])
        .await
        .expect("a gRPC answer")
}
