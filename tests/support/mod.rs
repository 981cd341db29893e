//! Test support: real processes (the Temporal dev server), free ports, raw unary gRPC calls.
//! Shared by the integration tests and the benches.
#![allow(dead_code)] // each test crate uses a different part

pub mod cluster;
pub mod replica;
pub mod usage;
pub mod webhook;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body_util::{BodyExt, Full};
use tonic::body::Body;
use tonic::transport::{Channel, Endpoint};
use tower::ServiceExt;

/// Kills the child process when dropped, so a failed test leaves nothing behind.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a bench's `main` on a multi-threaded runtime, with the TLS provider installed.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    claimcheck::tls::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(future)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn spawn(program: &str, args: &[String]) -> Process {
    spawn_with_env(program, args, &BTreeMap::new())
}

pub fn spawn_with_env(program: &str, args: &[String], env: &BTreeMap<String, String>) -> Process {
    let child = Command::new(program)
        .args(args)
        .envs(env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    Process(child)
}

/// `temporal server start-dev`, from `TEMPORAL_CLI` (set by the Makefile from the test venv).
pub struct DevServer {
    pub port: u16,
    _process: Process,
}

impl DevServer {
    pub async fn start() -> DevServer {
        DevServer::start_with(&[]).await
    }

    /// A dev server with more `temporal server start-dev` arguments (dynamic config, say).
    pub async fn start_with(extra: &[&str]) -> DevServer {
        let cli = std::env::var("TEMPORAL_CLI")
            .expect("TEMPORAL_CLI must name the temporal binary: run through `make test`");
        let (port, ui_port) = (free_port(), free_port());
        let args = [
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--headless",
            "--log-level",
            "error",
        ]
        .iter()
        .chain(extra)
        .map(|a| (*a).to_owned())
        .chain([
            "--port".into(),
            port.to_string(),
            "--ui-port".into(),
            ui_port.to_string(),
        ])
        .collect::<Vec<_>>();
        let process = spawn(&cli, &args);
        let server = DevServer {
            port,
            _process: process,
        };
        let channel = channel(port);
        for _ in 0..600 {
            let ready = unary(&channel, DESCRIBE_NAMESPACE, &describe_namespace("default"), &[]).await;
            if ready.is_ok_and(|r| r.status() == "0") {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the Temporal dev server did not come up on port {port}");
    }
}

pub const DESCRIBE_NAMESPACE: &str = "/temporal.api.workflowservice.v1.WorkflowService/DescribeNamespace";
pub const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

pub fn describe_namespace(namespace: &str) -> Vec<u8> {
    let mut msg = vec![0x0a, namespace.len() as u8];
    msg.extend_from_slice(namespace.as_bytes());
    msg
}

pub fn channel(port: u16) -> Channel {
    Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("url")
        // Large messages cross this channel in the tests and benches; HTTP/2's default
        // 64 KiB windows would make it the bottleneck.
        .initial_stream_window_size(Some(8 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .connect_lazy()
}

/// A unary call's answer, as it came off the wire.
#[derive(Debug)]
pub struct Reply {
    pub headers: HeaderMap,
    pub message: Option<Bytes>,
    pub compressed: bool,
    pub trailers: HeaderMap,
}

impl Reply {
    /// The gRPC status, from the trailers or, for a trailers-only answer, the headers.
    pub fn status(&self) -> &str {
        let value = self
            .trailers
            .get("grpc-status")
            .or(self.headers.get("grpc-status"));
        value.and_then(|v| v.to_str().ok()).unwrap_or("missing")
    }

    pub fn grpc_message(&self) -> String {
        let value = self
            .trailers
            .get("grpc-message")
            .or(self.headers.get("grpc-message"));
        value.and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    }
}

/// Sends `msg` (already framed by the caller when `framed`) with extra headers.
pub async fn unary_framed(
    channel: &Channel,
    path: &str,
    framed: Bytes,
    headers: &[(&str, &str)],
) -> Result<Reply, String> {
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://test{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Body::new(Full::new(framed)))
        .map_err(|e| e.to_string())?;
    let response = channel
        .clone()
        .oneshot(request)
        .await
        .map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.map_err(|e| e.to_string())?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let mut data = collected.to_bytes();
    let (message, compressed) = if data.len() >= 5 {
        let compressed = data.get_u8() == 1;
        let len = data.get_u32() as usize;
        (Some(data.split_to(len)), compressed)
    } else {
        (None, false)
    };
    Ok(Reply {
        headers: parts.headers,
        message,
        compressed,
        trailers,
    })
}

pub async fn unary(
    channel: &Channel,
    path: &str,
    msg: &[u8],
    headers: &[(&str, &str)],
) -> Result<Reply, String> {
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    framed.extend_from_slice(msg);
    unary_framed(channel, path, Bytes::from(framed), headers).await
}

/// What `tests/e2e/scenario.py` must find in the history.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    Offloaded,
    Inline,
}

/// Runs `tests/e2e/scenario.py` (the real Python SDK as worker and client) through the
/// proxy at `proxy`, against the dev server on `server_port`: an activity returns `size`
/// bytes; the result and the history are checked.
pub fn run_scenario(proxy: &str, server_port: u16, size: usize, expect: Expect) {
    let cli = std::env::var("TEMPORAL_CLI").expect("TEMPORAL_CLI");
    let venv_python = std::path::Path::new(&cli).with_file_name("python");
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/scenario.py");
    let expect = match expect {
        Expect::Offloaded => "offloaded",
        Expect::Inline => "inline",
    };
    let out = Command::new(venv_python)
        .args([
            scenario,
            "--proxy",
            proxy,
            "--server",
            &format!("127.0.0.1:{server_port}"),
        ])
        .args(["--size", &size.to_string(), "--expect", expect])
        .output()
        .expect("the scenario runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{size} bytes, {expect}: {report}");
    assert!(report.contains("passed"), "{report}");
}

/// The reasons of the Events about policy `name`, oldest first.
pub async fn event_reasons(client: &kube::Client, name: &str) -> Vec<String> {
    use k8s_openapi::api::events::v1::Event;
    let events: kube::Api<Event> = kube::Api::namespaced(client.clone(), "default");
    let mut about: Vec<Event> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect();
    about.sort_by_key(|e| e.event_time.clone().map(|t| t.0));
    about.into_iter().filter_map(|e| e.reason).collect()
}

/// Compares with tests/golden/NAME; `UPDATE_GOLDEN=1` writes it instead.
pub fn golden(name: &str, value: &impl serde::Serialize) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let yaml = claimcheck::yaml::to_string(value).unwrap();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &yaml).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        yaml,
        expected,
        "{} differs (UPDATE_GOLDEN=1 rewrites it)",
        path.display()
    );
}

/// A Secret whose keys and values are `env`.
pub fn secret(name: &str, env: &BTreeMap<String, String>) -> k8s_openapi::api::core::v1::Secret {
    k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            env.iter()
                .map(|(k, v)| (k.clone(), k8s_openapi::ByteString(v.clone().into_bytes())))
                .collect(),
        ),
        ..Default::default()
    }
}

/// The path of a tool of the test environment (`helm`, `kubectl`, `crane`, ...), installed
/// by tests/env/install.sh if it is not yet.
pub fn installed(tool: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/env/install.sh");
    let out = Command::new("bash")
        .args([script, tool])
        .stderr(Stdio::inherit())
        .output()
        .expect("install.sh runs");
    assert!(out.status.success(), "tests/env/install.sh {tool} failed");
    let key = format!("{}_BIN=", tool.to_uppercase().replace('-', "_"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| line.strip_prefix(&key).map(str::to_owned))
        .unwrap_or_else(|| panic!("install.sh printed no {key}"))
}
