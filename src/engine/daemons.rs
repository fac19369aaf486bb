//! Internal daemons: helper processes of the board (an ssh server, …) that Tern keeps running,
//! with `GET /daemons` and `PUT /daemons/{name}` (research §1.3). One small table per daemon:
//! stopped or running, respawning after an unexpected exit (after [`RESPAWN_DELAY`], so a
//! daemon that cannot start does not spin), and stopped for good through the API.
//!
//! Pure like the other machines: spawns, signals and timers go out as [`DaemonAction`]s.

use std::time::{Duration, Instant};

use super::deadline;

/// Wait before starting a daemon again after it exited on its own.
pub const RESPAWN_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Daemon {
    pub name: String,
    /// `/bin/sh -c` command line.
    pub command: String,
    /// Running: its pid.
    pub pid: Option<i32>,
    /// Started again when it exits; false once stopped through the API.
    pub respawn: bool,
    /// Pantavisor shows -1 for a daemon stopped through the API, 0 for one never started.
    pub stopped_by_api: bool,
    /// A respawn is scheduled.
    pub waiting: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonAction {
    Spawn { name: String },
    Terminate { pid: i32 },
    ArmRespawn { name: String, at: Instant },
    Log { line: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Daemons {
    list: Vec<Daemon>,
}

/// What `PUT /daemons/{name}` may answer besides 200.
pub const NOT_FOUND: (u16, &str) = (404, "Daemon not found");

impl Daemons {
    /// The daemons of the board: `(name, command, start at boot)`.
    pub fn new(defs: &[(String, String, bool)]) -> Daemons {
        Daemons {
            list: defs
                .iter()
                .map(|(name, command, on)| Daemon {
                    name: name.clone(),
                    command: command.clone(),
                    pid: None,
                    respawn: *on,
                    stopped_by_api: false,
                    waiting: false,
                })
                .collect(),
        }
    }

    /// Position in board order (stable: the list never changes after boot).
    pub fn index(&self, name: &str) -> Option<usize> {
        self.list.iter().position(|d| d.name == name)
    }

    pub fn name(&self, index: usize) -> Option<&str> {
        self.list.get(index).map(|d| d.name.as_str())
    }

    pub fn list(&self) -> &[Daemon] {
        &self.list
    }

    pub fn get(&self, name: &str) -> Option<&Daemon> {
        self.list.iter().find(|d| d.name == name)
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut Daemon> {
        self.list.iter_mut().find(|d| d.name == name)
    }

    /// At boot: start every daemon that should run.
    pub fn boot(&mut self) -> Vec<DaemonAction> {
        self.list
            .iter()
            .filter(|d| d.respawn)
            .map(|d| DaemonAction::Spawn {
                name: d.name.clone(),
            })
            .collect()
    }

    /// The spawn of `name` succeeded (`Some(pid)`) or failed.
    pub fn spawned(&mut self, name: &str, pid: Option<i32>, now: Instant) -> Vec<DaemonAction> {
        let Some(d) = self.get_mut(name) else {
            return Vec::new();
        };
        d.waiting = false;
        match pid {
            Some(pid) => {
                d.pid = Some(pid);
                vec![DaemonAction::Log {
                    line: format!("daemon {name}: running as pid {pid}"),
                }]
            }
            None if d.respawn => {
                d.waiting = true;
                vec![DaemonAction::ArmRespawn {
                    name: name.to_string(),
                    at: deadline(now, RESPAWN_DELAY),
                }]
            }
            None => Vec::new(),
        }
    }

    /// A reaped pid; `None` when it is no daemon's (the caller offers it elsewhere).
    pub fn exited(&mut self, pid: i32, now: Instant) -> Option<Vec<DaemonAction>> {
        let d = self.list.iter_mut().find(|d| d.pid == Some(pid))?;
        d.pid = None;
        let mut out = vec![DaemonAction::Log {
            line: format!("daemon {}: pid {pid} exited", d.name),
        }];
        if d.respawn {
            d.waiting = true;
            out.push(DaemonAction::ArmRespawn {
                name: d.name.clone(),
                at: deadline(now, RESPAWN_DELAY),
            });
        }
        Some(out)
    }

    /// The respawn delay of `name` is over.
    pub fn respawn_due(&mut self, name: &str) -> Vec<DaemonAction> {
        match self.get_mut(name) {
            Some(d) if d.waiting && d.respawn && d.pid.is_none() => {
                d.waiting = false;
                vec![DaemonAction::Spawn {
                    name: name.to_string(),
                }]
            }
            _ => Vec::new(),
        }
    }

    /// `{"action":"start"}`: run it (again) and keep it running.
    pub fn start(&mut self, name: &str) -> Result<Vec<DaemonAction>, (u16, &'static str)> {
        let d = self.get_mut(name).ok_or(NOT_FOUND)?;
        d.respawn = true;
        d.stopped_by_api = false;
        if d.pid.is_some() || d.waiting {
            return Ok(Vec::new());
        }
        Ok(vec![DaemonAction::Spawn {
            name: name.to_string(),
        }])
    }

    /// `{"action":"stop"}`: stop it and do not restart it.
    pub fn stop(&mut self, name: &str) -> Result<Vec<DaemonAction>, (u16, &'static str)> {
        let d = self.get_mut(name).ok_or(NOT_FOUND)?;
        d.respawn = false;
        d.stopped_by_api = true;
        d.waiting = false;
        Ok(d.pid
            .map(|pid| DaemonAction::Terminate { pid })
            .into_iter()
            .collect())
    }

    /// Every running daemon's pid (for shutdown).
    pub fn pids(&self) -> Vec<i32> {
        self.list.iter().filter_map(|d| d.pid).collect()
    }

    /// Stop respawning everything (shutdown, reboot).
    pub fn stop_all(&mut self) -> Vec<DaemonAction> {
        let names: Vec<String> = self.list.iter().map(|d| d.name.clone()).collect();
        names
            .iter()
            .flat_map(|n| self.stop(n).unwrap_or_default())
            .collect()
    }

    /// The `GET /daemons` body: `[{"name","pid","respawn"}]` in board order.
    pub fn json(&self) -> String {
        let items: Vec<serde_json::Value> = self
            .list
            .iter()
            .map(|d| {
                let pid = match (d.pid, d.stopped_by_api) {
                    (Some(pid), _) => pid,
                    (None, true) => -1,
                    (None, false) => 0,
                };
                serde_json::json!({"name": d.name, "pid": pid, "respawn": d.respawn})
            })
            .collect();
        serde_json::Value::Array(items).to_string()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn two() -> Daemons {
        Daemons::new(&[
            ("sshd".into(), "dropbear -F".into(), false),
            ("hwrngd".into(), "rngd -f".into(), true),
        ])
    }

    #[test]
    fn boot_starts_only_daemons_marked_on() {
        let mut d = two();
        assert_eq!(
            d.boot(),
            [DaemonAction::Spawn {
                name: "hwrngd".into()
            }]
        );
        assert_eq!(
            d.json(),
            r#"[{"name":"sshd","pid":0,"respawn":false},{"name":"hwrngd","pid":0,"respawn":true}]"#
        );
    }

    #[test]
    fn an_exit_respawns_after_the_delay_unless_stopped() {
        let t0 = Instant::now();
        let mut d = two();
        d.spawned("hwrngd", Some(40), t0);
        assert_eq!(d.get("hwrngd").unwrap().pid, Some(40));
        let a = d.exited(40, t0).unwrap();
        assert!(a.contains(&DaemonAction::ArmRespawn {
            name: "hwrngd".into(),
            at: t0 + RESPAWN_DELAY
        }));
        assert_eq!(
            d.respawn_due("hwrngd"),
            [DaemonAction::Spawn {
                name: "hwrngd".into()
            }]
        );
        assert!(d.respawn_due("hwrngd").is_empty(), "only once");
        d.spawned("hwrngd", Some(41), t0);
        assert_eq!(
            d.stop("hwrngd").unwrap(),
            [DaemonAction::Terminate { pid: 41 }]
        );
        let a = d.exited(41, t0).unwrap();
        assert_eq!(a.len(), 1, "no respawn after a stop: {a:?}");
        assert!(
            d.json()
                .contains(r#"{"name":"hwrngd","pid":-1,"respawn":false}"#)
        );
        assert!(d.exited(99, t0).is_none());
    }

    #[test]
    fn start_and_stop_through_the_api() {
        let t0 = Instant::now();
        let mut d = two();
        assert_eq!(d.start("nope"), Err(NOT_FOUND));
        assert_eq!(d.stop("nope"), Err(NOT_FOUND));
        assert_eq!(
            d.start("sshd").unwrap(),
            [DaemonAction::Spawn {
                name: "sshd".into()
            }]
        );
        d.spawned("sshd", Some(7), t0);
        assert!(d.start("sshd").unwrap().is_empty(), "already running");
        // A spawn that fails is retried while the daemon should run.
        let mut d = two();
        d.start("sshd").unwrap();
        assert!(matches!(
            d.spawned("sshd", None, t0)[..],
            [DaemonAction::ArmRespawn { .. }]
        ));
        d.stop("sshd").unwrap();
        assert!(d.respawn_due("sshd").is_empty());
    }
}
