//! The pure machines of the supervisor (DESIGN.md §1): each container's lifecycle
//! ([`container`]), auto-recovery arithmetic and policy ([`recovery`]), group ordering and
//! goal checks ([`group`]), the set of them for one revision ([`supervisor`]), and the JSON
//! of `GET /containers` and `GET /groups` ([`json`]).
//!
//! Nothing here does I/O or reads a clock: time comes in as `now: Instant`, results of work
//! come in as events, and everything to do goes out as [`Action`]s for the reactor to
//! execute. Logging too is an action ([`Action::Log`]), so tests can read every transition.

pub mod api;
pub mod container;
pub mod daemons;
pub mod drivers;
pub mod group;
pub mod hub;
pub mod json;
pub mod recovery;
pub mod sigterm;
pub mod supervisor;
pub mod update;
pub mod xconnect;

use std::fmt;
use std::time::{Duration, Instant};

use crate::spec::StatusGoal;

pub use api::{ApiAction, api_action, api_request, ready_signal};
pub use container::{Container, Input};
pub use group::GoalState;
pub use supervisor::{Options, Supervisor};

/// A container's status, in Pantavisor's enum order (comparisons follow it: a status "below"
/// STARTING has not been started, RECOVERING and later are past every goal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Installed,
    Mounted,
    Blocked,
    Starting,
    Started,
    Ready,
    Recovering,
    Stopping,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Installed => "INSTALLED",
            Status::Mounted => "MOUNTED",
            Status::Blocked => "BLOCKED",
            Status::Starting => "STARTING",
            Status::Started => "STARTED",
            Status::Ready => "READY",
            Status::Recovering => "RECOVERING",
            Status::Stopping => "STOPPING",
            Status::Stopped => "STOPPED",
        }
    }

    /// The status that achieves `goal`.
    pub fn of_goal(goal: StatusGoal) -> Status {
        match goal {
            StatusGoal::Mounted => Status::Mounted,
            StatusGoal::Started => Status::Started,
            StatusGoal::Ready => Status::Ready,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The timers a container may have armed; at most one of each kind at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// The group `timeout` for reaching the status goal, armed at spawn.
    Goal,
    /// The grace between SIGTERM and SIGKILL of a stop.
    StopGrace,
    /// The auto-recovery delay (or backoff wait) spent in RECOVERING.
    Retry,
    /// `stable_timeout` after the goal was reached.
    Stable,
}

impl TimerKind {
    pub const ALL: [TimerKind; 4] = [
        TimerKind::Goal,
        TimerKind::StopGrace,
        TimerKind::Retry,
        TimerKind::Stable,
    ];

    pub fn index(self) -> usize {
        match self {
            TimerKind::Goal => 0,
            TimerKind::StopGrace => 1,
            TimerKind::Retry => 2,
            TimerKind::Stable => 3,
        }
    }
}

/// A signal the engine asks the reactor to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    Term,
    Kill,
}

/// How a container's init process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signaled(i32),
}

impl ExitStatus {
    /// Only a clean exit 0 is not a failure.
    pub fn is_failure(self) -> bool {
        !matches!(self, ExitStatus::Code(0))
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signaled(s) => write!(f, "signal {s}"),
        }
    }
}

/// What the engine asks the reactor to do. Results come back as [`Event`]s.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Mount the container's volumes; answer `Mounted` or `MountFailed`.
    Mount {
        container: String,
    },
    /// Start the container's init; answer `Spawned` or `SpawnFailed`.
    Spawn {
        container: String,
    },
    Signal {
        container: String,
        pid: i32,
        sig: Sig,
    },
    /// Unmount the container's volumes (every transition to STOPPED does this).
    Unmount {
        container: String,
    },
    /// Arm (or re-arm) the container's timer of this kind; fire `Timer` at `at`.
    ArmTimer {
        container: String,
        kind: TimerKind,
        at: Instant,
    },
    CancelTimer {
        container: String,
        kind: TimerKind,
    },
    /// A container failed with nothing left to recover it, in steady state.
    RequestReboot {
        reason: String,
    },
    /// The same during an update: fail the update and roll back.
    RequestRollback {
        reason: String,
    },
    /// The revision status changed (devmeta `pantavisor.status`; READY fires `system-done`).
    RevisionStatus {
        status: Status,
    },
    Log {
        level: log::Level,
        line: String,
    },
}

/// What happened, as the reactor reports it to a [`Supervisor`].
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Begin running the revision.
    Start,
    Mounted {
        container: String,
    },
    MountFailed {
        container: String,
        error: String,
    },
    Spawned {
        container: String,
        pid: i32,
    },
    SpawnFailed {
        container: String,
        error: String,
    },
    ChildExited {
        pid: i32,
        status: ExitStatus,
    },
    Timer {
        container: String,
        kind: TimerKind,
    },
    /// Stop every container (revision transition, poweroff); no recovery follows.
    StopAll,
    /// How pid takes SIGTERM, read from /proc as the SIGTERM of its stop was sent.
    TermState {
        container: String,
        pid: i32,
        state: sigterm::SigState,
    },
}

/// `now + d`, saturating far in the future instead of overflowing.
pub fn deadline(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(u64::from(u32::MAX))))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_ordered_like_pantavisor() {
        let order = [
            Status::Installed,
            Status::Mounted,
            Status::Blocked,
            Status::Starting,
            Status::Started,
            Status::Ready,
            Status::Recovering,
            Status::Stopping,
            Status::Stopped,
        ];
        assert!(order.windows(2).all(|w| w[0] < w[1]));
        let names: Vec<&str> = order.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "INSTALLED",
                "MOUNTED",
                "BLOCKED",
                "STARTING",
                "STARTED",
                "READY",
                "RECOVERING",
                "STOPPING",
                "STOPPED"
            ]
        );
    }

    #[test]
    fn goals_map_to_statuses() {
        assert_eq!(Status::of_goal(StatusGoal::Mounted), Status::Mounted);
        assert_eq!(Status::of_goal(StatusGoal::Started), Status::Started);
        assert_eq!(Status::of_goal(StatusGoal::Ready), Status::Ready);
    }

    #[test]
    fn only_clean_exit_zero_is_not_a_failure() {
        assert!(!ExitStatus::Code(0).is_failure());
        assert!(ExitStatus::Code(1).is_failure());
        assert!(ExitStatus::Code(-1).is_failure());
        assert!(ExitStatus::Signaled(9).is_failure());
        assert!(ExitStatus::Signaled(15).is_failure());
    }

    #[test]
    fn exit_status_reads_well_in_logs() {
        assert_eq!(ExitStatus::Code(3).to_string(), "exit code 3");
        assert_eq!(ExitStatus::Signaled(9).to_string(), "signal 9");
    }

    #[test]
    fn timer_kinds_index_a_table() {
        let idx: Vec<usize> = TimerKind::ALL.iter().map(|k| k.index()).collect();
        assert_eq!(idx, [0, 1, 2, 3]);
    }

    #[test]
    fn deadline_saturates_instead_of_panicking() {
        let now = Instant::now();
        assert_eq!(
            deadline(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert!(deadline(now, Duration::MAX) > now);
    }
}
