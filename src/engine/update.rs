//! The revision (update) machine: from a revision being tried to its commit or its rollback,
//! with Pantavisor's progress statuses and messages, plus [`plan_transition`], which decides
//! whether a new revision needs the reboot path or can replace only the containers it changes.
//!
//! Pure: progress to write, timers to arm, commits and rollbacks go out as [`UpdateAction`]s;
//! time comes in as `now`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::deadline;
use crate::spec::{RestartPolicy, State};
use crate::store::Progress;

/// How often a commit waiting for stability looks again.
pub const STABILITY_POLL: Duration = Duration::from_secs(1);

/// How the running revision gives way to the new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Stop everything, then start the new revision as a fresh boot.
    Reboot { why: String },
    /// Stop and start only these containers (changed, added or removed); the rest keep running.
    NonReboot { restart: Vec<String> },
}

/// Which container an artifact path belongs to (`None`: the revision's own, e.g. the BSP).
fn owner<'a>(path: &str, dirs: &'a BTreeSet<&'a str>) -> Option<&'a str> {
    let rest = path.strip_prefix("_config/").unwrap_or(path);
    dirs.iter().copied().find(|d| {
        rest.strip_prefix(d)
            .is_some_and(|r| r.starts_with('/') || r == ".json" || r.starts_with('-'))
    })
}

/// Compare two revisions artifact by artifact. Anything outside a container (BSP, device.json,
/// groups, disks…) or any change to a `system` container needs the reboot path. Signatures
/// (`_sigs/`) change nothing that runs: re-signing a revision (ECDSA signatures differ each
/// time they are made) restarts nothing.
pub fn plan_transition(
    old_doc: &Map<String, Value>,
    new_doc: &Map<String, Value>,
    old: &State,
    new: &State,
) -> Transition {
    let dirs: BTreeSet<&str> = old
        .containers
        .iter()
        .chain(&new.containers)
        .map(|c| c.dir.as_str())
        .collect();
    let keys: BTreeSet<&String> = old_doc.keys().chain(new_doc.keys()).collect();
    let mut changed = BTreeSet::new();
    for key in keys {
        if old_doc.get(key) == new_doc.get(key) || key.starts_with("_sigs/") {
            continue;
        }
        match owner(key, &dirs) {
            Some(dir) => {
                changed.insert(dir);
            }
            None => {
                return Transition::Reboot {
                    why: format!("{key} changed"),
                };
            }
        }
    }
    let mut restart = Vec::new();
    for dir in changed {
        let versions = old
            .containers
            .iter()
            .chain(&new.containers)
            .filter(|c| c.dir == dir);
        for c in versions {
            if c.restart_policy == RestartPolicy::System {
                return Transition::Reboot {
                    why: format!("{} has restart_policy system", c.name),
                };
            }
            if !restart.contains(&c.name) {
                restart.push(c.name.clone());
            }
        }
    }
    Transition::NonReboot { restart }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Containers of the new revision are starting.
    Trying,
    /// Every goal reached; waiting for the commit delay (and stability).
    Testing { announced_wait: bool },
}

/// What happened to the revision being tried.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateEvent {
    GoalsAchieved,
    GoalsTimedOut,
    /// A container failed with nothing left to recover it.
    Failed {
        reason: String,
    },
    CommitTimer {
        stability_pending: bool,
    },
    /// A remote revision broke a hub rule ("Hub not reachable", "Hub communication not
    /// stable"): it rolls back with that message.
    HubLost {
        msg: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum UpdateAction {
    Progress(Progress),
    ArmCommit {
        at: Instant,
    },
    /// Commit the try: as the new rollback point (`done`, before the DONE it comes with), or
    /// only as finished (after the UPDATED).
    Commit {
        done: bool,
    },
    /// Go back to the committed revision (the progress already says why).
    Rollback,
}

/// An update in progress: the revision being tried and how it got here.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub rev: String,
    /// Came through the reboot path: a commit makes it the rollback point (DONE).
    pub reboot: bool,
    /// TRY_ONCE: never becomes the rollback point, whatever the path.
    pub once: bool,
    pub phase: Phase,
    pub commit_delay: Duration,
}

impl Update {
    pub fn new(rev: &str, reboot: bool, once: bool, commit_delay: Duration) -> Update {
        Update {
            rev: rev.to_string(),
            reboot,
            once,
            phase: Phase::Trying,
            commit_delay,
        }
    }

    /// The progress written when the try starts running.
    pub fn trying() -> Progress {
        Progress::new("INPROGRESS", "Trying new revision", 50)
    }

    /// The final progress of a committed update: DONE when it became the rollback point.
    pub fn finished(done: bool) -> Progress {
        if done {
            Progress::new(
                "DONE",
                "Update finished, revision set as rollback point",
                100,
            )
        } else {
            Progress::new(
                "UPDATED",
                "Update finished, revision not set as rollback point",
                100,
            )
        }
    }

    pub fn step(&mut self, event: UpdateEvent, now: Instant) -> Vec<UpdateAction> {
        use UpdateAction as A;
        use UpdateEvent as E;
        let done = self.reboot && !self.once;
        match (self.phase, event) {
            // Every container reached its goal: wait out the commit delay.
            (Phase::Trying, E::GoalsAchieved) => {
                self.phase = Phase::Testing {
                    announced_wait: false,
                };
                let msg = if done {
                    "Awaiting to set rollback point if update is stable"
                } else {
                    "Awaiting to see if update is stable"
                };
                vec![
                    A::Progress(Progress::new("TESTING", msg, 75)),
                    A::ArmCommit {
                        at: deadline(now, self.commit_delay),
                    },
                ]
            }
            // Goals stay reached while testing; nothing new.
            (Phase::Testing { .. }, E::GoalsAchieved) => Vec::new(),
            (Phase::Trying | Phase::Testing { .. }, E::GoalsTimedOut) => vec![
                A::Progress(Progress::new("ERROR", "Status goal not reached", 100)),
                A::Rollback,
            ],
            (Phase::Trying | Phase::Testing { .. }, E::Failed { reason }) => {
                let mut p = Progress::new("ERROR", "A container could not be started", 100);
                p.logs = Some(reason);
                vec![A::Progress(p), A::Rollback]
            }
            (Phase::Trying | Phase::Testing { .. }, E::HubLost { msg }) => {
                vec![A::Progress(Progress::new("ERROR", &msg, 100)), A::Rollback]
            }
            // A timer of an earlier phase: stale.
            (Phase::Trying, E::CommitTimer { .. }) => Vec::new(),
            (
                Phase::Testing { announced_wait },
                E::CommitTimer {
                    stability_pending: true,
                },
            ) => {
                self.phase = Phase::Testing {
                    announced_wait: true,
                };
                let mut out = Vec::new();
                if !announced_wait {
                    out.push(A::Progress(Progress::new(
                        "TESTING",
                        "Waiting for all containers to become stable",
                        90,
                    )));
                }
                out.push(A::ArmCommit {
                    at: deadline(now, STABILITY_POLL),
                });
                out
            }
            (
                Phase::Testing { .. },
                E::CommitTimer {
                    stability_pending: false,
                },
            ) => {
                let p = Update::finished(done);
                // In the order that keeps a crash between the two truthful. DONE names the
                // rollback point, so the commit goes first (start-up finishes a committed
                // revision still TESTING). UPDATED goes first: a crash before the commit rolls
                // back to the committed revision, which is what follows UPDATED anyway.
                if done {
                    vec![A::Commit { done }, A::Progress(p)]
                } else {
                    vec![A::Progress(p), A::Commit { done }]
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "update_tests.rs"]
mod tests;
