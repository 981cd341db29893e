//! Pass-through overhead on small RPCs: the same client calls a real Temporal dev server
//! directly, through claimcheck, and through the peer a user would pick instead (Temporal's
//! `go.temporal.io/api/proxy` pass-through, bench/peer-proxy), interleaved, in one run.
//!
//! The calls are a real WorkflowService method, GetSystemInfo, on a dev server whose rate
//! limits are raised (`frontend.rps`, `frontend.namespaceRPS`) so that they never cap a side;
//! the health check would not do, since the peer answers it itself.
//!
//! Needs `TEMPORAL_CLI` (the `temporal` binary) and `CLAIMCHECK_BIN`; `make bench` sets both,
//! and Go builds the peer (bench/peer-proxy/build.sh, cached).

use std::time::{Duration, Instant};

use tonic::transport::Channel;

#[path = "../tests/support/mod.rs"]
mod support;

use support::{DevServer, free_port, spawn, unary};

const GET_SYSTEM_INFO: &str = "/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo";
const LATENCY_CALLS: usize = 3000;
const THROUGHPUT_CALLS: usize = 6000;
const CONCURRENCY: usize = 32;
const RAISED_LIMITS: [&str; 4] = [
    "--dynamic-config-value",
    "frontend.rps=1000000",
    "--dynamic-config-value",
    "frontend.namespaceRPS=1000000",
];

async fn call(channel: &Channel) -> Result<(), String> {
    let reply = unary(channel, GET_SYSTEM_INFO, &[], &[]).await?;
    match reply.status() {
        "0" => Ok(()),
        other => Err(format!("grpc-status {other}: {}", reply.grpc_message())),
    }
}

struct Target {
    name: &'static str,
    channel: Channel,
    latencies: Vec<Duration>,
    throughput: Vec<f64>,
}

impl Target {
    async fn connect(name: &'static str, port: u16) -> Target {
        let channel = support::channel(port);
        for _ in 0..600 {
            if call(&channel).await.is_ok() {
                return Target {
                    name,
                    channel,
                    latencies: Vec::new(),
                    throughput: Vec::new(),
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{name}: nothing answers on port {port}");
    }

    /// A block of sequential calls.
    async fn time_calls(&mut self, calls: usize) {
        for i in 0..calls {
            let started = Instant::now();
            if let Err(e) = call(&self.channel).await {
                panic!("{} call {i}: {e}", self.name);
            }
            self.latencies.push(started.elapsed());
        }
    }

    async fn measure_throughput(&mut self) {
        let started = Instant::now();
        let workers = (0..CONCURRENCY).map(|_| {
            let channel = self.channel.clone();
            tokio::spawn(async move {
                for _ in 0..THROUGHPUT_CALLS / CONCURRENCY {
                    call(&channel).await.expect("call succeeds");
                }
            })
        });
        for worker in workers.collect::<Vec<_>>() {
            worker.await.expect("worker finished");
        }
        self.throughput
            .push(THROUGHPUT_CALLS as f64 / started.elapsed().as_secs_f64());
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        sorted[((sorted.len() - 1) as f64 * p).round() as usize]
    }

    fn calls_per_second(&self) -> f64 {
        self.throughput.iter().sum::<f64>() / self.throughput.len() as f64
    }
}

/// Sequential latencies in blocks, the targets taking turns so drift hits all of them; then
/// throughput, twice each, in turns.
async fn measure(targets: &mut [Target]) {
    for _ in 0..LATENCY_CALLS / 100 {
        for target in targets.iter_mut() {
            target.time_calls(100).await;
        }
    }
    for _ in 0..2 {
        for target in targets.iter_mut() {
            target.measure_throughput().await;
        }
    }
}

fn peer_binary() -> String {
    let built = std::process::Command::new("bash")
        .arg("bench/peer-proxy/build.sh")
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("bench/peer-proxy/build.sh runs");
    assert!(built.status.success(), "the peer proxy did not build");
    let stdout = String::from_utf8(built.stdout).expect("a path");
    stdout
        .lines()
        .last()
        .expect("build.sh prints the binary's path")
        .to_owned()
}

fn main() {
    let claimcheck = std::env::var("CLAIMCHECK_BIN").expect("CLAIMCHECK_BIN: the claimcheck binary");
    let peer = peer_binary();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let server = runtime.block_on(DevServer::start_with(&RAISED_LIMITS));
    let (claimcheck_port, peer_port, metrics_port) = (free_port(), free_port(), free_port());
    let store = tempfile::tempdir().expect("temp dir");
    let upstream = format!("127.0.0.1:{}", server.port);
    let _claimcheck = spawn(
        &claimcheck,
        &[
            "proxy".into(),
            format!("--listen=127.0.0.1:{claimcheck_port}"),
            format!("--upstream={upstream}"),
            format!("--metrics-listen=127.0.0.1:{metrics_port}"),
            format!("--store=file://{}", store.path().display()),
        ],
    );
    let _peer = spawn(
        &peer,
        &[
            format!("-listen=127.0.0.1:{peer_port}"),
            format!("-upstream={upstream}"),
        ],
    );
    runtime.block_on(async {
        let mut targets = [
            Target::connect("direct", server.port).await,
            Target::connect("claimcheck", claimcheck_port).await,
            Target::connect("peer", peer_port).await,
        ];
        // Warm every path (connections, server caches) before measuring.
        measure(&mut targets).await;
        for target in &mut targets {
            target.latencies.clear();
            target.throughput.clear();
        }
        measure(&mut targets).await;
        report(&targets);
    });
}

fn report(targets: &[Target]) {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let [direct, claimcheck, peer] = targets else {
        unreachable!("three targets")
    };
    println!(
        "pass-through: WorkflowService/GetSystemInfo against temporal server start-dev (rate limits raised), \
         {LATENCY_CALLS} sequential calls each, interleaved; peer = go.temporal.io/api/proxy v1.64.3"
    );
    for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
        let base = us(direct.percentile(q));
        let added = |t: &Target| us(t.percentile(q)) - base;
        println!(
            "  {name}: direct {base:>7.1} µs   claimcheck +{:>6.1} µs   peer +{:>6.1} µs   claimcheck/peer added {:.2}",
            added(claimcheck),
            added(peer),
            added(claimcheck) / added(peer),
        );
    }
    let rate = |t: &Target| t.calls_per_second();
    println!(
        "  throughput ({CONCURRENCY} concurrent): direct {:>7.0}/s   claimcheck {:>7.0}/s   peer {:>7.0}/s   claimcheck/peer {:.2}",
        rate(direct),
        rate(claimcheck),
        rate(peer),
        rate(claimcheck) / rate(peer),
    );
    println!("  (targets: claimcheck's added p50 <= 0.5 x the peer's; throughput >= the peer's)");
}
