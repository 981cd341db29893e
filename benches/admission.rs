//! Pod admission through the real API server: 1,000 pods the webhook injects, side by
//! side with 1,000 it never sees (unlabelled, so the API server does not call it), in
//! alternating blocks so that drift hits both; dry-run creates, so nothing accumulates.
//! Also the webhook's own handling time, from its histogram.
//!
//! Needs the test environment's kube-apiserver and etcd (`make env-install`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use support::webhook::{admission_quantile, pod, webhook_with_policy};

const ADMISSIONS: usize = 1000;
const BLOCK: usize = 100;

async fn block(pods: &Api<Pod>, labelled: bool, first: usize, samples: &mut Vec<Duration>) {
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    for i in first..first + BLOCK {
        let pod = pod(&format!("pod-{i}"), "default", labelled.then_some("billing"));
        let started = Instant::now();
        pods.create(&dry_run, &pod).await.expect("admitted");
        samples.push(started.elapsed());
    }
}

fn quantiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    (at(0.5), at(0.99))
}

fn main() {
    support::block_on(async {
        let (_cluster, client, _webhook, telemetry) = webhook_with_policy(Duration::from_secs(3600)).await;
        let pods: Api<Pod> = Api::namespaced(client, "default");
        let (mut warm, mut injected, mut plain) = (Vec::new(), Vec::new(), Vec::new());
        block(&pods, true, 0, &mut warm).await;
        block(&pods, false, 0, &mut warm).await;
        for first in (0..ADMISSIONS).step_by(BLOCK) {
            block(&pods, false, first, &mut plain).await;
            block(&pods, true, first, &mut injected).await;
        }
        let (plain_p50, plain_p99) = quantiles(plain);
        let (injected_p50, injected_p99) = quantiles(injected);
        let metrics = telemetry.encode();
        println!("pod admission through the API server, {ADMISSIONS} each (dry-run creates):");
        println!("  without the webhook: p50 {plain_p50:.2?}  p99 {plain_p99:.2?}");
        println!(
            "  with the webhook:    p50 {injected_p50:.2?}  p99 {injected_p99:.2?}  ({:.2} x / {:.2} x)",
            injected_p50.as_secs_f64() / plain_p50.as_secs_f64(),
            injected_p99.as_secs_f64() / plain_p99.as_secs_f64()
        );
        println!(
            "  the webhook's own handling: p50 <= {} s, p99 <= {} s (histogram bucket bounds; target p99 <= 10 ms)",
            admission_quantile(&metrics, 0.5),
            admission_quantile(&metrics, 0.99)
        );
    });
}
