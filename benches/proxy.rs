//! Pass-through overhead of the proxy on small RPCs: the same client calls a real Temporal
//! dev server directly and through the proxy, interleaved, in one run.
//!
//! Needs `TEMPORAL_CLI` (the `temporal` binary) and `CLAIMCHECK_BIN`; `make bench` sets both.

use std::time::{Duration, Instant};

use tonic::transport::Channel;

#[path = "../tests/support/mod.rs"]
mod support;

use support::{DevServer, HEALTH_CHECK, free_port, spawn, unary};

const LATENCY_CALLS: usize = 3000;
const THROUGHPUT_CALLS: usize = 6000;
const CONCURRENCY: usize = 32;

/// A unary call with an empty HealthCheckRequest. The frontend rate-limits every
/// WorkflowService method (even with its `frontend.rps` keys raised, seen on the dev server
/// 1.32), which would cap both sides; its health check is exempt.
async fn call(channel: &Channel) -> Result<(), String> {
    let reply = unary(channel, HEALTH_CHECK, &[], &[]).await?;
    match reply.status() {
        "0" => Ok(()),
        other => Err(format!("grpc-status {other}: {}", reply.grpc_message())),
    }
}

async fn connect(port: u16) -> Channel {
    let channel = support::channel(port);
    for _ in 0..600 {
        if call(&channel).await.is_ok() {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing answers on port {port}");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Sequential latencies, alternating between the two targets in blocks so drift hits both.
async fn latencies(direct: &Channel, proxied: &Channel) -> (Vec<Duration>, Vec<Duration>) {
    let (mut d, mut p) = (Vec::new(), Vec::new());
    for _ in 0..LATENCY_CALLS / 100 {
        for (name, channel, out) in [("direct", direct, &mut d), ("proxy", proxied, &mut p)] {
            for i in 0..100 {
                let started = Instant::now();
                if let Err(e) = call(channel).await {
                    panic!("{name} call {i} after {} calls: {e}", out.len());
                }
                out.push(started.elapsed());
            }
        }
    }
    d.sort();
    p.sort();
    (d, p)
}

async fn throughput(channel: &Channel) -> f64 {
    let started = Instant::now();
    let workers = (0..CONCURRENCY).map(|_| {
        let channel = channel.clone();
        tokio::spawn(async move {
            for _ in 0..THROUGHPUT_CALLS / CONCURRENCY {
                call(&channel).await.expect("call succeeds");
            }
        })
    });
    for worker in workers.collect::<Vec<_>>() {
        worker.await.expect("worker finished");
    }
    THROUGHPUT_CALLS as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let claimcheck = std::env::var("CLAIMCHECK_BIN").expect("CLAIMCHECK_BIN: the claimcheck binary");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let server = runtime.block_on(DevServer::start());
    let (server_port, proxy_port, metrics_port) = (server.port, free_port(), free_port());
    let store = tempfile::tempdir().expect("temp dir");
    let _proxy = spawn(
        &claimcheck,
        &[
            "proxy".into(),
            format!("--listen=127.0.0.1:{proxy_port}"),
            format!("--upstream=127.0.0.1:{server_port}"),
            format!("--metrics-listen=127.0.0.1:{metrics_port}"),
            format!("--store=file://{}", store.path().display()),
        ],
    );
    runtime.block_on(async {
        let direct = connect(server_port).await;
        let proxied = connect(proxy_port).await;
        // Warm both paths (connections, server caches) before measuring.
        let _ = latencies(&direct, &proxied).await;
        let (d, p) = latencies(&direct, &proxied).await;
        let us = |x: Duration| x.as_secs_f64() * 1e6;
        println!("proxy: grpc.health.v1.Health/Check against temporal server start-dev, {LATENCY_CALLS} sequential calls each");
        for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
            let (a, b) = (percentile(&d, q), percentile(&p, q));
            println!("  {name}: direct {:>8.1} µs   proxy {:>8.1} µs   added {:>7.1} µs", us(a), us(b), us(b) - us(a));
        }
        let (rd, rp) = (throughput(&direct).await, throughput(&proxied).await);
        let (rd2, rp2) = (throughput(&direct).await, throughput(&proxied).await);
        let (rd, rp) = ((rd + rd2) / 2.0, (rp + rp2) / 2.0);
        println!("  throughput ({CONCURRENCY} concurrent): direct {rd:>8.0}/s   proxy {rp:>8.0}/s   ratio {:.3}", rp / rd);
        println!("  (targets: added p50 <= 50 µs, throughput >= 0.95 x direct)");
    });
}
