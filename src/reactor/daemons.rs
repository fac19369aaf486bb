//! The reactor's side of the board's helper daemons: spawning them, stopping them, respawn
//! timers, and recognising their pids among the reaped children.

use std::time::Instant;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::{Due, Reactor};
use crate::config::Config;
use crate::engine::daemons::{DaemonAction, Daemons};

/// The board's daemons from the configuration: `sshd` from `TERN_SSHD_CMD` (running at boot
/// when `PV_DEBUG_SSH` is on; ENABLE_SSH and DISABLE_SSH start and stop it), and every
/// `name:command` of `TERN_DAEMONS` (`;`-separated, running at boot).
pub fn from_config(config: &Config) -> Daemons {
    let mut defs = Vec::new();
    if let Some(cmd) = config.get("TERN_SSHD_CMD").filter(|c| !c.trim().is_empty()) {
        defs.push((
            "sshd".to_string(),
            cmd.to_string(),
            config.get_bool("PV_DEBUG_SSH"),
        ));
    }
    for entry in config.get("TERN_DAEMONS").unwrap_or_default().split(';') {
        let Some((name, cmd)) = entry.split_once(':') else {
            if !entry.trim().is_empty() {
                log::warn!("daemons: TERN_DAEMONS entry {entry:?} is not name:command");
            }
            continue;
        };
        let name = name.trim();
        if name.is_empty() || cmd.trim().is_empty() || defs.iter().any(|(n, _, _)| n == name) {
            log::warn!("daemons: TERN_DAEMONS entry {entry:?} ignored");
            continue;
        }
        defs.push((name.to_string(), cmd.trim().to_string(), true));
    }
    Daemons::new(&defs)
}

impl Reactor {
    pub(super) fn daemon_actions(&mut self, actions: Vec<DaemonAction>, now: Instant) {
        for a in actions {
            match a {
                DaemonAction::Spawn { name } => {
                    let Some(d) = self.api.daemons.get(&name) else {
                        continue;
                    };
                    let log = self
                        .api
                        .device
                        .storage
                        .root()
                        .join("logs/daemons")
                        .join(format!("{name}.log"));
                    let pid = match crate::runtime::spawn_daemon(&d.command, &log) {
                        Ok(pid) => Some(pid.as_raw()),
                        Err(e) => {
                            log::error!("daemon {name}: cannot start: {e}");
                            None
                        }
                    };
                    let more = self.api.daemons.spawned(&name, pid, now);
                    self.daemon_actions(more, now);
                }
                DaemonAction::Terminate { pid } => {
                    if let Err(e) = killpg(Pid::from_raw(pid), Signal::SIGTERM) {
                        log::warn!("daemons: SIGTERM to group {pid}: {e}");
                    }
                }
                DaemonAction::ArmRespawn { name, at } => {
                    if let Some(index) = self.api.daemons.index(&name) {
                        self.deadlines.push(at, Due::Daemon { index });
                    }
                }
                DaemonAction::Log { line } => log::info!("{line}"),
            }
        }
    }

    pub(super) fn daemon_due(&mut self, index: usize, now: Instant) {
        let Some(name) = self.api.daemons.name(index).map(str::to_string) else {
            return;
        };
        let actions = self.api.daemons.respawn_due(&name);
        self.daemon_actions(actions, now);
    }

    /// A reaped pid that was a daemon's; false when it was not.
    pub(super) fn daemon_exited(&mut self, pid: i32, now: Instant) -> bool {
        match self.api.daemons.exited(pid, now) {
            Some(actions) => {
                self.daemon_actions(actions, now);
                true
            }
            None => false,
        }
    }
}
