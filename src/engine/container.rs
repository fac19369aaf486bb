//! One container's lifecycle as a single `(status, input)` table ([`step`]): INSTALLED →
//! (BLOCKED) → MOUNTED → STARTING → STARTED → READY, with RECOVERING, STOPPING and STOPPED
//! around them (Pantavisor's `platforms.c`, `state.c pv_state_run`, research §3 and §1.7).
//!
//! The machine owns the container's flags (`user_stopped`, the recovery tracker, the goal
//! timeout) and its timers table. It never touches the system: mounting, spawning, signals
//! and timers are [`Action`]s, and their results come back as [`Input`]s. Every status change
//! is logged as `name: A -> B (why)` through [`Action::Log`].

use std::time::{Duration, Instant};

use log::Level;

use super::recovery::{self, Decision, Tracker};
use super::sigterm::{self, Reach, SigState};
use super::{Action, ExitStatus, Sig, Status, TimerKind, deadline};
use crate::spec::{AutoRecovery, RestartPolicy, StatusGoal};

/// Pantavisor's grace between SIGTERM and SIGKILL of a stop.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(5);

/// What a container is, as far as its lifecycle cares.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub name: String,
    pub group: String,
    pub goal: StatusGoal,
    pub restart_policy: RestartPolicy,
    pub mgmt: bool,
    /// Its own or its group's `auto_recovery`.
    pub recovery: AutoRecovery,
    /// Its group's `timeout` for reaching the goal once spawned.
    pub goal_timeout: Duration,
    pub stop_grace: Duration,
}

/// What a stop that is under way leads to once the process is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterStop {
    /// Stay STOPPED, no recovery (revision transition, shutdown).
    Quiet,
    /// Stay STOPPED with `user_stopped` set (API stop).
    UserStop,
    /// Counters reset, back to INSTALLED (API restart, or start while stopping).
    Restart,
}

/// What happens to a container.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Whether every earlier group has achieved (or timed out) its goals.
    GroupsBefore {
        achieved: bool,
    },
    Mounted,
    MountFailed {
        error: String,
    },
    Spawned {
        pid: i32,
    },
    SpawnFailed {
        error: String,
    },
    /// The init process ended.
    Exited {
        status: ExitStatus,
    },
    /// `POST /signal {"type":"ready"}` from the container.
    ReadySignal,
    /// `PUT /containers/{name}` actions (already accepted by [`super::api_action`]).
    ApiStart,
    ApiStop,
    ApiRestart,
    Timer {
        kind: TimerKind,
    },
    /// Stop for a revision transition or shutdown.
    Stop,
    /// What the kernel says of pid's SIGTERM handling, read as the SIGTERM of a stop went.
    TermState {
        pid: i32,
        state: SigState,
    },
}

/// Inputs from outside the machine that depend on the rest of the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ctx {
    /// An update is INPROGRESS or TESTING: a fatal failure rolls back instead of rebooting.
    pub updating: bool,
}

/// One container's machine state.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    pub cfg: Config,
    pub status: Status,
    pub pid: Option<i32>,
    /// A `Mount` was issued and has not been answered.
    pub mounting: bool,
    /// A stop was asked while STARTING, before the pid was known.
    pub stop_pending: bool,
    pub after_stop: AfterStop,
    pub user_stopped: bool,
    /// The goal timer expired before the goal was reached (TIMEDOUT).
    pub goal_timed_out: bool,
    pub tracker: Tracker,
    timers: [Option<Instant>; 4],
}

impl Container {
    /// A freshly parsed container: INSTALLED, nothing armed.
    pub fn new(cfg: Config) -> Container {
        Container {
            cfg,
            status: Status::Installed,
            pid: None,
            mounting: false,
            stop_pending: false,
            after_stop: AfterStop::Quiet,
            user_stopped: false,
            goal_timed_out: false,
            tracker: Tracker::default(),
            timers: [None; 4],
        }
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    pub fn goal_status(&self) -> Status {
        Status::of_goal(self.cfg.goal)
    }

    /// When the timer of `kind` is due, if armed.
    pub fn timer(&self, kind: TimerKind) -> Option<Instant> {
        self.timers[kind.index()]
    }

    fn log(&self, level: Level, msg: &str, out: &mut Vec<Action>) {
        out.push(Action::Log {
            level,
            line: format!("{}: {msg}", self.cfg.name),
        });
    }

    fn go(&mut self, to: Status, why: &str, out: &mut Vec<Action>) {
        let line = format!("{}: {} -> {} ({why})", self.cfg.name, self.status, to);
        out.push(Action::Log {
            level: Level::Info,
            line,
        });
        self.status = to;
    }

    fn arm(&mut self, kind: TimerKind, at: Instant, out: &mut Vec<Action>) {
        self.timers[kind.index()] = Some(at);
        out.push(Action::ArmTimer {
            container: self.cfg.name.clone(),
            kind,
            at,
        });
    }

    fn cancel(&mut self, kind: TimerKind, out: &mut Vec<Action>) {
        if self.timers[kind.index()].take().is_some() {
            out.push(Action::CancelTimer {
                container: self.cfg.name.clone(),
                kind,
            });
        }
    }

    /// A timer event is acted on only if that timer is armed and due; it is then disarmed.
    fn take_due(&mut self, kind: TimerKind, now: Instant) -> bool {
        match self.timers[kind.index()] {
            Some(at) if now >= at => {
                self.timers[kind.index()] = None;
                true
            }
            Some(_) | None => false,
        }
    }

    fn push(&self, a: impl FnOnce(String) -> Action, out: &mut Vec<Action>) {
        out.push(a(self.cfg.name.clone()));
    }

    /// Volumes are mounted: stop at MOUNTED when that is the goal, else spawn.
    fn after_mount(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.cfg.goal == StatusGoal::Mounted {
            self.goal_reached(now, out);
            return;
        }
        self.tracker.on_start(now);
        self.user_stopped = false;
        self.goal_timed_out = false;
        self.stop_pending = false;
        self.after_stop = AfterStop::Quiet;
        self.arm(TimerKind::Goal, deadline(now, self.cfg.goal_timeout), out);
        self.push(|container| Action::Spawn { container }, out);
        self.go(Status::Starting, "spawning init", out);
    }

    /// The status goal was just reached: stop its timer, start the stability timer.
    fn goal_reached(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.cancel(TimerKind::Goal, out);
        let st = self.cfg.recovery.stable_timeout;
        if st > 0 && !self.tracker.is_stable && !self.tracker.stable_armed {
            self.tracker.stable_armed = true;
            self.arm(
                TimerKind::Stable,
                deadline(now, Duration::from_secs(u64::from(st))),
                out,
            );
        }
    }

    /// SIGTERM, STOPPING, and the grace timer.
    fn begin_stop(&mut self, after: AfterStop, why: &str, now: Instant, out: &mut Vec<Action>) {
        self.after_stop = after;
        self.stop_pending = false;
        self.cancel(TimerKind::Goal, out);
        self.cancel(TimerKind::Stable, out);
        if let Some(pid) = self.pid {
            self.push(
                |container| Action::Signal {
                    container,
                    pid,
                    sig: Sig::Term,
                },
                out,
            );
        }
        self.arm(
            TimerKind::StopGrace,
            deadline(now, self.cfg.stop_grace),
            out,
        );
        self.go(Status::Stopping, why, out);
    }

    /// SIGTERM went to `pid`: when it cannot end the process, the grace would only be
    /// waited out, so SIGKILL now (the grace timer stays as the backstop of the exit).
    fn term_reach(&mut self, pid: i32, state: SigState, out: &mut Vec<Action>) {
        if self.pid != Some(pid) {
            return; // an earlier run's answer
        }
        let reach = sigterm::reach(&state);
        match reach {
            Reach::Handled => {
                let g = self.cfg.stop_grace.as_secs();
                let why = reach.why();
                self.log(Level::Debug, &format!("{why}; up to {g}s to exit"), out);
            }
            Reach::Dies => self.log(Level::Debug, reach.why(), out),
            Reach::Ignored | Reach::Shielded => {
                let why = reach.why();
                self.log(
                    Level::Info,
                    &format!("SIGTERM cannot end pid {pid} ({why}); SIGKILL now"),
                    out,
                );
                self.push(
                    |container| Action::Signal {
                        container,
                        pid,
                        sig: Sig::Kill,
                    },
                    out,
                );
            }
        }
    }

    /// Every transition to STOPPED: timers of a running container off, volumes unmounted
    /// when they are mounted.
    fn enter_stopped(&mut self, why: &str, out: &mut Vec<Action>) {
        let mounted = matches!(
            self.status,
            Status::Mounted | Status::Starting | Status::Started | Status::Ready | Status::Stopping
        );
        self.pid = None;
        self.cancel(TimerKind::Goal, out);
        self.cancel(TimerKind::Stable, out);
        self.cancel(TimerKind::StopGrace, out);
        if mounted {
            self.push(|container| Action::Unmount { container }, out);
        }
        self.go(Status::Stopped, why, out);
    }

    /// A stop under way has ended (the process is gone, or never came).
    fn finish_stop(&mut self, out: &mut Vec<Action>) {
        let after = self.after_stop;
        self.after_stop = AfterStop::Quiet;
        self.stop_pending = false;
        match after {
            AfterStop::Quiet => {}
            AfterStop::UserStop => self.user_stopped = true,
            AfterStop::Restart => self.restart_now("restart requested through the API", out),
        }
    }

    /// API start or restart of a stopped or recovering container.
    fn restart_now(&mut self, why: &str, out: &mut Vec<Action>) {
        self.cancel(TimerKind::Retry, out);
        self.tracker.on_api_start();
        self.user_stopped = false;
        self.go(Status::Installed, why, out);
    }

    /// A process we did not ask for (or no longer want): kill it.
    fn stray(&mut self, pid: i32, out: &mut Vec<Action>) {
        if self.pid == Some(pid) {
            return;
        }
        self.log(
            Level::Warn,
            &format!("unexpected pid {pid} in {}; killing it", self.status),
            out,
        );
        self.push(
            |container| Action::Signal {
                container,
                pid,
                sig: Sig::Kill,
            },
            out,
        );
    }

    /// The container stopped on its own (or could not be mounted or spawned): ask recovery.
    fn failed(&mut self, failed: bool, ctx: Ctx, now: Instant, out: &mut Vec<Action>) {
        let cfg = self.cfg.recovery;
        let max = cfg.max_retries;
        match recovery::decide(&cfg, &mut self.tracker, failed, ctx.updating, now) {
            Decision::Retry { attempt, delay } if delay.is_zero() => {
                let why = format!("auto-recovery attempt {attempt}/{max}, at once");
                self.go(Status::Installed, &why, out);
            }
            Decision::Retry { attempt, delay } => {
                self.arm(TimerKind::Retry, deadline(now, delay), out);
                let why = format!(
                    "auto-recovery attempt {attempt}/{max} in {}s",
                    delay.as_secs()
                );
                self.go(Status::Recovering, &why, out);
            }
            Decision::Backoff { wait } => {
                self.arm(TimerKind::Retry, deadline(now, wait), out);
                let why = format!("max retries reached; new cycle in {}s", wait.as_secs());
                self.go(Status::Recovering, &why, out);
            }
            Decision::GiveUp => self.log(
                Level::Warn,
                "max retries reached; backoff_policy never leaves it stopped",
                out,
            ),
            Decision::Completed => self.log(
                Level::Info,
                "exited cleanly; on-failure leaves it stopped",
                out,
            ),
            Decision::Fatal { reason } => {
                let reason = format!("container '{}' {reason}", self.cfg.name);
                self.log(Level::Error, &reason, out);
                out.push(match ctx.updating {
                    true => Action::RequestRollback { reason },
                    false => Action::RequestReboot { reason },
                });
            }
        }
    }
}

/// The machine: feed `input` to `c` at `now`, get the new state and what to do.
pub fn step(mut c: Container, input: Input, ctx: Ctx, now: Instant) -> (Container, Vec<Action>) {
    let out = step_in_place(&mut c, input, ctx, now);
    (c, out)
}

/// [`step`] on a container held in place.
pub fn step_in_place(c: &mut Container, input: Input, ctx: Ctx, now: Instant) -> Vec<Action> {
    use Input as I;
    use Status as S;
    let mut out = Vec::new();
    let o = &mut out;
    if let I::Timer { kind } = input
        && !c.take_due(kind, now)
    {
        return out; // cancelled, re-armed or early: not this timer's moment
    }
    match (c.status, input) {
        // ---- INSTALLED / BLOCKED: waiting for earlier groups, then mounting ----
        // Earlier groups achieved or timed out: mount (once).
        (S::Installed | S::Blocked, I::GroupsBefore { achieved: true }) => {
            if !c.mounting {
                c.mounting = true;
                c.push(|container| Action::Mount { container }, o);
                c.log(Level::Debug, "earlier groups ready; mounting volumes", o);
            }
        }
        // Earlier groups still working: wait in BLOCKED (a mount under way goes on).
        (S::Installed, I::GroupsBefore { achieved: false }) => {
            if !c.mounting {
                c.go(S::Blocked, "earlier groups have not reached their goals", o);
            }
        }
        // Still blocked.
        (S::Blocked, I::GroupsBefore { achieved: false }) => {}
        // Volumes mounted: MOUNTED, then spawn unless MOUNTED is the goal.
        (S::Installed | S::Blocked, I::Mounted) => {
            if c.mounting {
                c.mounting = false;
                c.go(S::Mounted, "volumes mounted", o);
                c.after_mount(now, o);
            }
        }
        // Mount failed: STOPPED, and recovery decides (a failure).
        (S::Installed | S::Blocked, I::MountFailed { error }) => {
            if c.mounting {
                c.mounting = false;
                c.push(|container| Action::Unmount { container }, o);
                c.enter_stopped(&format!("mount failed: {error}"), o);
                c.failed(true, ctx, now, o);
            }
        }
        // Not spawned yet: any pid is a stray.
        (
            S::Installed | S::Blocked | S::Mounted | S::Recovering | S::Stopped,
            I::Spawned { pid },
        ) => c.stray(pid, o),
        // Stale answers and exits of an earlier run.
        (
            S::Installed | S::Blocked | S::Mounted | S::Recovering | S::Stopped,
            I::SpawnFailed { .. } | I::Exited { .. },
        ) => {}
        // Not running: a ready signal changes nothing.
        (
            S::Installed | S::Blocked | S::Mounted | S::Recovering | S::Stopping | S::Stopped,
            I::ReadySignal,
        ) => {}
        // Refused by api_action (not started yet): nothing to do.
        (S::Installed | S::Blocked | S::Mounted, I::ApiStart | I::ApiRestart) => {}
        // API stop before the start: STOPPED by the user (a late mount is undone in STOPPED).
        (S::Installed | S::Blocked, I::ApiStop) => {
            c.user_stopped = true;
            c.go(S::Stopped, "stopped through the API before it started", o);
        }
        // Revision stopping before the start: STOPPED, no recovery.
        (S::Installed | S::Blocked, I::Stop) => c.go(S::Stopped, "revision stopping", o),
        // Nothing of theirs is armed before the start.
        (S::Installed | S::Blocked, I::Timer { .. }) => {}

        // ---- MOUNTED: the goal of data containers ----
        // Its group was already released; a late gate answer changes nothing.
        (S::Mounted, I::GroupsBefore { .. } | I::Mounted | I::MountFailed { .. }) => {}
        // API stop: unmount, STOPPED by the user.
        (S::Mounted, I::ApiStop) => {
            c.user_stopped = true;
            c.enter_stopped("stopped through the API", o);
        }
        // Revision stopping: unmount, STOPPED.
        (S::Mounted, I::Stop) => c.enter_stopped("revision stopping", o),
        // Stable after stable_timeout at its goal.
        (
            S::Mounted,
            I::Timer {
                kind: TimerKind::Stable,
            },
        ) => {
            c.tracker.is_stable = true;
            c.log(Level::Info, "stable", o);
        }
        // No other timer runs while mounted.
        (
            S::Mounted,
            I::Timer {
                kind: TimerKind::Goal | TimerKind::StopGrace | TimerKind::Retry,
            },
        ) => {}

        // ---- STARTING: spawn asked, pid not known yet ----
        // The pid is known: STARTED, or straight to STOPPING if a stop was asked meanwhile.
        (S::Starting, I::Spawned { pid }) => {
            c.pid = Some(pid);
            if c.stop_pending {
                let after = c.after_stop;
                c.begin_stop(after, "stop asked while starting", now, o);
            } else {
                c.go(S::Started, &format!("init running as pid {pid}"), o);
                if c.cfg.goal == StatusGoal::Started {
                    c.goal_reached(now, o);
                }
            }
        }
        // Spawn failed: STOPPED; a pending stop completes, otherwise recovery decides.
        (S::Starting, I::SpawnFailed { error }) => {
            c.enter_stopped(&format!("spawn failed: {error}"), o);
            if c.stop_pending {
                c.finish_stop(o);
            } else {
                c.failed(true, ctx, now, o);
            }
        }
        // No pid yet: an exit cannot be ours; a ready signal is early.
        (S::Starting, I::Exited { .. } | I::ReadySignal) => {}
        // Already mounted; gate answers are stale.
        (S::Starting, I::GroupsBefore { .. } | I::Mounted | I::MountFailed { .. }) => {}
        // API start: already starting.
        (S::Starting, I::ApiStart) => {}
        // Stops wait for the pid.
        (S::Starting, I::ApiStop) => {
            c.stop_pending = true;
            c.after_stop = AfterStop::UserStop;
        }
        (S::Starting, I::ApiRestart) => {
            c.stop_pending = true;
            c.after_stop = AfterStop::Restart;
        }
        (S::Starting, I::Stop) => {
            c.stop_pending = true;
            c.after_stop = AfterStop::Quiet;
        }
        // Goal timeout while starting: TIMEDOUT (the next group is released).
        (
            S::Starting,
            I::Timer {
                kind: TimerKind::Goal,
            },
        ) => {
            c.goal_timed_out = true;
            let t = c.cfg.goal_timeout.as_secs();
            c.log(Level::Warn, &format!("status goal timed out after {t}s"), o);
        }
        // No other timer runs while starting.
        (
            S::Starting,
            I::Timer {
                kind: TimerKind::StopGrace | TimerKind::Retry | TimerKind::Stable,
            },
        ) => {}

        // ---- STARTED / READY: running ----
        // The init exited on its own: STOPPED (unmount), then recovery decides.
        (S::Started | S::Ready, I::Exited { status }) => {
            c.enter_stopped(&format!("init exited with {status}"), o);
            c.failed(status.is_failure(), ctx, now, o);
        }
        // Ready signal: READY when that is the goal.
        (S::Started, I::ReadySignal) => {
            if c.cfg.goal == StatusGoal::Ready {
                c.go(S::Ready, "ready signal", o);
                c.goal_reached(now, o);
            }
        }
        // Already ready.
        (S::Ready, I::ReadySignal) => {}
        // Stale gate and mount answers.
        (
            S::Started | S::Ready,
            I::GroupsBefore { .. } | I::Mounted | I::MountFailed { .. } | I::SpawnFailed { .. },
        ) => {}
        // A second pid: a stray.
        (S::Started | S::Ready | S::Stopping, I::Spawned { pid }) => c.stray(pid, o),
        // API start: already running.
        (S::Started | S::Ready, I::ApiStart) => {}
        // API stop: SIGTERM, grace, then STOPPED by the user.
        (S::Started | S::Ready, I::ApiStop) => c.begin_stop(
            AfterStop::UserStop,
            "stop requested through the API",
            now,
            o,
        ),
        // API restart: SIGTERM, grace, then INSTALLED with counters reset.
        (S::Started | S::Ready, I::ApiRestart) => c.begin_stop(
            AfterStop::Restart,
            "restart requested through the API",
            now,
            o,
        ),
        // Revision stopping: SIGTERM, grace, then STOPPED quietly.
        (S::Started | S::Ready, I::Stop) => {
            c.begin_stop(AfterStop::Quiet, "revision stopping", now, o)
        }
        // Goal timeout of a READY goal still at STARTED: TIMEDOUT.
        (
            S::Started | S::Ready,
            I::Timer {
                kind: TimerKind::Goal,
            },
        ) => {
            if c.status < c.goal_status() {
                c.goal_timed_out = true;
                let t = c.cfg.goal_timeout.as_secs();
                c.log(Level::Warn, &format!("status goal timed out after {t}s"), o);
            }
        }
        // Survived stable_timeout at its goal: stable.
        (
            S::Started | S::Ready,
            I::Timer {
                kind: TimerKind::Stable,
            },
        ) => {
            c.tracker.is_stable = true;
            c.log(Level::Info, "stable", o);
        }
        // No stop or retry runs while running.
        (
            S::Started | S::Ready,
            I::Timer {
                kind: TimerKind::StopGrace | TimerKind::Retry,
            },
        ) => {}

        // ---- RECOVERING: waiting out the retry delay (volumes unmounted) ----
        // Delay over: INSTALLED, and the start sequence runs again.
        (
            S::Recovering,
            I::Timer {
                kind: TimerKind::Retry,
            },
        ) => c.go(S::Installed, "recovery delay over", o),
        // No other timer runs while recovering.
        (
            S::Recovering,
            I::Timer {
                kind: TimerKind::Goal | TimerKind::StopGrace | TimerKind::Stable,
            },
        ) => {}
        // API start or restart: at once, counters reset.
        (S::Recovering, I::ApiStart | I::ApiRestart) => c.restart_now("started through the API", o),
        // API stop: STOPPED by the user, the retry is cancelled.
        (S::Recovering, I::ApiStop) => {
            c.cancel(TimerKind::Retry, o);
            c.user_stopped = true;
            c.go(S::Stopped, "stopped through the API while recovering", o);
        }
        // Revision stopping: STOPPED, the retry is cancelled.
        (S::Recovering, I::Stop) => {
            c.cancel(TimerKind::Retry, o);
            c.go(S::Stopped, "revision stopping", o);
        }
        // Stale gate and mount answers.
        (S::Recovering, I::GroupsBefore { .. } | I::Mounted | I::MountFailed { .. }) => {}

        // No SIGTERM of a stop is under way: a late answer about one is stale.
        (
            S::Installed
            | S::Blocked
            | S::Mounted
            | S::Starting
            | S::Started
            | S::Ready
            | S::Recovering
            | S::Stopped,
            I::TermState { .. },
        ) => {}

        // ---- STOPPING: SIGTERM sent, waiting for the exit ----
        // Gone: STOPPED (unmount), then what the stop was for.
        (S::Stopping, I::Exited { status }) => {
            c.enter_stopped(&format!("init exited with {status} after stop"), o);
            c.finish_stop(o);
        }
        // Grace over: SIGKILL (the exit will follow).
        (
            S::Stopping,
            I::Timer {
                kind: TimerKind::StopGrace,
            },
        ) => {
            if let Some(pid) = c.pid {
                c.push(
                    |container| Action::Signal {
                        container,
                        pid,
                        sig: Sig::Kill,
                    },
                    o,
                );
            }
            let g = c.cfg.stop_grace.as_secs();
            c.log(
                Level::Warn,
                &format!("still running {g}s after SIGTERM; SIGKILL"),
                o,
            );
        }
        // How the init takes the SIGTERM just sent: SIGKILL at once when it cannot end it.
        (S::Stopping, I::TermState { pid, state }) => c.term_reach(pid, state, o),
        // No other timer runs while stopping.
        (
            S::Stopping,
            I::Timer {
                kind: TimerKind::Goal | TimerKind::Retry | TimerKind::Stable,
            },
        ) => {}
        // API stop while stopping: end as stopped by the user.
        (S::Stopping, I::ApiStop) => c.after_stop = AfterStop::UserStop,
        // API start or restart while stopping: end by starting again.
        (S::Stopping, I::ApiStart | I::ApiRestart) => c.after_stop = AfterStop::Restart,
        // Revision stopping: end quietly.
        (S::Stopping, I::Stop) => c.after_stop = AfterStop::Quiet,
        // Stale gate, mount and spawn answers.
        (
            S::Stopping,
            I::GroupsBefore { .. } | I::Mounted | I::MountFailed { .. } | I::SpawnFailed { .. },
        ) => {}

        // ---- STOPPED: stays down until the API starts it (or a new revision runs) ----
        // API start or restart: INSTALLED, flags and counters reset.
        (S::Stopped, I::ApiStart | I::ApiRestart) => c.restart_now("started through the API", o),
        // API stop: mark it stopped by the user (no-op if it already is).
        (S::Stopped, I::ApiStop) => c.user_stopped = true,
        // A mount that lands after the stop is undone.
        (S::Stopped, I::Mounted) => {
            if c.mounting {
                c.mounting = false;
                c.push(|container| Action::Unmount { container }, o);
            }
        }
        (S::Stopped, I::MountFailed { .. }) => c.mounting = false,
        // Already stopped; no gate, timer or stop concerns it.
        (S::Stopped, I::GroupsBefore { .. } | I::Stop | I::Timer { .. }) => {}
    }
    out
}

#[cfg(test)]
#[path = "container_tests/mod.rs"]
mod tests;
