//! The executor of the engine's container actions: what is running on the host for each
//! container of the revision (its [`Launched`] handle and console), the generations that make
//! cancelled timers harmless, and the requests that end the loop (reboot, shutdown).
//!
//! The reactor feeds it actions and the results of the kernel (reaped pids, readable console
//! pipes, due timers); it turns them into runtime calls and engine events. Nothing here waits:
//! a container that is not empty yet when it must be torn down is killed and retried a few
//! milliseconds later.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;

use crate::device::Running;
use crate::engine::{Action, Event, ExitStatus, Sig, TimerKind};
use crate::runtime::from_revision::{self, Host};
use crate::runtime::{self, Launched, Mode, Pump};

/// Console tokens are `CONSOLE_BASE + container index`, far above connection tokens.
pub const CONSOLE_BASE: usize = 1 << 20;
/// Pump at most this many budgets from one console per readiness (1 MiB), then come back.
const PUMP_ROUNDS: usize = 16;
/// How soon to retry tearing down a container whose processes are still dying.
pub const TEARDOWN_RETRY: Duration = Duration::from_millis(20);
/// After this many retries the teardown goes ahead lazily.
const TEARDOWN_TRIES: u32 = 100;

/// A deadline the containers asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ContainerDue {
    Timer {
        container: usize,
        kind: usize,
        generation: u64,
    },
    Teardown {
        container: usize,
    },
    /// Keep pumping a console that had more than one readiness' worth.
    Pump {
        container: usize,
    },
}

/// One started container.
struct Live {
    launched: Launched,
    console_open: bool,
    /// Stopped by the engine; torn down once empty.
    stopping: bool,
    teardown_tries: u32,
}

/// Why the loop should end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM/SIGINT: containers were stopped first.
    Signal,
    /// The engine found a failure only a reboot can cure, an update needs the reboot path,
    /// or a client asked for it.
    Reboot(String),
    /// POWEROFF_DEVICE.
    Poweroff(String),
}

pub struct Containers {
    host: Host,
    live: HashMap<usize, Live>,
    timer_generation: Vec<[u64; 4]>,
    names: Vec<String>,
    /// Set when the loop must end once every container is down.
    pub exit: Option<Exit>,
}

/// What an executed action asks of the reactor besides events.
#[derive(Default)]
pub struct Effects {
    pub events: Vec<Event>,
    pub deadlines: Vec<(Instant, ContainerDue)>,
}

impl Containers {
    pub fn new(host: Host) -> Containers {
        Containers {
            host,
            live: HashMap::new(),
            timer_generation: Vec::new(),
            names: Vec::new(),
            exit: None,
        }
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Replace the environment every container gets from now on.
    pub fn set_env(&mut self, env: Vec<(String, String)>) {
        self.host.env = env;
    }

    /// Nothing of any container is left on the host.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// The container's id: a small number that stays the same across revisions for the
    /// life of the process (console tokens and timer deadlines carry it).
    fn id(&mut self, name: &str) -> usize {
        match self.names.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                self.names.push(name.to_string());
                self.names.len() - 1
            }
        }
    }

    pub fn name(&self, id: usize) -> Option<&str> {
        self.names.get(id).map(String::as_str)
    }

    /// Carry out one engine action.
    pub fn execute(
        &mut self,
        action: Action,
        run: &Running,
        registry: &Registry,
        now: Instant,
        fx: &mut Effects,
    ) {
        match action {
            Action::Log { level, line } => log::log!(level, "{line}"),
            Action::Mount { container } => {
                let event = match run.state.containers.iter().find(|c| c.name == container) {
                    Some(c) => match from_revision::check_objects(&run.state, &self.host, c) {
                        Ok(()) => Event::Mounted { container },
                        Err(error) => Event::MountFailed { container, error },
                    },
                    None => Event::MountFailed {
                        error: "not in the revision".into(),
                        container,
                    },
                };
                fx.events.push(event);
            }
            Action::Spawn { container } => {
                // Where a respawn's time goes (README, benchmarks): the loop's wake-up to
                // here is reaping and the engine, the rest is `launch`.
                let begin = Instant::now();
                let result = self.spawn(&container, run, registry);
                log::debug!(
                    "{container}: spawn began {} µs after the wake-up, took {} µs",
                    begin.saturating_duration_since(now).as_micros(),
                    begin.elapsed().as_micros()
                );
                let event = match result {
                    Ok(pid) => Event::Spawned { container, pid },
                    Err(error) => {
                        log::error!("{container}: cannot start: {error}");
                        Event::SpawnFailed { container, error }
                    }
                };
                fx.events.push(event);
            }
            Action::Signal {
                container,
                pid,
                sig,
            } => self.signal(container, pid, sig, fx),
            Action::Unmount { container } => {
                let i = self.id(&container);
                self.stop_and_teardown(i, registry, now, fx);
            }
            Action::ArmTimer {
                container,
                kind,
                at,
            } => {
                let i = self.id(&container);
                let generation = self.bump(i, kind);
                fx.deadlines.push((
                    at,
                    ContainerDue::Timer {
                        container: i,
                        kind: kind.index(),
                        generation,
                    },
                ));
            }
            Action::CancelTimer { container, kind } => {
                let i = self.id(&container);
                self.bump(i, kind);
            }
            Action::RequestReboot { reason } => {
                log::error!("supervisor: reboot requested: {reason}");
                self.exit.get_or_insert(Exit::Reboot(reason));
            }
            Action::RequestRollback { reason } => {
                // Updates (and so rollbacks to a previous revision) are not run yet; a reboot
                // into the committed revision is the closest safe outcome.
                log::error!("supervisor: rollback requested, rebooting instead: {reason}");
                self.exit.get_or_insert(Exit::Reboot(reason));
            }
            // Read back through device-meta `pantavisor.status`; the engine logged the change.
            Action::RevisionStatus { .. } => {}
        }
    }

    fn bump(&mut self, i: usize, kind: TimerKind) -> u64 {
        if self.timer_generation.len() <= i {
            self.timer_generation.resize(i + 1, [0; 4]);
        }
        let g = &mut self.timer_generation[i][kind.index()];
        *g += 1;
        *g
    }

    fn spawn(&mut self, name: &str, run: &Running, registry: &Registry) -> Result<i32, String> {
        let i = self.id(name);
        let c = run
            .state
            .containers
            .iter()
            .find(|c| c.name == name)
            .ok_or("not in the revision")?;
        // A previous run of the container must be gone before its mounts are reused.
        if let Some(mut old) = self.live.remove(&i) {
            let _ = old.launched.kill_all();
            self.finish(i, &mut old, registry);
        }
        let spec = from_revision::launch_spec(&run.state, &run.rev, c, &self.host)?;
        let t = Instant::now();
        let launched =
            runtime::launch(&spec, runtime::capabilities()).map_err(|e| e.to_string())?;
        log::debug!("{name}: launch took {} µs", t.elapsed().as_micros());
        let mut launched = launched;
        if let Some(why) = &launched.fallback_reason {
            log::warn!("{name}: running as a plain process: {why}");
            // Its own log says so too, for whoever reads only that.
            let line = format!("tern: not isolated, running as a plain process: {why}\n");
            if let Err(e) = launched.log.append(line.as_bytes()) {
                log::warn!("{name}: console log: {e}");
            }
        }
        log::info!(
            "{name}: init pid {} ({} mode), console {}",
            launched.pid,
            launched.mode.as_str(),
            launched.log.path().display()
        );
        let pid = launched.pid.as_raw();
        let fd = launched.console.as_raw_fd();
        let console_open = registry
            .register(
                &mut SourceFd(&fd),
                Token(CONSOLE_BASE + i),
                Interest::READABLE,
            )
            .map_err(|e| log::warn!("{name}: console not watched: {e}"))
            .is_ok();
        self.live.insert(
            i,
            Live {
                launched,
                console_open,
                stopping: false,
                teardown_tries: 0,
            },
        );
        Ok(pid)
    }

    /// Send `sig`; with a SIGTERM, tell the engine how the init takes it (read first: one
    /// that dies of it may be gone by the time we look).
    fn signal(&mut self, name: String, pid: i32, sig: Sig, fx: &mut Effects) {
        let i = self.id(&name);
        let Some(live) = self.live.get(&i) else {
            return;
        };
        let l = &live.launched;
        if sig == Sig::Term {
            match runtime::sig_state(nix::unistd::Pid::from_raw(pid)) {
                Ok(Some(state)) => fx.events.push(Event::TermState {
                    container: name.clone(),
                    pid,
                    state,
                }),
                Ok(None) => log::debug!("{name}: no signal masks for pid {pid}; grace as set"),
                Err(e) => log::debug!("{name}: {e}; grace as set"),
            }
        }
        let result = match sig {
            Sig::Kill => l.kill_all(),
            Sig::Term if l.mode == Mode::Process => runtime::signal_group(l.pid, Signal::SIGTERM),
            Sig::Term => runtime::signal(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM),
        };
        if let Err(e) = result {
            log::warn!("{name}: {sig:?} to {pid}: {e}");
        }
    }

    /// Kill what is left of container `i` and tear it down once empty.
    fn stop_and_teardown(&mut self, i: usize, registry: &Registry, now: Instant, fx: &mut Effects) {
        let Some(live) = self.live.get_mut(&i) else {
            return;
        };
        live.stopping = true;
        let _ = live.launched.kill_all();
        self.try_teardown(i, registry, now, fx);
    }

    /// Tear down container `i` if it is empty (or has been given long enough), else retry soon.
    pub fn try_teardown(&mut self, i: usize, registry: &Registry, now: Instant, fx: &mut Effects) {
        let Some(live) = self.live.get_mut(&i) else {
            return;
        };
        if !live.stopping {
            return;
        }
        let empty = live.launched.is_empty().unwrap_or(true);
        if !empty && live.teardown_tries < TEARDOWN_TRIES {
            live.teardown_tries += 1;
            let _ = live.launched.kill_all();
            fx.deadlines.push((
                now + TEARDOWN_RETRY,
                ContainerDue::Teardown { container: i },
            ));
            return;
        }
        if let Some(mut live) = self.live.remove(&i) {
            self.finish(i, &mut live, registry);
        }
    }

    /// Last console bytes, then unmount and remove everything of the container.
    fn finish(&mut self, i: usize, live: &mut Live, registry: &Registry) {
        let t = Instant::now();
        if live.console_open {
            let _ = live.launched.log.pump(&live.launched.console);
            let fd = live.launched.console.as_raw_fd();
            let _ = registry.deregister(&mut SourceFd(&fd));
            live.console_open = false;
        }
        if let Err(e) = runtime::teardown(&mut live.launched.plan) {
            log::warn!("container {i}: teardown incomplete: {e}");
        }
        log::debug!("container {i}: torn down in {} µs", t.elapsed().as_micros());
    }

    /// The console of container `i` is readable: log what it holds, within a budget.
    pub fn pump(&mut self, i: usize, registry: &Registry, now: Instant, fx: &mut Effects) {
        let Some(live) = self.live.get_mut(&i) else {
            return;
        };
        if !live.console_open {
            return;
        }
        for _ in 0..PUMP_ROUNDS {
            match live.launched.log.pump(&live.launched.console) {
                Ok(Pump::Open { bytes: 0 }) => return,
                Ok(Pump::Open { .. }) => continue,
                Ok(Pump::Eof { .. }) | Err(_) => {
                    let fd = live.launched.console.as_raw_fd();
                    let _ = registry.deregister(&mut SourceFd(&fd));
                    live.console_open = false;
                    return;
                }
            }
        }
        // Edge-triggered: no new readiness comes for bytes already there, so come back.
        fx.deadlines
            .push((now, ContainerDue::Pump { container: i }));
    }

    /// How container `name` runs, while it does.
    pub fn mode_of(&self, name: &str) -> Option<Mode> {
        let i = self.names.iter().position(|n| n == name)?;
        self.live.get(&i).map(|l| l.launched.mode)
    }

    /// Whether a timer deadline is still the current one of its kind.
    pub fn timer_is_current(&self, i: usize, kind: usize, generation: u64) -> bool {
        self.timer_generation
            .get(i)
            .and_then(|g| g.get(kind))
            .is_some_and(|g| *g == generation)
    }

    /// Kill every container now and tear down what is empty (shutdown, reboot).
    pub fn kill_all(&mut self, registry: &Registry, now: Instant, fx: &mut Effects) {
        let ids: Vec<usize> = self.live.keys().copied().collect();
        for i in ids {
            self.stop_and_teardown(i, registry, now, fx);
        }
    }

    /// A reaped child, as the engine wants to hear it; `None` when it was no init.
    pub fn exited(status: WaitStatus) -> Option<(i32, ExitStatus)> {
        match status {
            WaitStatus::Exited(pid, code) => Some((pid.as_raw(), ExitStatus::Code(code))),
            WaitStatus::Signaled(pid, sig, _) => {
                Some((pid.as_raw(), ExitStatus::Signaled(sig as i32)))
            }
            _ => None,
        }
    }

    /// Containers whose teardown waits for their processes to go.
    pub fn stopping(&self) -> Vec<usize> {
        self.live
            .iter()
            .filter(|(_, l)| l.stopping)
            .map(|(i, _)| *i)
            .collect()
    }
}
