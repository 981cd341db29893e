//! Runs cases of a target, each from its own seed, and stops at the first that panics,
//! breaks a property or allocates beyond its bound.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::alloc;
use super::rng::Rng;

/// Room every case gets beyond its bound: parsers' tables, error strings, small buffers.
const SLACK: usize = 2 << 20;

/// One kind of input, and what must hold of it.
pub trait Target: Sync {
    fn name(&self) -> &'static str;

    /// Builds an input from `rng`, calls [`alloc::start`] once it is built, and checks the
    /// outcome. `Ok` gives the bytes the case may legitimately hold at once (its input, the
    /// limits it was given); it may allocate a few times that, never more.
    fn case(&self, rng: &mut Rng) -> Result<usize, String>;
}

/// `cases` cases of `target`; case `i` is seeded with `seed + i`, which a failure names.
pub fn run(target: &dyn Target, seed: u64, cases: u64) -> Result<(), String> {
    for i in 0..cases {
        let case_seed = seed.wrapping_add(i);
        let failure = |what: String| format!("{}: case seed {case_seed:#x}: {what}", target.name());
        let outcome = catch_unwind(AssertUnwindSafe(|| target.case(&mut Rng::new(case_seed))));
        let peak = alloc::peak();
        match outcome {
            Err(panic) => return Err(failure(format!("panicked: {}", panic_message(&*panic)))),
            Ok(Err(broken)) => return Err(failure(broken)),
            Ok(Ok(allowed)) if peak > 8 * allowed + SLACK => {
                return Err(failure(format!(
                    "allocated {peak} bytes at once for a case allowed {allowed}"
                )));
            }
            Ok(Ok(_)) => {}
        }
    }
    Ok(())
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}
