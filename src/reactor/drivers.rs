//! Loading drivers without blocking the loop: a container's `Spawn` waits behind a gate while
//! the module loader runs for each of its required and optional drivers (one child process
//! per module, one after another per driver); `PUT /drivers/...` runs manual ones the same
//! way. Loader children are reaped with the others and recognised by pid here.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use super::Reactor;
use crate::engine::drivers::{self, DriverStatus, Kind};
use crate::engine::{Action, Event};

/// What a finished job was for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Purpose {
    /// Part of the start of this container.
    Gate(String),
    /// Asked through the API.
    Api,
}

#[derive(Debug)]
struct Job {
    purpose: Purpose,
    driver: String,
    kind: Kind,
    unload: bool,
    remaining: VecDeque<Vec<String>>,
    pid: Option<i32>,
}

/// A container start waiting for its drivers.
#[derive(Debug, Default)]
struct Gate {
    pending: usize,
    failed_required: Vec<String>,
}

#[derive(Debug, Default)]
pub struct DriverRuns {
    jobs: Vec<Job>,
    gates: HashMap<String, Gate>,
}

impl Reactor {
    fn loader(&self) -> String {
        self.api
            .device
            .config
            .get("TERN_MODULE_LOADER")
            .unwrap_or("modprobe")
            .to_string()
    }

    fn meta_lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        |k| self.api.device.storage.user_meta.get(k).map(str::to_string)
    }

    /// `Spawn` of `container`: straight through when its drivers are loaded (or it has none),
    /// else behind a gate. Returns true when the spawn was taken over.
    pub(super) fn gate_spawn(&mut self, container: &str, now: Instant) -> bool {
        let Some(run) = self.api.device.running.as_ref() else {
            return false;
        };
        let Some(aliases) = run.state.drivers.clone() else {
            // No drivers.json: required drivers cannot exist.
            let missing: Vec<String> = drivers::of_container(&run.state, container)
                .into_iter()
                .filter(|(_, k)| *k == Kind::Required)
                .map(|(n, _)| n)
                .collect();
            if missing.is_empty() {
                return false;
            }
            let error = format!("required driver(s) {missing:?} not defined by the BSP");
            self.feed(
                Event::SpawnFailed {
                    container: container.to_string(),
                    error,
                },
                now,
            );
            return true;
        };
        let loader = self.loader();
        let wanted: Vec<(String, Kind)> = drivers::of_container(&run.state, container)
            .into_iter()
            .filter(|(n, k)| {
                *k != Kind::Manual && self.api.drivers.status(n) != DriverStatus::Loaded
            })
            .collect();
        let mut gate = Gate::default();
        let mut jobs = Vec::new();
        for (name, kind) in wanted {
            match drivers::commands(&aliases, &name, &loader, false, self.meta_lookup()) {
                Some(cmds) => jobs.push(Job {
                    purpose: Purpose::Gate(container.to_string()),
                    driver: name,
                    kind,
                    unload: false,
                    remaining: cmds.into(),
                    pid: None,
                }),
                None if kind == Kind::Required => gate.failed_required.push(name),
                None => log::warn!("{container}: optional driver {name} is not defined by the BSP"),
            }
        }
        if jobs.is_empty() && gate.failed_required.is_empty() {
            return false;
        }
        gate.pending = jobs.len();
        self.driver_runs.gates.insert(container.to_string(), gate);
        for job in jobs {
            self.run_job(job, now);
        }
        self.check_gate(container, now);
        true
    }

    /// Load or unload the caller's manual drivers (all, or `name`) for `PUT /drivers/...`.
    pub(super) fn api_drivers(
        &mut self,
        container: &str,
        name: Option<&str>,
        unload: bool,
        now: Instant,
    ) {
        let Some(run) = self.api.device.running.as_ref() else {
            return;
        };
        let Some(aliases) = run.state.drivers.clone() else {
            return;
        };
        let loader = self.loader();
        let manual: Vec<(String, Kind)> = drivers::of_container(&run.state, container)
            .into_iter()
            .filter(|(n, k)| *k == Kind::Manual && name.is_none_or(|w| w == n))
            .collect();
        for (driver, kind) in manual {
            if let Some(cmds) =
                drivers::commands(&aliases, &driver, &loader, unload, self.meta_lookup())
            {
                self.run_job(
                    Job {
                        purpose: Purpose::Api,
                        driver,
                        kind,
                        unload,
                        remaining: cmds.into(),
                        pid: None,
                    },
                    now,
                );
            }
        }
    }

    /// Start the job's next command, or finish it when none is left.
    fn run_job(&mut self, mut job: Job, now: Instant) {
        let Some(argv) = job.remaining.pop_front() else {
            self.finish_job(job, true, now);
            return;
        };
        let log = self.api.device.storage.root().join("logs/drivers.log");
        match crate::runtime::spawn_command(&argv, &log) {
            Ok(pid) => {
                log::info!("driver {}: {}", job.driver, argv.join(" "));
                job.pid = Some(pid.as_raw());
                self.driver_runs.jobs.push(job);
            }
            Err(e) => {
                log::error!("driver {}: {e}", job.driver);
                self.finish_job(job, false, now);
            }
        }
    }

    fn finish_job(&mut self, job: Job, ok: bool, now: Instant) {
        let status = match (ok, job.unload) {
            (true, false) => DriverStatus::Loaded,
            (true, true) => DriverStatus::Unloaded,
            (false, _) => DriverStatus::Unknown,
        };
        self.api.drivers.set(&job.driver, status);
        let verb = if job.unload { "unload" } else { "load" };
        if ok {
            log::info!("driver {}: {}", job.driver, status.as_str());
        } else {
            log::warn!(
                "driver {} ({}): {verb} failed",
                job.driver,
                job.kind.as_str()
            );
        }
        if let Purpose::Gate(container) = &job.purpose {
            if let Some(gate) = self.driver_runs.gates.get_mut(container) {
                gate.pending = gate.pending.saturating_sub(1);
                if !ok && job.kind == Kind::Required {
                    gate.failed_required.push(job.driver.clone());
                }
            }
            self.check_gate(container, now);
        }
    }

    /// A gate with nothing pending lets its container start, or fails the start.
    fn check_gate(&mut self, container: &str, now: Instant) {
        let done = self
            .driver_runs
            .gates
            .get(container)
            .is_some_and(|g| g.pending == 0);
        if !done {
            return;
        }
        let Some(gate) = self.driver_runs.gates.remove(container) else {
            return;
        };
        if gate.failed_required.is_empty() {
            self.spawn_now(container, now);
        } else {
            let error = format!(
                "required driver(s) {:?} failed to load",
                gate.failed_required
            );
            self.feed(
                Event::SpawnFailed {
                    container: container.to_string(),
                    error,
                },
                now,
            );
        }
    }

    /// A reaped pid that was a loader's; false when it was not.
    pub(super) fn driver_exited(&mut self, pid: i32, ok: bool, now: Instant) -> bool {
        let Some(i) = self
            .driver_runs
            .jobs
            .iter()
            .position(|j| j.pid == Some(pid))
        else {
            return false;
        };
        let mut job = self.driver_runs.jobs.remove(i);
        job.pid = None;
        if ok {
            self.run_job(job, now);
        } else {
            self.finish_job(job, false, now);
        }
        true
    }

    /// Spawn past the gate.
    fn spawn_now(&mut self, container: &str, now: Instant) {
        self.execute_ungated(
            vec![Action::Spawn {
                container: container.to_string(),
            }],
            now,
        );
        self.check_update(now);
    }
}
