//! Named fault-injection points for crash tests.
//!
//! Crash tests need to stop the process at the worst moment, not at a random
//! one: after a sink made a batch durable but before its checkpoint was
//! committed, say. `TRIBUTARY_FAULT=NAME` aborts the process the first time
//! it passes [`point`]`("NAME")`; `TRIBUTARY_FAULT=NAME:N` on the N-th pass.
//! A failure point ([`fails`]) does not abort: it answers `true` on that
//! pass, and the code there fails as the real fault would (a full disk).
//! A hold point ([`holds`]) pauses there instead, until the file named by
//! `TRIBUTARY_FAULT_RELEASE` exists ([`released`]), so a test can act on the
//! world (restart a server) at that exact moment.
//! `abort` skips destructors and buffered writes exactly as `kill -9` does.
//! Without the variable a point costs one load of an initialised `OnceLock`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static FAULT: OnceLock<Option<(String, u64)>> = OnceLock::new();
static PASSES: AtomicU64 = AtomicU64::new(0);

/// The crash point after every sink wrote a batch, before its checkpoint.
pub const SINK_WRITTEN: &str = "sink.after_write";
/// The crash point after a checkpoint was committed, before it is confirmed
/// to the source.
pub const CHECKPOINT_COMMITTED: &str = "checkpoint.after_commit";

/// The crash point after the views made a step's transactions visible,
/// before their rows are kept in the state store.
pub const VIEW_APPLIED: &str = "views.after_apply";
/// The failure point where the file sink's fsync of a batch fails.
pub const FILE_SYNC_FAILS: &str = "file.sync_fails";

/// The hold point after a snapshot sent a piece of rows to the pipeline.
pub const SNAPSHOT_PIECE_SENT: &str = "snapshot.piece_sent";

fn configured() -> Option<&'static (String, u64)> {
    FAULT
        .get_or_init(|| {
            let spec = std::env::var("TRIBUTARY_FAULT").ok()?;
            let (name, nth) = match spec.split_once(':') {
                Some((name, n)) => (name.to_owned(), n.parse().unwrap_or(1)),
                None => (spec, 1),
            };
            Some((name, nth.max(1)))
        })
        .as_ref()
}

/// Aborts the process here if `TRIBUTARY_FAULT` names this point and this is
/// the pass it asks for.
pub fn point(name: &str) {
    let Some((fault, nth)) = configured() else {
        return;
    };
    if fault == name && PASSES.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
        eprintln!("fault injected at {name} (pass {nth}); aborting");
        std::process::abort();
    }
}

/// Whether `TRIBUTARY_FAULT` names this failure point and this is the pass
/// it asks for: the caller then fails as the real fault would.
pub fn fails(name: &str) -> bool {
    let Some((fault, nth)) = configured() else {
        return false;
    };
    fault == name && PASSES.fetch_add(1, Ordering::SeqCst) + 1 == *nth
}

/// Whether `TRIBUTARY_FAULT` names this hold point and this is the pass it
/// asks for: the caller then waits until [`released`].
pub fn holds(name: &str) -> bool {
    let held = fails(name);
    if held {
        eprintln!("fault point {name} reached; holding until released");
    }
    held
}

/// Whether a hold may end: the file `TRIBUTARY_FAULT_RELEASE` names exists
/// (or none is named).
pub fn released() -> bool {
    std::env::var_os("TRIBUTARY_FAULT_RELEASE").is_none_or(|p| std::path::Path::new(&p).exists())
}
