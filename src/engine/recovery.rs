//! Auto-recovery: the retry counter and stability flags of one container ([`Tracker`]), the
//! delay arithmetic, and the decision taken when a container stops unexpectedly
//! ([`decide`]). Pure arithmetic over its inputs; it arms no timer and changes no status
//! (the container machine does both from the [`Decision`]).
//!
//! Where Pantavisor's code and documentation disagree, this follows the documentation:
//! `on-failure` does not recover a clean exit 0 (the container stays stopped, with no
//! reboot), and `unless-stopped` recovers every exit (only an API stop, which never reaches
//! here, keeps it down) instead of rebooting the device.

use std::time::{Duration, Instant};

use crate::spec::{AutoRecovery, BackoffPolicy, RecoveryPolicy};

/// The longest single delay the arithmetic produces (about 136 years): keeps
/// `retry_delay × factor^n` finite for unlimited retries.
pub const MAX_DELAY_SECS: u64 = u32::MAX as u64;

/// Per-container recovery bookkeeping (Pantavisor's `struct pv_auto_recovery` minus config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tracker {
    pub current_retries: u32,
    /// When the container was last started (for `reset_window`).
    pub last_start: Option<Instant>,
    /// `stable_timeout` elapsed after the goal was reached, without a crash.
    pub is_stable: bool,
    pub stable_armed: bool,
    /// Retries exhausted with `backoff_policy: never`: left stopped.
    pub recovery_failed: bool,
    /// Exited cleanly under `on-failure`: left stopped, not a failure.
    pub completed: bool,
}

impl Tracker {
    /// What starting (spawning) the container resets.
    pub fn on_start(&mut self, now: Instant) {
        self.last_start = Some(now);
        self.is_stable = false;
        self.stable_armed = false;
        self.recovery_failed = false;
        self.completed = false;
    }

    /// What an API start or restart resets.
    pub fn on_api_start(&mut self) {
        self.current_retries = 0;
        self.recovery_failed = false;
        self.completed = false;
    }
}

/// What to do about a container that stopped on its own (or failed to mount or spawn).
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Start it again after `delay` (zero: at once, straight to INSTALLED).
    Retry { attempt: u32, delay: Duration },
    /// Retries used up with a duration backoff: counter reset, wait, then a new cycle.
    Backoff { wait: Duration },
    /// Retries used up with `backoff_policy: never`: leave it stopped.
    GiveUp,
    /// A clean exit under `on-failure`: leave it stopped.
    Completed,
    /// Nothing recovers it: reboot (steady state) or roll back (during an update).
    Fatal { reason: String },
}

/// `retry_delay × backoff_factor^(attempt-1)`, the factor applied only when > 1, truncated to
/// whole seconds like Pantavisor's `(int)(delay * factor)`, capped at [`MAX_DELAY_SECS`].
pub fn retry_delay(cfg: &AutoRecovery, attempt: u32) -> Duration {
    let base = f64::from(cfg.retry_delay);
    let mut factor = 1.0_f64;
    if attempt > 1 && cfg.backoff_factor > 1.0 {
        for _ in 1..attempt {
            factor *= cfg.backoff_factor;
            if base * factor >= MAX_DELAY_SECS as f64 {
                return Duration::from_secs(MAX_DELAY_SECS);
            }
        }
    }
    // Truncation is the point: Pantavisor keeps whole seconds.
    Duration::from_secs((base * factor) as u64)
}

/// Whether more than `reset_window` seconds passed since the last start.
pub fn window_expired(cfg: &AutoRecovery, t: &Tracker, now: Instant) -> bool {
    match (cfg.reset_window, t.last_start) {
        (0, _) | (_, None) => false,
        (w, Some(start)) => {
            now.saturating_duration_since(start) > Duration::from_secs(u64::from(w))
        }
    }
}

/// Decide about a container that stopped unexpectedly. `failed`: a non-zero exit, a
/// signal, or a failed mount or spawn. `updating`: an update is INPROGRESS or TESTING.
pub fn decide(
    cfg: &AutoRecovery,
    t: &mut Tracker,
    failed: bool,
    updating: bool,
    now: Instant,
) -> Decision {
    match (cfg.policy, failed) {
        (RecoveryPolicy::No, _) => {
            return Decision::Fatal {
                reason: "stopped and has no auto-recovery".into(),
            };
        }
        (RecoveryPolicy::OnFailure, false) => {
            t.completed = true;
            return Decision::Completed;
        }
        (RecoveryPolicy::OnFailure, true)
        | (RecoveryPolicy::Always | RecoveryPolicy::UnlessStopped, _) => {}
    }
    if window_expired(cfg, t, now) {
        t.current_retries = 0;
    }
    if cfg.max_retries > 0 && t.current_retries >= cfg.max_retries {
        if updating {
            return Decision::Fatal {
                reason: format!("reached max retries ({}) during an update", cfg.max_retries),
            };
        }
        return match cfg.backoff_policy {
            BackoffPolicy::Reboot => Decision::Fatal {
                reason: format!(
                    "reached max retries ({}), backoff_policy reboot",
                    cfg.max_retries
                ),
            },
            BackoffPolicy::Never => {
                t.recovery_failed = true;
                Decision::GiveUp
            }
            BackoffPolicy::Wait(secs) => {
                t.current_retries = 0;
                Decision::Backoff {
                    wait: Duration::from_secs(u64::from(secs)),
                }
            }
        };
    }
    t.current_retries = t.current_retries.saturating_add(1);
    Decision::Retry {
        attempt: t.current_retries,
        delay: retry_delay(cfg, t.current_retries),
    }
}

/// Whether this container still holds up a TESTING commit: it tracks stability
/// (`stable_timeout > 0`), is not yet stable, and was neither given up on nor stopped by
/// the user (nor finished cleanly).
pub fn stability_pending(cfg: &AutoRecovery, t: &Tracker, user_stopped: bool) -> bool {
    cfg.stable_timeout > 0 && !t.is_stable && !t.recovery_failed && !t.completed && !user_stopped
}

#[cfg(test)]
#[path = "recovery_tests.rs"]
mod tests;
