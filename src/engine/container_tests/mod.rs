//! Table tests of the container machine: every transition, with fake time (seconds after a
//! fixed origin), no processes and no sockets. Shared fixtures here; one file per group of
//! statuses.

mod running;
mod starting;
mod stopping;
mod table;
mod term_reach;

use super::*;
use crate::spec::{BackoffPolicy, RecoveryPolicy};

const PID: i32 = 100;

fn cfg() -> Config {
    Config {
        name: "c".into(),
        group: "app".into(),
        goal: StatusGoal::Started,
        restart_policy: RestartPolicy::Container,
        mgmt: true,
        recovery: AutoRecovery::NONE,
        goal_timeout: Duration::from_secs(30),
        stop_grace: DEFAULT_STOP_GRACE,
    }
}

fn on_failure() -> AutoRecovery {
    AutoRecovery {
        policy: RecoveryPolicy::OnFailure,
        max_retries: 5,
        retry_delay: 5,
        backoff_factor: 2.0,
        reset_window: 0,
        stable_timeout: 30,
        backoff_policy: BackoffPolicy::Reboot,
    }
}

struct Fx {
    c: Container,
    t0: Instant,
    ctx: Ctx,
}

impl Fx {
    fn new(cfg: Config) -> Fx {
        Fx {
            c: Container::new(cfg),
            t0: Instant::now(),
            ctx: Ctx::default(),
        }
    }
    fn with(f: impl FnOnce(&mut Config)) -> Fx {
        let mut c = cfg();
        f(&mut c);
        Fx::new(c)
    }
    fn at(&self, secs: u64) -> Instant {
        self.t0 + Duration::from_secs(secs)
    }
    fn feed(&mut self, input: Input, secs: u64) -> Vec<Action> {
        let now = self.at(secs);
        let (c, out) = step(self.c.clone(), input, self.ctx, now);
        self.c = c;
        out
    }
    fn started(mut self) -> Fx {
        self.feed(Input::GroupsBefore { achieved: true }, 0);
        self.feed(Input::Mounted, 0);
        self.feed(Input::Spawned { pid: PID }, 0);
        assert_eq!(self.c.status, Status::Started);
        self
    }
    fn starting(mut self) -> Fx {
        self.feed(Input::GroupsBefore { achieved: true }, 0);
        self.feed(Input::Mounted, 0);
        assert_eq!(self.c.status, Status::Starting);
        self
    }
    fn stopping(mut self) -> Fx {
        self = self.started();
        self.feed(Input::ApiStop, 1);
        assert_eq!(self.c.status, Status::Stopping);
        self
    }
    fn recovering(mut self) -> Fx {
        self = self.started();
        self.feed(
            Input::Exited {
                status: ExitStatus::Code(1),
            },
            1,
        );
        assert_eq!(self.c.status, Status::Recovering);
        self
    }
}

fn acts(out: &[Action]) -> Vec<Action> {
    out.iter()
        .filter(|a| !matches!(a, Action::Log { .. }))
        .cloned()
        .collect()
}

fn lines(out: &[Action]) -> Vec<String> {
    out.iter()
        .filter_map(|a| match a {
            Action::Log { line, .. } => Some(line.clone()),
            _ => None,
        })
        .collect()
}

fn arm(kind: TimerKind, at: Instant) -> Action {
    Action::ArmTimer {
        container: "c".into(),
        kind,
        at,
    }
}

fn cancel(kind: TimerKind) -> Action {
    Action::CancelTimer {
        container: "c".into(),
        kind,
    }
}

fn mount() -> Action {
    Action::Mount {
        container: "c".into(),
    }
}

fn unmount() -> Action {
    Action::Unmount {
        container: "c".into(),
    }
}

fn spawn() -> Action {
    Action::Spawn {
        container: "c".into(),
    }
}

fn signal(pid: i32, sig: Sig) -> Action {
    Action::Signal {
        container: "c".into(),
        pid,
        sig,
    }
}
