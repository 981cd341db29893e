//! The operator at scale: 500 policies across 50 namespaces, each namespace with its own
//! MinIO bucket and credentials Secret, bucket rules managed and probes on, reconciled by the
//! real `claimcheck controller` process. Reports, each beside its goal:
//! - the time from the first policy created until all 500 are Ready;
//! - the controller's peak RSS and its CPU time;
//! - API server requests per reconciliation, from the API server's own metrics;
//! - how the next round of probes spreads over the probe interval.
//!
//! Needs the test environment's kube-apiserver, etcd and MinIO (`make env-install`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use claimcheck::lifecycle::S3Rules;
use claimcheck::policy::PayloadStoragePolicy;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};
use support::cluster::{Cluster, Store};
use support::replica::Replica;
use support::usage::{cpu_time, peak_rss};

const NAMESPACES: usize = 50;
const PER_NAMESPACE: usize = 10;
const POLICIES: usize = NAMESPACES * PER_NAMESPACE;
/// Short, so that the bench sees whole rounds of probes; users keep the default 5m.
const INTERVAL: Duration = Duration::from_secs(60);
/// Watched after all are Ready: long enough for every policy to be probed again.
const WINDOW: Duration = Duration::from_secs(90);
const WAIT: Duration = Duration::from_secs(600);

/// The goals this bench reports against, set from what it measured (README, "At scale").
const GOAL_READY: Duration = Duration::from_secs(60);
/// Half of the chart's memory limit.
const GOAL_RSS_MIB: f64 = 256.0;
const GOAL_REQUESTS: f64 = 3.0;
/// The busiest second of a round of probes, against an even spread over the interval.
const GOAL_BURST: f64 = 3.0;

fn main() {
    support::block_on(async {
        let cluster = Cluster::up("kube,s3");
        let client = cluster.kube().await;
        support::webhook::install(&client).await;
        let teams = teams(&cluster, &client).await;
        let controller = Controller::start(&cluster).await;
        let policies = Api::<PayloadStoragePolicy>::all(client.clone());

        let mark = Mark::now(&client, &controller).await;
        let started = Instant::now();
        create_policies(&client, &teams).await;
        let ready_at = all_ready(&policies, started).await;
        let to_ready = mark.load(&client, &controller).await;
        let rules = rules_in_place(&cluster, &teams).await;

        let mark = Mark::now(&client, &controller).await;
        let probes = probes_in(&policies, WINDOW).await;
        let steady = mark.load(&client, &controller).await;

        println!(
            "operator scale: {POLICIES} policies in {NAMESPACES} namespaces, one MinIO bucket each, rules managed, probe interval {}s:",
            INTERVAL.as_secs()
        );
        report(
            "all Ready after",
            ready_at.as_secs_f64(),
            "s",
            GOAL_READY.as_secs_f64(),
        );
        println!(
            "  reconciliations until then: {} ({:.2} per policy)",
            to_ready.reconciliations,
            to_ready.reconciliations as f64 / POLICIES as f64
        );
        println!("  bucket rules in place once all were Ready: {rules} of {POLICIES}");
        let peak_mib = controller.peak_rss() as f64 / (1024.0 * 1024.0);
        report("controller peak RSS", peak_mib, "MiB", GOAL_RSS_MIB);
        println!(
            "  controller CPU: {:.1} s until Ready, {:.1}% of a core in steady state",
            to_ready.cpu.as_secs_f64(),
            100.0 * steady.cpu.as_secs_f64() / WINDOW.as_secs_f64()
        );
        to_ready.report("until Ready");
        steady.report("steady");
        probes.report();
    });
}

/// The claimcheck rules of the teams' buckets.
async fn rules_in_place(cluster: &Cluster, teams: &[String]) -> usize {
    let mut count = 0;
    for team in teams {
        let rules = S3Rules::new(team, &cluster.options(Store::S3)).expect("the bucket's rules");
        let rules = rules.rules().await.expect("the bucket's rules");
        count += rules
            .iter()
            .filter(|r| r.id().is_some_and(|id| id.starts_with("claimcheck-")))
            .count();
    }
    count
}

/// Prints `figure` beside its goal, an upper bound.
fn report(what: &str, figure: f64, unit: &str, goal: f64) {
    let verdict = if figure <= goal { "met" } else { "NOT MET" };
    println!("  {what}: {figure:.2} {unit} (goal <= {goal} {unit}: {verdict})");
}

/// The namespaces `team-00` .. `team-49`, each with Secret `store-creds` and bucket `team-NN`.
async fn teams(cluster: &Cluster, client: &Client) -> Vec<String> {
    let names: Vec<String> = (0..NAMESPACES).map(|i| format!("team-{i:02}")).collect();
    let credentials = support::secret("store-creds", &cluster.user_env(Store::S3));
    for name in &names {
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .expect("namespace created");
        Api::<Secret>::namespaced(client.clone(), name)
            .create(&PostParams::default(), &credentials)
            .await
            .expect("Secret created");
        cluster.create_bucket(name).await;
    }
    names
}

/// Ten policies per namespace, each for a Temporal namespace of its own, so that their bucket
/// rules cover distinct prefixes of the namespace's bucket.
async fn create_policies(client: &Client, teams: &[String]) {
    let policies = teams
        .iter()
        .flat_map(|team| (0..PER_NAMESPACE).map(move |i| policy(team, i)));
    futures::stream::iter(policies)
        .map(|policy| {
            let api = Api::<PayloadStoragePolicy>::namespaced(
                client.clone(),
                &policy.namespace().unwrap_or_default(),
            );
            async move { api.create(&PostParams::default(), &policy).await.map(drop) }
        })
        .buffer_unordered(8)
        .try_collect::<()>()
        .await
        .expect("policies created");
}

fn policy(team: &str, index: usize) -> PayloadStoragePolicy {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "claimcheck.dev/v1alpha1", "kind": "PayloadStoragePolicy",
        "metadata": {"name": format!("policy-{index}"), "namespace": team},
        "spec": {
            // Never dialed: the retention is given, not read from Temporal.
            "temporal": {"address": "127.0.0.1:7233", "namespace": format!("{team}-{index}")},
            "drivers": [{"name": "hot", "url": format!("s3://{team}/payloads/"), "credentialsSecretRef": {"name": "store-creds"}}],
            "lifecycle": {"retention": "3d", "manage": true},
            "probe": {"interval": format!("{}s", INTERVAL.as_secs())},
        },
    }))
    .expect("a policy")
}

fn is_ready(policy: &PayloadStoragePolicy) -> bool {
    policy.status.as_ref().is_some_and(|s| {
        s.conditions.iter().any(|c| {
            c.type_ == "Ready" && c.status == "True" && c.observed_generation == policy.metadata.generation
        })
    })
}

/// How long after `started` the last policy became Ready.
async fn all_ready(policies: &Api<PayloadStoragePolicy>, started: Instant) -> Duration {
    loop {
        let listed = policies
            .list(&ListParams::default())
            .await
            .expect("policies listed");
        let ready = listed.items.iter().filter(|p| is_ready(p)).count();
        if ready == POLICIES {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < WAIT,
            "only {ready} of {POLICIES} policies Ready after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The probes run during `window`, as the policies' `lastProbe.time` reports them.
async fn probes_in(policies: &Api<PayloadStoragePolicy>, window: Duration) -> Probes {
    let since = jiff::Timestamp::now();
    let mut seen = BTreeSet::new();
    let started = Instant::now();
    while started.elapsed() < window {
        for policy in policies
            .list(&ListParams::default())
            .await
            .expect("policies listed")
            .items
        {
            let probe = policy.status.and_then(|s| s.last_probe);
            let time = probe.and_then(|p| p.time.parse::<jiff::Timestamp>().ok());
            if let Some(time) = time.filter(|t| *t > since) {
                seen.insert((policy.metadata.uid.unwrap_or_default(), time));
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let seconds = seen
        .iter()
        .map(|(_, time)| time.duration_since(since).as_secs())
        .collect();
    Probes { seconds }
}

/// The second of the window in which each probe ran.
struct Probes {
    seconds: Vec<i64>,
}

impl Probes {
    fn report(&self) {
        let mut per_second = BTreeMap::<i64, usize>::new();
        for second in &self.seconds {
            *per_second.entry(*second).or_default() += 1;
        }
        let busiest = per_second.values().copied().max().unwrap_or(0);
        let even = POLICIES as f64 / INTERVAL.as_secs_f64();
        println!(
            "  probes in the {} s after all were Ready: {} ({} policies probed again), in {} distinct seconds",
            WINDOW.as_secs(),
            self.seconds.len(),
            POLICIES,
            per_second.len()
        );
        report(
            &format!("busiest second, against an even spread of {even:.1} probes/s"),
            busiest as f64 / even,
            "x",
            GOAL_BURST,
        );
    }
}

/// Where the counters stood when a phase began.
struct Mark {
    requests: Requests,
    reconciliations: u64,
    cpu: Duration,
}

impl Mark {
    async fn now(client: &Client, controller: &Controller) -> Mark {
        Mark {
            requests: api_requests(client).await,
            reconciliations: controller.reconciled().await,
            cpu: controller.cpu(),
        }
    }

    /// What the controller did since the mark.
    async fn load(self, client: &Client, controller: &Controller) -> Load {
        Load {
            requests: api_requests(client).await.since(&self.requests),
            reconciliations: controller.reconciled().await - self.reconciliations,
            cpu: controller.cpu() - self.cpu,
        }
    }
}

/// What the controller asked of the API server in a phase.
struct Load {
    requests: Requests,
    reconciliations: u64,
    cpu: Duration,
}

impl Load {
    fn report(&self, phase: &str) {
        let reconciliations = self.reconciliations.max(1) as f64;
        let per = self.requests.total() as f64 / reconciliations;
        report(
            &format!("API requests per reconciliation, {phase}"),
            per,
            "",
            GOAL_REQUESTS,
        );
        for ((verb, resource), count) in &self.requests.0 {
            let per = *count as f64 / reconciliations;
            println!("    {verb:>6} {resource:<36} {count:>6}  {per:.2} per reconciliation");
        }
    }
}

/// `apiserver_request_total` by verb and resource (with its subresource), without the bench's
/// own requests: creating and listing policies, and reading metrics.
struct Requests(BTreeMap<(String, String), u64>);

impl Requests {
    fn since(&self, earlier: &Requests) -> Requests {
        let counts = self.0.iter().map(|(key, count)| {
            let before = earlier.0.get(key).copied().unwrap_or(0);
            (key.clone(), count - before)
        });
        Requests(counts.filter(|(_, count)| *count > 0).collect())
    }

    fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

async fn api_requests(client: &Client) -> Requests {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("a request");
    let text = client
        .request_text(request)
        .await
        .expect("the API server's metrics");
    let mut counts = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let label = |name: &str| {
            let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
            let end = labels[start..].find('"')? + start;
            Some(labels[start..end].to_owned())
        };
        let (verb, resource) = (
            label("verb").unwrap_or_default(),
            label("resource").unwrap_or_default(),
        );
        let the_bench_s = resource == "payloadstoragepolicies" && (verb == "POST" || verb == "LIST");
        if resource.is_empty() || the_bench_s {
            continue;
        }
        let resource = match label("subresource").unwrap_or_default() {
            sub if sub.is_empty() => resource,
            sub => format!("{resource}/{sub}"),
        };
        let value: f64 = value.parse().unwrap_or(0.0);
        *counts.entry((verb, resource)).or_insert(0) += value as u64;
    }
    Requests(counts)
}

/// `claimcheck controller`, the webhook off, as the only replica.
struct Controller(Replica);

impl Controller {
    async fn start(cluster: &Cluster) -> Controller {
        Controller(Replica::start(cluster, "bench", &["--webhook", "false"]).await)
    }

    async fn reconciled(&self) -> u64 {
        self.0.metric("claimcheck_controller_reconciliations_total").await as u64
    }

    fn cpu(&self) -> Duration {
        cpu_time(self.0.process.0.id())
    }

    fn peak_rss(&self) -> u64 {
        peak_rss(self.0.process.0.id())
    }
}
