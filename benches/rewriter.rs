//! Rewriter throughput on a large history response with no references, next to a full
//! prost decode + encode of the same bytes (the baseline a non-wire-level proxy pays).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use claimcheck::driver::Driver;
use claimcheck::metrics::Metrics;
use claimcheck::payload::cache::VerifiedCache;
use claimcheck::payload::schema::Schema;
use claimcheck::payload::transform::{Settings, Tier, Transformer};
use prost::Message;
use temporalio_protos::temporal::api::common::v1::{Payload, Payloads};
use temporalio_protos::temporal::api::history::v1::{
    ActivityTaskCompletedEventAttributes, ActivityTaskScheduledEventAttributes, History, HistoryEvent,
    history_event::Attributes,
};
use temporalio_protos::temporal::api::workflowservice::v1::GetWorkflowExecutionHistoryResponse;

const HISTORY: &str = "temporal.api.workflowservice.v1.GetWorkflowExecutionHistoryResponse";

/// A history of `count` events whose payloads range from 100 B to `max_size`, all below
/// the threshold: the common case the proxy must pass through quickly.
fn history(count: usize, max_size: usize) -> Bytes {
    let events = (0..count)
        .map(|i| {
            let size = 100 + (i * 7919) % max_size;
            let payloads = Some(Payloads {
                payloads: vec![Payload {
                    metadata: [("encoding".to_owned(), b"json/plain".to_vec())].into(),
                    data: vec![(i % 251) as u8; size],
                    ..Default::default()
                }],
            });
            let attributes = if i % 2 == 0 {
                Attributes::ActivityTaskScheduledEventAttributes(ActivityTaskScheduledEventAttributes {
                    activity_id: i.to_string(),
                    input: payloads,
                    ..Default::default()
                })
            } else {
                Attributes::ActivityTaskCompletedEventAttributes(ActivityTaskCompletedEventAttributes {
                    result: payloads,
                    scheduled_event_id: i as i64,
                    ..Default::default()
                })
            };
            HistoryEvent {
                event_id: i as i64 + 1,
                attributes: Some(attributes),
                ..Default::default()
            }
        })
        .collect();
    let response = GetWorkflowExecutionHistoryResponse {
        history: Some(History { events }),
        ..Default::default()
    };
    Bytes::from(response.encode_to_vec())
}

/// Best of several rounds: the least disturbed measurement of the same work.
fn best_of(rounds: usize, mut f: impl FnMut()) -> Duration {
    (0..rounds)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    let schema = Arc::new(Schema::temporal().expect("descriptor set"));
    let tier = Tier {
        driver: Driver::open("memory://", "", &Default::default()).expect("memory store"),
        min_bytes: 0,
        accept_unscoped_keys: false,
    };
    let settings = Settings {
        threshold_bytes: 256 << 10,
        parallelism: 8,
        refresh_after: Duration::ZERO,
    };
    let transformer = Transformer::new(
        schema.clone(),
        vec![tier],
        settings,
        VerifiedCache::new(16, 1 << 20),
        Arc::new(Metrics::new()),
    )
    .expect("one tier");
    let root = schema.node(HISTORY).expect("history response is walkable");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for (count, max_size) in [(4000, 64 << 10), (50_000, 400)] {
        let msg = history(count, max_size);
        let scan = best_of(10, || {
            let out = runtime
                .block_on(transformer.rehydrate(root, &msg, "default"))
                .expect("valid message");
            assert!(out.is_none(), "no references: nothing may change");
        });
        let full = best_of(10, || {
            let decoded =
                GetWorkflowExecutionHistoryResponse::decode(black_box(&msg[..])).expect("valid message");
            black_box(decoded.encode_to_vec());
        });
        let gbps = |d: Duration| msg.len() as f64 / d.as_secs_f64() / 1e9;
        println!(
            "rewriter: history response of {} bytes, {count} events, payloads up to {max_size} B, no references",
            msg.len()
        );
        println!(
            "  wire-level scan (proxy path)   {:>9.3} ms  {:>7.2} GB/s",
            ms(scan),
            gbps(scan)
        );
        println!(
            "  prost decode + encode          {:>9.3} ms  {:>7.2} GB/s",
            ms(full),
            gbps(full)
        );
        let ratio = full.as_secs_f64() / scan.as_secs_f64();
        println!("  speed-up                       {ratio:>9.1} x   (targets: >= 1 GB/s, >= 5 x)");
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
