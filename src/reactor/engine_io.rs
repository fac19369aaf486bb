//! Feeding the engine and carrying out what it says: events in, actions executed (through
//! the container executor, the driver gate, the revision machine), deadlines of the containers.

use std::time::Instant;

use super::containers::{ContainerDue, Effects};
use super::{Due, Reactor};
use crate::engine::{Action, Event, TimerKind};

impl Reactor {
    /// Start the board's daemons and the loaded revision's containers (call once, before
    /// [`Reactor::run`]).
    pub fn start_revision(&mut self) {
        let now = Instant::now();
        let actions = self.api.daemons.boot();
        self.daemon_actions(actions, now);
        self.feed(Event::Start, now);
    }

    /// Give `event` to the engine and carry out everything it leads to.
    pub(super) fn feed(&mut self, event: Event, now: Instant) {
        let Some(run) = self.api.device.running.as_mut() else {
            return;
        };
        let actions = run.supervisor.handle(event, now);
        self.execute(actions, now);
        self.check_update(now);
    }

    /// Execute actions until the engine has nothing more to say (results of actions are
    /// events, which produce more actions).
    pub(super) fn execute(&mut self, actions: Vec<Action>, now: Instant) {
        self.execute_with(actions, now, true);
    }

    /// The same, with `Spawn` going straight to the runtime (its drivers are loaded).
    pub(super) fn execute_ungated(&mut self, actions: Vec<Action>, now: Instant) {
        self.execute_with(actions, now, false);
    }

    pub(super) fn execute_with(&mut self, actions: Vec<Action>, now: Instant, gated: bool) {
        let mut queue: std::collections::VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            // A start waits for its container's drivers; the gate spawns it later.
            if gated
                && let Action::Spawn { container } = &action
                && self.gate_spawn(&container.clone(), now)
            {
                continue;
            }
            if let Action::RevisionStatus { status } = &action
                && let Err(e) = self
                    .api
                    .device
                    .device_view
                    .set("pantavisor.status", status.as_str())
            {
                log::warn!("meta: cannot update pantavisor.status in the run dir: {e}");
            }
            if let Action::RequestRollback { reason } = &action
                && self.api.device.update.is_some()
            {
                self.failures.push(reason.clone());
                continue;
            }
            let Some(run) = self.api.device.running.as_mut() else {
                return;
            };
            let mut fx = Effects::default();
            self.containers
                .execute(action, run, self.poll.registry(), now, &mut fx);
            for (at, due) in fx.deadlines {
                self.deadlines.push(at, Due::Containers(due));
            }
            for event in fx.events {
                queue.extend(run.supervisor.handle(event, now));
            }
        }
    }

    /// Actions queued by API handlers (container start/stop, ready signal), and the command
    /// `POST /commands` accepted.
    pub(super) fn drain_api_actions(&mut self, now: Instant) {
        if !self.api.actions.is_empty() {
            let actions = std::mem::take(&mut self.api.actions);
            self.execute(actions, now);
            self.check_update(now);
        }
        if let Some(cmd) = self.api.command.take() {
            self.run_command(cmd, now);
        }
        if !self.api.daemon_actions.is_empty() {
            let actions = std::mem::take(&mut self.api.daemon_actions);
            self.daemon_actions(actions, now);
        }
        for (container, name, unload) in std::mem::take(&mut self.api.driver_requests) {
            self.api_drivers(&container, name.as_deref(), unload, now);
        }
        for effect in std::mem::take(&mut self.api.v1_effects) {
            self.v1_effect(effect, now);
        }
        // A regenerated key reaches containers started from now on (balena: at the next
        // recreation).
        self.containers.set_env(self.api.v1_env(""));
    }

    pub(super) fn pump(&mut self, container: usize, now: Instant) {
        let mut fx = Effects::default();
        self.containers
            .pump(container, self.poll.registry(), now, &mut fx);
        self.push_effects(fx, now);
    }

    pub(super) fn push_effects(&mut self, fx: Effects, now: Instant) {
        for (at, due) in fx.deadlines {
            self.deadlines.push(at, Due::Containers(due));
        }
        for event in fx.events {
            self.feed(event, now);
        }
    }

    pub(super) fn container_due(&mut self, due: ContainerDue, now: Instant) {
        let mut fx = Effects::default();
        match due {
            ContainerDue::Timer {
                container,
                kind,
                generation,
            } => {
                if !self
                    .containers
                    .timer_is_current(container, kind, generation)
                {
                    return;
                }
                let name = self.containers.name(container).map(str::to_string);
                if let (Some(container), Some(&kind)) = (name, TimerKind::ALL.get(kind)) {
                    fx.events.push(Event::Timer { container, kind });
                }
            }
            ContainerDue::Teardown { container } => {
                self.containers
                    .try_teardown(container, self.poll.registry(), now, &mut fx)
            }
            ContainerDue::Pump { container } => {
                self.containers
                    .pump(container, self.poll.registry(), now, &mut fx)
            }
        }
        self.push_effects(fx, now);
    }
}
