//! STOPPING after the SIGTERM: what the kernel says of the init's SIGTERM handling decides
//! whether the grace is waited out or SIGKILL goes at once.

use super::*;
use crate::engine::sigterm::SigState;

const TERM: u64 = 1 << 14;

fn state(caught: u64, ignored: u64, ns_init: bool) -> Input {
    Input::TermState {
        pid: PID,
        state: SigState {
            caught,
            ignored,
            ns_init,
        },
    }
}

#[test]
fn namespace_init_without_handler_is_killed_at_once() {
    let mut fx = Fx::new(cfg()).stopping();
    let out = fx.feed(state(0, 0, true), 1);
    assert_eq!(acts(&out), [signal(PID, Sig::Kill)]);
    assert!(lines(&out)[0].contains("SIGTERM cannot end pid 100"));
    assert!(lines(&out)[0].contains("kernel drops the signal"));
    // The exit of the SIGKILL completes the stop; the grace timer is cancelled with it.
    let out = fx.feed(
        Input::Exited {
            status: ExitStatus::Signaled(9),
        },
        1,
    );
    assert_eq!(fx.c.status, Status::Stopped);
    assert!(acts(&out).contains(&cancel(TimerKind::StopGrace)));
}

#[test]
fn init_that_ignores_sigterm_is_killed_at_once() {
    let mut fx = Fx::new(cfg()).stopping();
    let out = fx.feed(state(0, TERM, false), 1);
    assert_eq!(acts(&out), [signal(PID, Sig::Kill)]);
    assert!(lines(&out)[0].contains("ignores SIGTERM"));
    assert_eq!(fx.c.status, Status::Stopping);
}

#[test]
fn init_with_a_handler_keeps_the_whole_grace() {
    let mut fx = Fx::new(cfg()).stopping();
    let out = fx.feed(state(TERM, 0, true), 1);
    assert!(acts(&out).is_empty());
    assert_eq!(
        fx.c.timer(TimerKind::StopGrace),
        Some(fx.at(1) + DEFAULT_STOP_GRACE)
    );
    // Still there at the end of the grace: SIGKILL then.
    let out = fx.feed(
        Input::Timer {
            kind: TimerKind::StopGrace,
        },
        6,
    );
    assert_eq!(acts(&out), [signal(PID, Sig::Kill)]);
}

#[test]
fn plain_process_with_default_disposition_is_left_to_die() {
    let mut fx = Fx::new(cfg()).stopping();
    let out = fx.feed(state(0, 0, false), 1);
    assert!(acts(&out).is_empty());
    assert_eq!(fx.c.status, Status::Stopping);
}

#[test]
fn answer_about_another_pid_is_ignored() {
    let mut fx = Fx::new(cfg()).stopping();
    let out = fx.feed(
        Input::TermState {
            pid: PID + 1,
            state: SigState::default(),
        },
        1,
    );
    assert!(out.is_empty());
}

#[test]
fn answer_outside_a_stop_changes_nothing() {
    let mut fx = Fx::new(cfg()).started();
    assert!(fx.feed(state(0, 0, true), 1).is_empty());
    assert_eq!(fx.c.status, Status::Started);
    let mut fx = Fx::new(cfg());
    assert!(fx.feed(state(0, 0, true), 1).is_empty());
    assert_eq!(fx.c.status, Status::Installed);
}

#[test]
fn restart_of_a_shielded_init_starts_again_without_the_grace() {
    let mut fx = Fx::new(cfg()).started();
    fx.feed(Input::ApiRestart, 1);
    fx.feed(state(0, 0, true), 1);
    fx.feed(
        Input::Exited {
            status: ExitStatus::Signaled(9),
        },
        1,
    );
    assert_eq!(fx.c.status, Status::Installed);
}
