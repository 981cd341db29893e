//! `claimcheck controller` as a process of its own, as a Deployment's replica runs it, against
//! the test environment's API server; and its metrics.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::cluster::Cluster;
use super::{Process, free_port};

const WAIT: Duration = Duration::from_secs(60);

pub struct Replica {
    pub process: Process,
    health: u16,
}

impl Replica {
    /// Starts replica `identity` with `args` besides its identity and health port; its log
    /// goes to `<identity>.log` in the environment's directory. Returns once it is ready.
    pub async fn start(cluster: &Cluster, identity: &str, args: &[&str]) -> Replica {
        let claimcheck = std::env::var("CLAIMCHECK_BIN").expect("CLAIMCHECK_BIN: the claimcheck binary");
        let health = free_port();
        let log = std::fs::File::create(cluster.dir().join(format!("{identity}.log"))).expect("log file");
        let child = Command::new(claimcheck)
            .args(["controller", "--identity", identity])
            .args(["--health-listen", &format!("127.0.0.1:{health}")])
            .args(args)
            .env("KUBECONFIG", cluster.var("KUBECONFIG"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the controller starts");
        let replica = Replica {
            process: Process(child),
            health,
        };
        let started = Instant::now();
        while !replica.ready().await {
            assert!(
                started.elapsed() < WAIT,
                "replica {identity} did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        replica
    }

    async fn ready(&self) -> bool {
        let url = format!("http://127.0.0.1:{}/readyz", self.health);
        reqwest::get(url).await.is_ok_and(|r| r.status().is_success())
    }

    pub async fn metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.health);
        let response = reqwest::get(url).await.expect("the replica's metrics");
        response.text().await.expect("the replica's metrics")
    }

    /// The sum of the samples of metric `name` (all its label sets).
    pub async fn metric(&self, name: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with([' ', '{']))
            })
            .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }
}
