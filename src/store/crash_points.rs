//! Crash injection for tests: with `TERN_TEST_CRASH_AFTER=N` in its environment, the daemon
//! counts every durable step of the storage (a temp file about to be published, a rename
//! made durable, a tree or an object removed) and kills itself with SIGKILL at the N-th, as a
//! power cut would stop it there. `N = 0` only counts: each point is logged as
//! `store: crash point <n> reached: <what> <path>`, which is how a test learns how many points a flow has
//! and how many a run used up. With `TERN_TEST_CRASH_ON=<text>` it dies at the first point
//! whose `<what> <path>` holds that text instead (one flow among many, such as the log
//! pusher's cursor write). Unset (always, outside tests), a point costs one branch.

use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

static LIMIT: OnceLock<Option<u32>> = OnceLock::new();
static NEEDLE: OnceLock<Option<String>> = OnceLock::new();
static COUNT: AtomicU32 = AtomicU32::new(0);

/// A point where a crash must leave a storage that boots and tells the truth.
pub fn reached(what: &str, path: &Path) {
    let needle = NEEDLE.get_or_init(|| std::env::var("TERN_TEST_CRASH_ON").ok());
    if let Some(needle) = needle.as_deref()
        && format!("{what} {}", path.display()).contains(needle)
    {
        log::warn!("store: crash point {what} {}: SIGKILL now", path.display());
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
    let limit = *LIMIT.get_or_init(|| {
        std::env::var("TERN_TEST_CRASH_AFTER")
            .ok()
            .and_then(|v| v.trim().parse().ok())
    });
    let Some(limit) = limit else { return };
    let n = COUNT.fetch_add(1, Ordering::Relaxed) + 1;
    log::debug!("store: crash point {n} reached: {what} {}", path.display());
    if n == limit {
        log::warn!("store: crash point {n}: SIGKILL now (TERN_TEST_CRASH_AFTER={limit})");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}
