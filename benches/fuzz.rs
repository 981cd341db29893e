//! Millions of fuzz cases (tests/support/fuzz), spread over the targets by how fast each
//! runs: FUZZ_SECONDS per target (default 60) on every core, FUZZ_SEED to start elsewhere.

#[path = "../tests/support/fuzz/mod.rs"]
mod fuzz;

use std::time::{Duration, Instant};

use fuzz::alloc::Counting;
use fuzz::runner::{Target, run};

#[global_allocator]
static ALLOC: Counting = Counting;

/// Cases per batch: a batch is the unit each thread takes, with a seed of its own.
const BATCH: u64 = 2_000;

fn main() {
    let seconds = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
    let targets: Vec<Box<dyn Target>> = vec![
        Box::new(fuzz::frame::Frames),
        Box::new(fuzz::rewrite::Rewrite(fuzz::messages::Temporal::load())),
        Box::new(fuzz::reference::References::new()),
        Box::new(fuzz::config::Config),
        Box::new(fuzz::admission::Admissions::new()),
    ];
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("fuzzing, {seconds} s per target on {threads} threads, seed {seed:#x}:");
    let mut total = 0;
    for target in &targets {
        let cases = for_a_while(target.as_ref(), seed, threads, Duration::from_secs(seconds));
        total += cases;
    }
    println!("  {total} cases in all, no failure");
}

/// Runs batches of `target` on `threads` threads until `budget` has passed; exits on a failure.
fn for_a_while(target: &dyn Target, seed: u64, threads: usize, budget: Duration) -> u64 {
    let started = Instant::now();
    let cases: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads as u64)
            .map(|thread| {
                scope.spawn(move || {
                    let mut done = 0;
                    let mut batch = thread;
                    while started.elapsed() < budget {
                        let batch_seed = seed.wrapping_add(batch * BATCH);
                        if let Err(failure) = run(target, batch_seed, BATCH) {
                            eprintln!("FAILED {failure}");
                            std::process::exit(1);
                        }
                        done += BATCH;
                        batch += threads as u64;
                    }
                    done
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
    });
    let rate = cases as f64 / started.elapsed().as_secs_f64();
    println!("  {:<10} {cases:>10} cases  {rate:>9.0}/s", target.name());
    cases
}
