//! A short run of every fuzz target (tests/support/fuzz): `make bench` runs millions of
//! cases; FUZZ_CASES and FUZZ_SEED replay more, or one failing case.

#[path = "support/fuzz/mod.rs"]
mod fuzz;

use fuzz::alloc::Counting;
use fuzz::runner::{Target, run};

#[global_allocator]
static ALLOC: Counting = Counting;

fn cases(default: u64) -> u64 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn seed() -> u64 {
    let given = std::env::var("FUZZ_SEED").ok();
    given
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0xC1A1_3C4E)
}

fn fuzz(target: &dyn Target, default: u64) {
    if let Err(failure) = run(target, seed(), cases(default)) {
        panic!("{failure}");
    }
}

#[test]
fn frames() {
    fuzz(&fuzz::frame::Frames, 20_000);
}

#[test]
fn temporal_messages_walked_and_rewritten() {
    fuzz(&fuzz::rewrite::Rewrite(fuzz::messages::Temporal::load()), 5_000);
}

#[test]
fn references_and_claims() {
    fuzz(&fuzz::reference::References::new(), 20_000);
}

#[test]
fn proxy_configurations() {
    fuzz(&fuzz::config::Config, 5_000);
}

#[test]
fn admission_reviews() {
    fuzz(&fuzz::admission::Admissions::new(), 5_000);
}
