//! Pod admission under load: 100 pods a second for 30 s, created for real (they stay
//! Pending: there is no node), through two replicas of `claimcheck controller`. Side by side,
//! as the baseline, the same rate of pods the webhook never sees (unlabelled, so the API server
//! does not call it). Reports the creates' p50, p99 and max, the refusals and the pods admitted
//! without the sidecar (both must be none), and how the reviews split between the replicas.
//!
//! The replicas sit behind a round-robin forwarder on loopback: it stands for the webhook's
//! Service, which balances connections the same way, because kube-proxy needs a node.
//!
//! Needs the test environment's kube-apiserver and etcd (`make env-install`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use claimcheck::inject::SIDECAR;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use support::free_port;
use support::replica::Replica;
use support::webhook::{
    OPERATOR_NAMESPACE, admission_quantile, cluster_with_policy, containers, install_configuration, pod,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

const RATE: u32 = 100;
const SECONDS: u32 = 30;
const GOAL_P99: Duration = Duration::from_millis(100);

fn main() {
    support::block_on(async {
        let (cluster, client) = cluster_with_policy().await;
        let backends = [free_port(), free_port()];
        let service = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let service_url = format!("https://{}", service.local_addr().expect("an address"));
        tokio::spawn(balance(service, backends));
        install_configuration(&client, &service_url).await;
        let mut replicas = Vec::new();
        for (i, port) in backends.iter().enumerate() {
            let listen = format!("127.0.0.1:{port}");
            let args = [
                "--namespace",
                OPERATOR_NAMESPACE,
                "--webhook-listen",
                &listen,
                "--webhook-url",
                &service_url,
            ];
            replicas.push(Replica::start(&cluster, &format!("replica-{i}"), &args).await);
        }
        let pods: Api<Pod> = Api::namespaced(client, "default");
        paced(&pods, true, "warm", RATE).await;
        let before = reviews(&replicas).await;
        let plain = paced(&pods, false, "plain", RATE * SECONDS).await;
        let injected = paced(&pods, true, "injected", RATE * SECONDS).await;
        let split: Vec<f64> = reviews(&replicas)
            .await
            .iter()
            .zip(&before)
            .map(|(a, b)| a - b)
            .collect();

        println!("pod admission at {RATE} pods/s for {SECONDS} s, two webhook replicas (real creates):");
        plain.print("without the webhook");
        injected.print("with the webhook   ");
        let verdict = if injected.p99() <= GOAL_P99 && injected.refused == 0 && injected.without_sidecar == 0
        {
            "met"
        } else {
            "NOT MET"
        };
        println!(
            "  p99 {:.2} x the baseline; goal p99 <= {GOAL_P99:?}, no refusal, every pod injected: {verdict}",
            injected.p99().as_secs_f64() / plain.p99().as_secs_f64()
        );
        println!("  reviews answered by each replica: {split:?}");
        for (i, replica) in replicas.iter().enumerate() {
            let metrics = replica.metrics().await;
            println!(
                "  replica {i}'s own handling: p50 <= {} s, p99 <= {} s (histogram bucket bounds)",
                admission_quantile(&metrics, 0.5),
                admission_quantile(&metrics, 0.99)
            );
        }
    });
}

/// Reviews each replica has answered.
async fn reviews(replicas: &[Replica]) -> Vec<f64> {
    let mut counts = Vec::new();
    for replica in replicas {
        counts.push(replica.metric("claimcheck_controller_admissions_total").await);
    }
    counts
}

/// Stands for the webhook's Service: each connection goes to the next replica in turn.
async fn balance(listener: TcpListener, backends: [u16; 2]) {
    for turn in 0.. {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        let port = backends[turn % backends.len()];
        tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", port)).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// Creates `count` pods at `RATE` a second, each on its own schedule whatever the others'
/// latency (an open loop, as many clients would).
async fn paced(pods: &Api<Pod>, labelled: bool, prefix: &str, count: u32) -> Outcome {
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / RATE);
    let mut creates = JoinSet::new();
    let started = Instant::now();
    for i in 0..count {
        ticks.tick().await;
        let pods = pods.clone();
        let pod = pod(&format!("{prefix}-{i}"), "default", labelled.then_some("billing"));
        creates.spawn(async move {
            let started = Instant::now();
            let created = pods.create(&PostParams::default(), &pod).await;
            (started.elapsed(), created)
        });
    }
    let sent_in = started.elapsed();
    let mut outcome = Outcome {
        latencies: Vec::new(),
        refused: 0,
        without_sidecar: 0,
        rate: f64::from(count) / sent_in.as_secs_f64(),
    };
    while let Some(joined) = creates.join_next().await {
        let (latency, created) = joined.expect("a create task");
        outcome.latencies.push(latency);
        match created {
            Err(error) => {
                outcome.refused += 1;
                if outcome.refused <= 3 {
                    eprintln!("refused: {error}");
                }
            }
            Ok(pod) if labelled && !containers(&pod).iter().any(|c| c == SIDECAR) => {
                outcome.without_sidecar += 1
            }
            Ok(_) => {}
        }
    }
    outcome.latencies.sort();
    outcome
}

struct Outcome {
    latencies: Vec<Duration>,
    refused: usize,
    without_sidecar: usize,
    /// Pods a second actually sent.
    rate: f64,
}

impl Outcome {
    fn at(&self, q: f64) -> Duration {
        let last = self.latencies.len().saturating_sub(1);
        self.latencies[((self.latencies.len() as f64 * q) as usize).min(last)]
    }

    fn p99(&self) -> Duration {
        self.at(0.99)
    }

    fn print(&self, what: &str) {
        println!(
            "  {what}: {} pods at {:.1}/s, p50 {:.2?}  p99 {:.2?}  max {:.2?}, refused {}, without the sidecar {}",
            self.latencies.len(),
            self.rate,
            self.at(0.5),
            self.p99(),
            self.at(1.0),
            self.refused,
            self.without_sidecar
        );
    }
}
