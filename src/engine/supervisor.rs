//! The containers and groups of one running revision, driven together: routes each
//! [`Event`] to its container's machine, then releases groups in order (feeding
//! `GroupsBefore` to waiting containers) and keeps group and revision status, logging each
//! change. Quiet stops (shutdown, non-reboot transitions) go the other way: the latest
//! group's members together, each earlier group once every later one is down. It owns no
//! file descriptor and reads no clock; `now` comes with every event.

use std::time::Duration;
use std::time::Instant;

use log::Level;

use super::api::{self, Refusal};
use super::container::{self, Config, Container, Ctx, DEFAULT_STOP_GRACE, Input};
use super::group::{self, GoalState, Member};
use super::{Action, ApiAction, Event, Status, json};
use crate::spec::{Group, State};

/// Knobs from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Grace between SIGTERM and SIGKILL of a stop (Pantavisor: 5 s).
    pub stop_grace: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            stop_grace: DEFAULT_STOP_GRACE,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Supervisor {
    containers: Vec<Container>,
    /// Group index of each container.
    group_of: Vec<usize>,
    groups: Vec<Group>,
    group_status: Vec<Status>,
    revision: Option<Status>,
    updating: bool,
    running: bool,
    /// Containers a quiet stop was asked for (StopAll, [`Supervisor::stop`]), still
    /// consulted while some of them wait.
    stop_set: Vec<usize>,
    /// Those of them whose SIGTERM waits until no later group's member of the set is up.
    deferred: Vec<usize>,
}

impl Supervisor {
    /// The machines of `state`, all INSTALLED; nothing starts before [`Event::Start`].
    pub fn new(state: &State, opts: Options) -> Supervisor {
        let mut containers = Vec::with_capacity(state.containers.len());
        let mut group_of = Vec::with_capacity(state.containers.len());
        for c in &state.containers {
            let gi = state
                .groups
                .iter()
                .position(|g| g.name == c.group)
                .unwrap_or(0);
            let timeout = state.groups.get(gi).map_or(0, |g| g.timeout);
            group_of.push(gi);
            containers.push(Container::new(Config {
                name: c.name.clone(),
                group: c.group.clone(),
                goal: c.status_goal,
                restart_policy: c.restart_policy,
                mgmt: c.mgmt,
                recovery: c.auto_recovery,
                goal_timeout: Duration::from_secs(u64::from(timeout)),
                stop_grace: opts.stop_grace,
            }));
        }
        let mut s = Supervisor {
            containers,
            group_of,
            groups: state.groups.clone(),
            group_status: Vec::new(),
            revision: None,
            updating: false,
            running: false,
            stop_set: Vec::new(),
            deferred: Vec::new(),
        };
        s.group_status = (0..s.groups.len())
            .map(|g| group::group_status(&s.members(g)))
            .collect();
        s
    }

    /// Whether an update is INPROGRESS or TESTING (fatal failures then roll back).
    pub fn set_updating(&mut self, updating: bool) {
        self.updating = updating;
    }

    pub fn containers(&self) -> &[Container] {
        &self.containers
    }

    pub fn container(&self, name: &str) -> Option<&Container> {
        self.containers.iter().find(|c| c.name() == name)
    }

    /// Groups in start order with their current status.
    pub fn groups(&self) -> impl Iterator<Item = (&Group, Status)> {
        self.groups.iter().zip(self.group_status.iter().copied())
    }

    /// The `GET /containers` body.
    pub fn containers_json(&self) -> String {
        json::containers_json(&self.containers)
    }

    /// The `GET /groups` body.
    pub fn groups_json(&self) -> String {
        json::groups_json(self.groups())
    }

    pub fn revision_status(&self) -> Status {
        group::revision_status(&self.group_status)
    }

    /// ACHIEVED once every container reached its goal; TIMEDOUT if one timed out (an
    /// update then fails with "Status goal not reached").
    pub fn revision_goal(&self) -> GoalState {
        let goals: Vec<GoalState> = (0..self.groups.len())
            .map(|g| group::group_goal(&self.members(g)))
            .collect();
        group::revision_goal(&goals)
    }

    /// Whether a TESTING commit must still wait for a container to become stable.
    pub fn stability_pending(&self) -> bool {
        self.containers.iter().any(|c| {
            super::recovery::stability_pending(&c.cfg.recovery, &c.tracker, c.user_stopped)
        })
    }

    /// Feed one event.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Start => self.running = true,
            Event::Mounted { container } => self.route(&container, Input::Mounted, now, &mut out),
            Event::MountFailed { container, error } => {
                self.route(&container, Input::MountFailed { error }, now, &mut out)
            }
            Event::Spawned { container, pid } => {
                self.route(&container, Input::Spawned { pid }, now, &mut out)
            }
            Event::SpawnFailed { container, error } => {
                self.route(&container, Input::SpawnFailed { error }, now, &mut out)
            }
            Event::ChildExited { pid, status } => {
                match self.containers.iter().position(|c| c.pid == Some(pid)) {
                    Some(i) => {
                        // Its stop was only waiting for its turn: the exit ends that stop,
                        // it is no crash to recover from.
                        // (The pid is reaped: no signal may go to it, it could be reused.)
                        if self.deferred.contains(&i) {
                            self.deferred.retain(|&d| d != i);
                            let mut stop = Vec::new();
                            self.step(i, Input::Stop, now, &mut stop);
                            out.extend(
                                stop.into_iter()
                                    .filter(|a| !matches!(a, Action::Signal { .. })),
                            );
                        }
                        self.step(i, Input::Exited { status }, now, &mut out)
                    }
                    None => out.push(Action::Log {
                        level: Level::Debug,
                        line: format!("supervisor: pid {pid} ({status}) is no container's init"),
                    }),
                }
            }
            Event::Timer { container, kind } => {
                self.route(&container, Input::Timer { kind }, now, &mut out)
            }
            Event::TermState {
                container,
                pid,
                state,
            } => self.route(&container, Input::TermState { pid, state }, now, &mut out),
            Event::StopAll => {
                self.running = false;
                self.stop_in_order(0..self.containers.len());
            }
        }
        self.settle(now, &mut out);
        out
    }

    /// Stop these containers quietly (no recovery follows): the first half of a non-reboot
    /// transition. Group order is kept as in [`Event::StopAll`].
    pub fn stop(&mut self, names: &[String], now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let idx: Vec<usize> = names.iter().filter_map(|n| self.index(n)).collect();
        self.stop_in_order(idx);
        self.settle(now, &mut out);
        out
    }

    /// Queue quiet stops; [`Supervisor::release_stops`] (run by every settle) sends them,
    /// the latest group first and each group's members together.
    fn stop_in_order(&mut self, idx: impl IntoIterator<Item = usize>) {
        for i in idx {
            if !self.stop_set.contains(&i) {
                self.stop_set.push(i);
            }
            if !self.deferred.contains(&i) {
                self.deferred.push(i);
            }
        }
    }

    /// Send the queued stops whose turn has come: a container that is not up stops at once
    /// (nothing to wait for, and nothing must start it meanwhile); one that is up waits
    /// while a member of the set in a later group is still up (started in order, stopped
    /// in reverse).
    fn release_stops(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.deferred.is_empty() {
            self.stop_set.clear();
            return;
        }
        let due: Vec<usize> = self
            .deferred
            .iter()
            .copied()
            .filter(|&i| !self.is_up(i) || !self.later_up(i))
            .collect();
        for &i in &due {
            self.step(i, Input::Stop, now, out);
        }
        self.deferred.retain(|i| !due.contains(i));
        if !self.deferred.is_empty() && !due.is_empty() {
            let names: Vec<&str> = self
                .deferred
                .iter()
                .map(|&i| self.containers[i].name())
                .collect();
            out.push(Action::Log {
                level: Level::Debug,
                line: format!("supervisor: {names:?} stop once later groups are down"),
            });
        }
    }

    /// A process of container `i` is (or may be) alive, or its volumes are mounted for
    /// the later groups (a data container).
    fn is_up(&self, i: usize) -> bool {
        self.containers.get(i).is_some_and(|c| {
            c.pid.is_some()
                || matches!(
                    c.status,
                    Status::Mounted | Status::Starting | Status::Stopping
                )
        })
    }

    /// A container of the stop set in a later group than `i` is still up.
    fn later_up(&self, i: usize) -> bool {
        let g = self.group_of[i];
        self.stop_set
            .iter()
            .any(|&j| self.group_of[j] > g && self.is_up(j))
    }

    /// Start a container again after a quiet stop, whatever its restart policy (the daemon's
    /// own maintenance, e.g. a data purge; clients go through [`Supervisor::api`]).
    pub fn start_again(&mut self, name: &str, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(i) = self.index(name) {
            self.step(i, Input::ApiStart, now, &mut out);
        }
        self.settle(now, &mut out);
        out
    }

    /// Whether none of these containers has a process left (STOPPED, or never started).
    pub fn are_down(&self, names: &[String]) -> bool {
        self.containers
            .iter()
            .filter(|c| names.iter().any(|n| n == c.name()))
            .all(|c| c.pid.is_none() && !matches!(c.status, Status::Starting | Status::Stopping))
    }

    /// The second half: machines for `state` where the containers named in `keep` continue
    /// from `previous` (same status, pid, timers, recovery counters), the rest INSTALLED.
    pub fn carry_over(
        state: &State,
        opts: Options,
        previous: &Supervisor,
        keep: &[String],
    ) -> Supervisor {
        let mut next = Supervisor::new(state, opts);
        for c in next.containers.iter_mut() {
            if !keep.iter().any(|k| k == c.name()) {
                continue;
            }
            if let Some(old) = previous.container(c.name()) {
                let cfg = c.cfg.clone();
                *c = old.clone();
                c.cfg = cfg;
            }
        }
        next.group_status = (0..next.groups.len())
            .map(|g| group::group_status(&next.members(g)))
            .collect();
        next
    }

    /// `PUT /containers/{name}` with `body`, after the caller was found to be mgmt.
    pub fn api(&mut self, name: &str, body: &[u8], now: Instant) -> Result<Vec<Action>, Refusal> {
        let i = self.index(name).ok_or(api::NOT_FOUND)?;
        let c = &self.containers[i];
        let input = match api::api_request(c.status, c.cfg.restart_policy, body)? {
            ApiAction::Start => Input::ApiStart,
            ApiAction::Stop => Input::ApiStop,
            ApiAction::Restart => Input::ApiRestart,
        };
        let mut out = Vec::new();
        self.step(i, input, now, &mut out);
        self.settle(now, &mut out);
        Ok(out)
    }

    /// `POST /signal {"type":"ready"}` from container `name`.
    pub fn ready(&mut self, name: &str, now: Instant) -> Result<Vec<Action>, Refusal> {
        let i = self.index(name).ok_or(api::SIGNAL_NOT_EXPECTED)?;
        api::ready_signal(self.containers[i].cfg.goal)?;
        let mut out = Vec::new();
        self.step(i, Input::ReadySignal, now, &mut out);
        self.settle(now, &mut out);
        Ok(out)
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.containers.iter().position(|c| c.name() == name)
    }

    fn route(&mut self, name: &str, input: Input, now: Instant, out: &mut Vec<Action>) {
        match self.index(name) {
            Some(i) => self.step(i, input, now, out),
            None => out.push(Action::Log {
                level: Level::Warn,
                line: format!("supervisor: no container '{name}' for {input:?}"),
            }),
        }
    }

    fn step(&mut self, i: usize, input: Input, now: Instant, out: &mut Vec<Action>) {
        let ctx = Ctx {
            updating: self.updating,
        };
        if let Some(c) = self.containers.get_mut(i) {
            out.extend(container::step_in_place(c, input, ctx, now));
        }
    }

    fn members(&self, g: usize) -> Vec<Member> {
        self.containers
            .iter()
            .zip(&self.group_of)
            .filter(|(_, gi)| **gi == g)
            .map(|(c, _)| Member {
                status: c.status,
                goal: c.goal_status(),
                timed_out: c.goal_timed_out,
            })
            .collect()
    }

    /// Release waiting containers whose earlier groups are done, until nothing moves; then
    /// report group and revision status changes.
    fn settle(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.release_stops(now, out);
        for _ in 0..=self.containers.len() + 1 {
            if !self.running {
                break;
            }
            let goals: Vec<GoalState> = (0..self.groups.len())
                .map(|g| group::group_goal(&self.members(g)))
                .collect();
            let mut moved = false;
            for i in 0..self.containers.len() {
                let c = &self.containers[i];
                let waiting =
                    matches!(c.status, Status::Installed | Status::Blocked) && !c.mounting;
                if !waiting {
                    continue;
                }
                let achieved = group::gate_open(&goals, self.group_of[i]);
                if c.status == Status::Blocked && !achieved {
                    continue;
                }
                let before = (c.status, c.mounting);
                self.step(i, Input::GroupsBefore { achieved }, now, out);
                let c = &self.containers[i];
                moved |= before != (c.status, c.mounting);
            }
            if !moved {
                break;
            }
        }
        self.report(out);
    }

    fn report(&mut self, out: &mut Vec<Action>) {
        for g in 0..self.groups.len() {
            let new = group::group_status(&self.members(g));
            let old = self.group_status[g];
            if new != old {
                let why = if new == Status::Ready {
                    "every member reached its goal"
                } else {
                    "lowest member short of its goal"
                };
                out.push(Action::Log {
                    level: Level::Info,
                    line: format!("group {}: {old} -> {new} ({why})", self.groups[g].name),
                });
                self.group_status[g] = new;
            }
        }
        if !self.running && self.revision.is_none() {
            return;
        }
        let new = self.revision_status();
        if self.revision != Some(new) {
            let line = match self.revision {
                Some(old) => format!("revision: {old} -> {new} (lowest group status)"),
                None => format!("revision: status {new} (first evaluation)"),
            };
            out.push(Action::Log {
                level: Level::Info,
                line,
            });
            out.push(Action::RevisionStatus { status: new });
            self.revision = Some(new);
        }
    }
}

#[cfg(test)]
#[path = "supervisor_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "supervisor_stop_tests.rs"]
mod stop_tests;
