//! The daemon's own life: signals (SIGCHLD reaping, SIGTERM/SIGINT, SIGHUP reload) and the
//! two halves of a shutdown.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

use super::containers::Effects;
use super::{Containers, Due, Exit, Reactor, gate, timeouts_from};
use crate::config::Config;
use crate::engine::{Event, ExitStatus};

impl Reactor {
    /// Stop taking requests and stop every container, with the engine's grace.
    pub(super) fn begin_shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        self.proxies.close_all(self.poll.registry());
        if let Some(mut l) = self.v1.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        let actions = self.api.daemons.stop_all();
        self.daemon_actions(actions, now);
        let _ = self.poll.registry().deregister(&mut self.listener);
        self.feed(Event::StopAll, now);
        let grace = Duration::from_secs(self.api.device.config.get_u64("TERN_STOP_GRACE"));
        self.deadlines
            .push(now + grace + Duration::from_secs(1), Due::ShutdownGrace);
        if matches!(self.containers.exit, Some(Exit::Reboot(_))) {
            // A reboot does not wait for graceful stops.
            let mut fx = Effects::default();
            self.containers.kill_all(self.poll.registry(), now, &mut fx);
            self.push_effects(fx, now);
        }
    }

    pub(super) fn handle_signals(&mut self, now: Instant) {
        for sig in self.signals.drain() {
            match sig {
                Signal::SIGCHLD => self.reap_children(now),
                Signal::SIGTERM | Signal::SIGINT => {
                    log::info!("daemon: {sig} received, shutting down");
                    self.containers.exit.get_or_insert(Exit::Signal);
                }
                Signal::SIGHUP => self.reload_config(),
                _ => {}
            }
        }
    }

    /// Collect every exited child so none stays a zombie (one SIGCHLD may stand for many,
    /// and as PID 1 the orphans of every container land here too); tell the engine about its
    /// inits and retry teardowns that waited for processes to go.
    pub(super) fn reap_children(&mut self, now: Instant) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) => {
                    log::debug!("daemon: reaped {status:?}");
                    if let Some((pid, status)) = Containers::exited(status)
                        && !self.driver_exited(pid, status == ExitStatus::Code(0), now)
                        && !self.daemon_exited(pid, now)
                    {
                        self.feed(Event::ChildExited { pid, status }, now);
                    }
                }
            }
        }
        let mut fx = Effects::default();
        for i in self.containers.stopping() {
            self.containers
                .try_teardown(i, self.poll.registry(), now, &mut fx);
        }
        self.push_effects(fx, now);
    }

    pub(super) fn reload_config(&mut self) {
        match (self.reload)() {
            Ok(new) => {
                if new.storage_dir() != self.api.device.config.storage_dir()
                    || new.rundir() != self.api.device.config.rundir()
                {
                    log::warn!("config: storage and run dir changes take effect at the next start");
                }
                // As at start: warnings and info always reach the log.
                crate::logger::set_level(new.log_level().max(3));
                self.timeouts = timeouts_from(&new);
                self.pools = gate::pools_from(&new);
                self.api.device.config = new;
                let config = &self.api.device.config;
                self.api.device.secureboot.reload(config);
                self.api.apply_meta_overrides();
                self.api.forced_unhealthy = self
                    .api
                    .device
                    .config
                    .get("TERN_TEST_UNHEALTHY")
                    .map(str::to_string);
                log::info!("config: reloaded on SIGHUP");
            }
            Err(e) => log::error!("config: reload failed, keeping the running config: {e}"),
        }
    }

    pub fn config(&self) -> &Config {
        &self.api.device.config
    }

    pub(super) fn finish_shutdown(&mut self) {
        // Daemons had their SIGTERM when the shutdown began; none outlives Tern.
        for pid in self.api.daemons.pids() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for slot in 0..self.slots.len() {
            self.close(slot);
        }
        if let Err(e) = std::fs::remove_file(&self.socket_path) {
            log::warn!("ctrl: cannot remove {}: {e}", self.socket_path.display());
        }
    }
}
