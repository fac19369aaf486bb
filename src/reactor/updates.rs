//! The reactor's side of updates and commands: carrying out `POST /commands`, the two
//! transition paths (reboot: stop everything and boot the try; non-reboot: stop the changed
//! containers, then continue the others under the new revision), feeding the revision
//! machine the goal state after every engine step, and executing what it decides (progress,
//! commit timer, commit, rollback).

use std::time::{Duration, Instant};

use super::{Due, Exit, Reactor};
use crate::api::commands::{Command, Op};
use crate::device::Running;
use crate::engine::update::{Transition, Update, UpdateAction, UpdateEvent, plan_transition};
use crate::engine::{GoalState, Options, Supervisor};
use crate::spec::{ParseOptions, State, parse_state_with};
use crate::store::Progress;
use crate::store::boot::{BootEnv, BootStore};

/// How often an update held off by an update lock looks again.
const LOCK_RETRY: Duration = Duration::from_secs(2);

/// How a LOCAL_RUN-like command wants the revision run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunMode {
    /// LOCAL_RUN: the transition the changes need.
    Auto,
    /// LOCAL_RUN_COMMIT: always the reboot path, so a success commits DONE.
    Reboot,
    /// TRY_ONCE: like LOCAL_RUN, but never becomes the rollback point.
    Once,
    /// LOCAL_APPLY: never the reboot path; changed containers restart in place.
    Apply,
}

/// A non-reboot transition waiting for its changed containers to stop.
pub struct Pending {
    rev: String,
    state: State,
    restart: Vec<String>,
    once: bool,
}

/// Parse revision `rev` as the daemon runs it.
pub fn load_state(
    api: &crate::api::Api,
    rev: &str,
) -> Result<(serde_json::Map<String, serde_json::Value>, State), String> {
    let bytes = api
        .device
        .storage
        .trails
        .read_state(rev)
        .map_err(|_| "State JSON not found".to_string())?;
    let opts = ParseOptions {
        goals_timeout: u32::try_from(api.device.config.get_u64("PV_UPDATER_GOALS_TIMEOUT"))
            .unwrap_or(u32::MAX),
    };
    let state = parse_state_with(&bytes, &opts).map_err(|e| {
        log::error!("update: revision {rev}: {e}");
        "State JSON has bad format".to_string()
    })?;
    let doc = match serde_json::from_slice(&bytes) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => return Err("State JSON has bad format".into()),
    };
    Ok((doc, state))
}

pub fn supervisor_options(config: &crate::config::Config) -> Options {
    Options {
        stop_grace: Duration::from_secs(config.get_u64("TERN_STOP_GRACE")),
    }
}

impl Reactor {
    fn boot_store(&self) -> BootStore {
        BootStore::new(self.api.device.storage.root())
    }

    /// Write a revision's progress, then tell the hub client (disk first: it wins).
    fn progress(&mut self, rev: &str, p: &Progress) {
        if let Err(e) = self.api.device.storage.trails.write_progress(rev, p) {
            log::error!("update: cannot write the progress of {rev}: {e}");
        }
        log::info!("update {rev}: {} {}", p.status, p.status_msg);
        self.hub_progress(rev, p);
    }

    /// A hub step whose objects are all here: run it as a local update would be run.
    #[cfg_attr(not(feature = "hub"), allow(dead_code))]
    pub(super) fn run_remote(&mut self, rev: &str, now: Instant) {
        self.local_run(rev, RunMode::Auto, now);
    }

    /// Carry out the command `POST /commands` accepted.
    pub(super) fn run_command(&mut self, cmd: Command, now: Instant) {
        log::info!("command: {:?} {:?}", cmd.op, cmd.payload);
        match cmd.op {
            Op::LocalRun => self.local_run(&cmd.payload, RunMode::Auto, now),
            Op::LocalRunCommit => self.local_run(&cmd.payload, RunMode::Reboot, now),
            Op::TryOnce => self.local_run(&cmd.payload, RunMode::Once, now),
            Op::LocalApply => self.local_run(&cmd.payload, RunMode::Apply, now),
            // The payload is the message the reboot or power-off is logged with.
            Op::RebootDevice => {
                let why = or_default(cmd.payload, "reboot requested");
                self.containers.exit.get_or_insert(Exit::Reboot(why));
            }
            Op::PoweroffDevice => {
                let why = or_default(cmd.payload, "poweroff requested");
                self.containers.exit.get_or_insert(Exit::Poweroff(why));
            }
            Op::RunGc => match crate::api::gc::collect(&self.api) {
                Ok(done) => log::info!("gc: reclaimed {} bytes", done.bytes),
                Err(e) => log::error!("gc: {e}"),
            },
            Op::MakeFactory => self.make_factory(&cmd.payload),
            Op::UpdateMetadata => self.update_metadata(&cmd.payload),
            Op::GoRemote => {
                self.api.device.go_remote = true;
                self.start_hub(now);
            }
            Op::EnableSsh | Op::DisableSsh => {
                let result = if cmd.op == Op::EnableSsh {
                    self.api.daemons.start("sshd")
                } else {
                    self.api.daemons.stop("sshd")
                };
                match result {
                    Ok(actions) => self.daemon_actions(actions, now),
                    Err(_) => log::warn!("command: no ssh daemon (TERN_SSHD_CMD is not set)"),
                }
            }
            Op::XconnectGraph => self.reconcile_xconnect(true),
            Op::Unclaim => self.hub_command(crate::engine::hub::HubEvent::Unclaim, now),
            Op::DeferReboot => {}
        }
    }

    fn make_factory(&mut self, payload: &str) {
        let trails = &self.api.device.storage.trails;
        let source = if payload.is_empty() {
            "current"
        } else {
            payload
        };
        let Some(rev) = trails.resolve(source) else {
            log::error!("command: MAKE_FACTORY: no revision {source}");
            return;
        };
        let result = trails.read_state(&rev).and_then(|state| {
            trails.install("0", &state, &Progress::factory())?;
            trails.mark_done("0")
        });
        match result {
            Ok(()) => log::info!("command: revision {rev} is now the factory revision 0"),
            Err(e) => log::error!("command: MAKE_FACTORY failed: {e}"),
        }
    }

    fn update_metadata(&mut self, payload: &str) {
        let Ok(serde_json::Value::Object(map)) = serde_json::from_str(payload) else {
            log::warn!("command: UPDATE_METADATA payload is not a JSON object");
            return;
        };
        for (k, v) in map {
            let value = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            if let Err(e) = self.api.device.storage.device_meta.put(&k, &value) {
                log::warn!("command: UPDATE_METADATA {k}: {e:?}");
            } else if let Err(e) = self.api.device.device_view.set(&k, &value) {
                log::warn!("meta: {k} not written to the run dir view: {e}");
            }
        }
    }

    /// LOCAL_RUN and friends: check the revision, decide the path, start the transition.
    fn local_run(&mut self, target: &str, mode: RunMode, now: Instant) {
        let trails = &self.api.device.storage.trails;
        let Some(rev) = trails.resolve(target) else {
            log::error!("update: LOCAL_RUN: no revision {target:?}");
            if crate::store::trails::is_rev(target) && trails.rev_dir(target).is_dir() {
                self.progress(
                    target,
                    &Progress::new("WONTGO", "State JSON not found", 100),
                );
            }
            return;
        };
        let (new_doc, new_state) = match load_state(&self.api, &rev) {
            Ok(s) => s,
            Err(msg) => {
                self.progress(&rev, &Progress::new("WONTGO", &msg, 100));
                return;
            }
        };
        if !self.signatures_allow(&rev, &new_doc) {
            return;
        }
        let Some(run) = self.api.device.running.as_ref() else {
            // Nothing runs (the current revision did not load): only the reboot path is safe.
            self.start_reboot_transition(&rev, mode == RunMode::Once, "no revision running");
            return;
        };
        if run.rev == rev {
            log::warn!("update: {rev} is already running");
            self.progress(&rev, &Progress::new("WONTGO", "Update aborted", 100));
            return;
        }
        let old_doc = match load_state(&self.api, &run.rev) {
            Ok((doc, _)) => doc,
            Err(_) => serde_json::Map::new(),
        };
        let planned = plan_transition(&old_doc, &new_doc, &run.state, &new_state);
        let transition = match (mode, planned) {
            (RunMode::Reboot, _) => Transition::Reboot {
                why: "LOCAL_RUN_COMMIT".into(),
            },
            (RunMode::Apply, Transition::Reboot { .. }) => Transition::NonReboot {
                restart: changed_or_all(&run.state, &new_state),
            },
            (_, t) => t,
        };
        // balena's update locks: an update that would stop a locked container waits.
        let affected: Vec<String> = match &transition {
            Transition::Reboot { .. } => run
                .state
                .containers
                .iter()
                .map(|c| c.name.clone())
                .collect(),
            Transition::NonReboot { restart } => restart.clone(),
        };
        let run_dir = self.api.device.config.rundir();
        let force = std::mem::take(&mut self.force_switch);
        if let Some(held) = affected
            .iter()
            .find(|n| !force && crate::api::v1::lock_held(&run_dir, n))
        {
            log::warn!("update {rev}: {held} holds its update lock; trying again in 2 s");
            self.locked_run = Some((target.to_string(), mode));
            self.deadlines.push(now + LOCK_RETRY, Due::LockedRun);
            return;
        }
        match transition {
            Transition::Reboot { why } => {
                self.start_reboot_transition(&rev, mode == RunMode::Once, &why)
            }
            Transition::NonReboot { restart } => {
                self.start_non_reboot(rev, new_state, restart, mode == RunMode::Once, now)
            }
        }
    }

    /// The revision's signatures, checked before it runs (also a hub step: its objects are
    /// here by now, but a mode or trust changed since its download is still obeyed): false,
    /// with the revision WONTGO, when the secureboot mode refuses it.
    fn signatures_allow(
        &mut self,
        rev: &str,
        doc: &serde_json::Map<String, serde_json::Value>,
    ) -> bool {
        let doc = serde_json::Value::Object(doc.clone());
        let sb = &self.api.device.secureboot;
        let verdict = sb.check_doc(&self.api.device.config, "run", rev, &doc);
        match verdict.refused() {
            Some(msg) => {
                self.progress(rev, &Progress::new("WONTGO", msg, 100));
                false
            }
            None => {
                self.api.device.secureboot.remember(rev, &verdict);
                true
            }
        }
    }

    /// Make the try durable before anything of it happens; false (and the update failed)
    /// when that is impossible.
    fn record_try(&mut self, rev: &str, tried: bool, once: bool) -> bool {
        let mut env = self.boot_store().load("0");
        env.try_rev = Some(rev.to_string());
        env.tried = tried;
        env.once = once;
        match self.boot_store().save(&env) {
            Ok(()) => true,
            Err(e) => {
                log::error!("update {rev}: cannot record the try: {e}; not running it");
                self.progress(rev, &Progress::new("ERROR", "Internal error", 100));
                false
            }
        }
    }

    fn start_reboot_transition(&mut self, rev: &str, once: bool, why: &str) {
        log::info!("update {rev}: reboot transition ({why})");
        if !self.record_try(rev, false, once) {
            return;
        }
        self.progress(rev, &Progress::new("INPROGRESS", "Rebooting", 50));
        // Refuse further update commands while going down.
        let delay = commit_delay(&self.api.device.config);
        self.api.device.update = Some(Update::new(rev, true, once, delay));
        self.containers
            .exit
            .get_or_insert(Exit::Reboot(format!("update to {rev}")));
    }

    fn start_non_reboot(
        &mut self,
        rev: String,
        state: State,
        restart: Vec<String>,
        once: bool,
        now: Instant,
    ) {
        // Already "started": if the daemon dies before the commit, the next start rolls back.
        if !self.record_try(&rev, true, once) {
            return;
        }
        self.progress(
            &rev,
            &Progress::new(
                "INPROGRESS",
                "Transitioning to new revision without rebooting",
                30,
            ),
        );
        log::info!("update {rev}: non-reboot transition, restarting {restart:?}");
        let actions = match self.api.device.running.as_mut() {
            Some(run) => run.supervisor.stop(&restart, now),
            None => Vec::new(),
        };
        let delay = commit_delay(&self.api.device.config);
        self.api.device.update = Some(Update::new(&rev, false, once, delay));
        self.pending = Some(Pending {
            rev,
            state,
            restart,
            once,
        });
        self.execute(actions, now);
        // Nothing to stop (only signatures changed): no container event will come to finish
        // the transition, so look now.
        self.check_update(now);
    }

    /// After every engine step: finish a pending transition, feed the revision machine.
    pub(super) fn check_update(&mut self, now: Instant) {
        if self.checking {
            return;
        }
        self.checking = true;
        for _ in 0..8 {
            if !self.check_once(now) {
                break;
            }
        }
        self.checking = false;
        // Containers may have come or gone: xconnect follows.
        if !self.shutting_down {
            self.reconcile_xconnect(false);
        }
    }

    /// One round; true when something changed and another look is worth it.
    fn check_once(&mut self, now: Instant) -> bool {
        // Going down (reboot path, rollback, shutdown): nothing more to decide here.
        if self.containers.exit.is_some() {
            return false;
        }
        if let Some(reason) = self.failures.pop() {
            return self.update_event(UpdateEvent::Failed { reason }, now);
        }
        if self.run_purges(now) {
            return true;
        }
        if self.pending.is_some() {
            let down = self.api.device.running.as_ref().is_none_or(|r| {
                self.pending
                    .as_ref()
                    .is_some_and(|p| r.supervisor.are_down(&p.restart))
            });
            if down {
                self.finish_non_reboot(now);
                return true;
            }
            return false;
        }
        let Some(goal) = self
            .api
            .device
            .running
            .as_ref()
            .map(|r| r.supervisor.revision_goal())
        else {
            return false;
        };
        match goal {
            GoalState::Achieved => self.update_event(UpdateEvent::GoalsAchieved, now),
            GoalState::TimedOut => self.update_event(UpdateEvent::GoalsTimedOut, now),
            _ => false,
        }
    }

    fn finish_non_reboot(&mut self, now: Instant) {
        let Some(p) = self.pending.take() else { return };
        let opts = supervisor_options(&self.api.device.config);
        let Some(old) = self.api.device.running.take() else {
            return;
        };
        let keep: Vec<String> = old
            .state
            .containers
            .iter()
            .map(|c| c.name.clone())
            .filter(|n| !p.restart.contains(n))
            .collect();
        let mut supervisor = Supervisor::carry_over(&p.state, opts, &old.supervisor, &keep);
        supervisor.set_updating(true);
        if let Err(e) = self.api.device.storage.trails.set_current(&p.rev) {
            log::error!("update {}: cannot point trails/current at it: {e}", p.rev);
        }
        self.api.device.running = Some(Running {
            rev: p.rev.clone(),
            state: p.state,
            supervisor,
        });
        let delay = commit_delay(&self.api.device.config);
        self.api.device.update = Some(Update::new(&p.rev, false, p.once, delay));
        self.progress(&p.rev, &Update::trying());
        self.feed(crate::engine::Event::Start, now);
    }

    /// Feed the revision machine (when an update is being tried) and carry out its actions.
    pub(super) fn update_event(&mut self, event: UpdateEvent, now: Instant) -> bool {
        let Some(update) = self.api.device.update.as_mut() else {
            return false;
        };
        let actions = update.step(event, now);
        if actions.is_empty() {
            return false;
        }
        let rev = update.rev.clone();
        for a in actions {
            match a {
                UpdateAction::Progress(p) => self.progress(&rev, &p),
                UpdateAction::ArmCommit { at } => {
                    self.commit_generation += 1;
                    self.deadlines.push(
                        at,
                        Due::Commit {
                            generation: self.commit_generation,
                        },
                    );
                }
                UpdateAction::Commit { done } => self.commit(&rev, done),
                UpdateAction::Rollback => self.rollback(&rev),
            }
        }
        true
    }

    /// An update waiting for update locks: try it again.
    pub(super) fn locked_run_due(&mut self, now: Instant) {
        if let Some((target, mode)) = self.locked_run.take() {
            self.local_run(&target, mode, now);
        }
    }

    /// The commit timer fired.
    pub(super) fn commit_due(&mut self, generation: u64, now: Instant) {
        log::debug!(
            "update: commit timer {generation} (current {})",
            self.commit_generation
        );
        if generation != self.commit_generation {
            return;
        }
        let pending = self
            .api
            .device
            .running
            .as_ref()
            .is_some_and(|r| r.supervisor.stability_pending())
            || self.hub_holds_commit();
        self.update_event(
            UpdateEvent::CommitTimer {
                stability_pending: pending,
            },
            now,
        );
    }

    fn commit(&mut self, rev: &str, done: bool) {
        let store = self.boot_store();
        let mut env = store.load("0");
        env.try_rev = None;
        env.tried = false;
        env.once = false;
        if done {
            env.rev = rev.to_string();
        }
        // The boot record is the commit point; `.pv/done` and the final progress follow it.
        if let Err(e) = store.save(&env) {
            log::error!("update {rev}: cannot record the commit: {e}");
        }
        if done && let Err(e) = self.api.device.storage.trails.mark_done(rev) {
            log::error!("update {rev}: cannot mark it done: {e}");
        }
        self.api.device.update = None;
        if let Some(run) = self.api.device.running.as_mut() {
            run.supervisor.set_updating(false);
        }
    }

    /// Back to the committed revision through the reboot path (the try stays recorded as
    /// started, so the next boot runs the rollback point).
    fn rollback(&mut self, rev: &str) {
        let store = self.boot_store();
        let mut env = store.load("0");
        env.tried = true;
        if let Err(e) = store.save(&env) {
            log::error!("update {rev}: cannot record the rollback: {e}");
        }
        self.containers
            .exit
            .get_or_insert(Exit::Reboot(format!("rollback from {rev}")));
    }
}

/// LOCAL_APPLY of a change that would need a reboot: restart every container whose
/// definition differs, and any added or removed one.
fn changed_or_all(old: &State, new: &State) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in old.containers.iter().chain(&new.containers) {
        let before = old.containers.iter().find(|o| o.name == c.name);
        let after = new.containers.iter().find(|n| n.name == c.name);
        let objects = |s: &State| -> Vec<(String, String)> {
            s.objects
                .iter()
                .filter(|(p, _)| p.starts_with(&format!("{}/", c.dir)))
                .cloned()
                .collect()
        };
        if (before != after || objects(old) != objects(new)) && !out.contains(&c.name) {
            out.push(c.name.clone());
        }
    }
    out
}

fn or_default(s: String, default: &str) -> String {
    if s.is_empty() { default.to_string() } else { s }
}

pub fn commit_delay(config: &crate::config::Config) -> Duration {
    Duration::from_secs(config.get_u64("PV_UPDATER_COMMIT_DELAY"))
}

/// What this start runs: the boot decision, made durable before anything runs.
pub fn decide_boot(store: &BootStore, current: &str) -> (crate::store::boot::Boot, BootEnv) {
    let env = store.load(current);
    let (boot, next) = env.boot();
    if next != env
        && let Err(e) = store.save(&next)
    {
        log::error!("boot: cannot record this start: {e}");
    }
    (boot, next)
}
