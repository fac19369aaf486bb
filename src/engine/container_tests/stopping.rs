//! RECOVERING, STOPPING and STOPPED.

use super::*;

// ---- RECOVERING ----

#[test]
fn early_retry_timer_is_ignored() {
    let mut fx = Fx::with(|c| c.recovery = on_failure()).recovering();
    assert!(
        fx.feed(
            Input::Timer {
                kind: TimerKind::Retry
            },
            3
        )
        .is_empty()
    );
    assert_eq!(fx.c.status, Status::Recovering);
}

#[test]
fn api_stop_while_recovering_stays_stopped() {
    let mut fx = Fx::with(|c| c.recovery = on_failure()).recovering();
    let out = fx.feed(Input::ApiStop, 2);
    assert_eq!((fx.c.status, fx.c.user_stopped), (Status::Stopped, true));
    assert_eq!(acts(&out), [cancel(TimerKind::Retry)]);
    // The cancelled retry firing later changes nothing.
    assert!(
        fx.feed(
            Input::Timer {
                kind: TimerKind::Retry
            },
            6
        )
        .is_empty()
    );
    assert_eq!(fx.c.status, Status::Stopped);
}

#[test]
fn api_start_while_recovering_starts_now_and_resets_retries() {
    let mut fx = Fx::with(|c| c.recovery = on_failure()).recovering();
    let out = fx.feed(Input::ApiStart, 2);
    assert_eq!(fx.c.status, Status::Installed);
    assert_eq!(fx.c.tracker.current_retries, 0);
    assert_eq!(acts(&out), [cancel(TimerKind::Retry)]);
}

#[test]
fn api_restart_while_recovering_starts_now() {
    let mut fx = Fx::with(|c| c.recovery = on_failure()).recovering();
    fx.feed(Input::ApiRestart, 2);
    assert_eq!(fx.c.status, Status::Installed);
}

#[test]
fn revision_stop_while_recovering_stops() {
    let mut fx = Fx::with(|c| c.recovery = on_failure()).recovering();
    let out = fx.feed(Input::Stop, 2);
    assert_eq!((fx.c.status, fx.c.user_stopped), (Status::Stopped, false));
    assert_eq!(acts(&out), [cancel(TimerKind::Retry)]);
}

#[test]
fn stray_spawn_while_recovering_is_killed() {
    let mut fx = Fx::with(|c| c.recovery = on_failure()).recovering();
    assert_eq!(
        acts(&fx.feed(Input::Spawned { pid: 9 }, 2)),
        [signal(9, Sig::Kill)]
    );
}

// ---- STOPPING ----

#[test]
fn api_start_while_stopping_starts_again_after_the_exit() {
    let mut fx = Fx::new(cfg()).stopping();
    assert!(fx.feed(Input::ApiStart, 2).is_empty());
    fx.feed(
        Input::Exited {
            status: ExitStatus::Signaled(15),
        },
        3,
    );
    assert_eq!(fx.c.status, Status::Installed);
    assert!(!fx.c.user_stopped);
}

#[test]
fn api_stop_while_stopping_for_a_restart_ends_stopped_by_the_user() {
    let mut fx = Fx::new(cfg()).started();
    fx.feed(Input::ApiRestart, 1);
    fx.feed(Input::ApiStop, 2);
    fx.feed(
        Input::Exited {
            status: ExitStatus::Signaled(15),
        },
        3,
    );
    assert_eq!((fx.c.status, fx.c.user_stopped), (Status::Stopped, true));
}

#[test]
fn revision_stop_overrides_a_pending_restart() {
    let mut fx = Fx::new(cfg()).started();
    fx.feed(Input::ApiRestart, 1);
    fx.feed(Input::Stop, 2);
    fx.feed(
        Input::Exited {
            status: ExitStatus::Signaled(15),
        },
        3,
    );
    assert_eq!((fx.c.status, fx.c.user_stopped), (Status::Stopped, false));
}

#[test]
fn ready_and_stale_answers_while_stopping_change_nothing() {
    let mut fx = Fx::new(cfg()).stopping();
    for input in [
        Input::ReadySignal,
        Input::Mounted,
        Input::GroupsBefore { achieved: true },
    ] {
        assert!(fx.feed(input, 2).is_empty());
    }
    assert_eq!(fx.c.status, Status::Stopping);
}

// ---- STOPPED ----

#[test]
fn api_start_of_a_stopped_container_installs_it_and_clears_flags() {
    let mut fx = Fx::new(cfg()).stopping();
    fx.feed(
        Input::Exited {
            status: ExitStatus::Signaled(15),
        },
        2,
    );
    assert!(fx.c.user_stopped);
    let out = fx.feed(Input::ApiStart, 3);
    assert_eq!(fx.c.status, Status::Installed);
    assert!(!fx.c.user_stopped);
    assert_eq!(
        lines(&out),
        ["c: STOPPED -> INSTALLED (started through the API)"]
    );
}

#[test]
fn api_restart_of_a_stopped_container_installs_it() {
    let mut fx = Fx::new(cfg());
    fx.feed(Input::ApiStop, 0);
    fx.feed(Input::ApiRestart, 1);
    assert_eq!((fx.c.status, fx.c.user_stopped), (Status::Installed, false));
}

#[test]
fn api_stop_of_a_crashed_container_marks_it_stopped_by_the_user() {
    let mut fx = Fx::with(|c| c.recovery = on_failure()).started();
    fx.feed(
        Input::Exited {
            status: ExitStatus::Code(0),
        },
        1,
    );
    assert!(!fx.c.user_stopped);
    assert!(fx.feed(Input::ApiStop, 2).is_empty());
    assert!(fx.c.user_stopped);
    assert!(
        fx.feed(Input::ApiStop, 3).is_empty(),
        "repeating it is a no-op"
    );
}

#[test]
fn stopped_container_ignores_gates_timers_exits_and_stops() {
    let mut fx = Fx::new(cfg());
    fx.feed(Input::ApiStop, 0);
    for input in [
        Input::GroupsBefore { achieved: true },
        Input::Stop,
        Input::Exited {
            status: ExitStatus::Code(1),
        },
        Input::ReadySignal,
        Input::SpawnFailed { error: "x".into() },
        Input::Timer {
            kind: TimerKind::Goal,
        },
    ] {
        assert!(fx.feed(input.clone(), 1).is_empty(), "{input:?}");
        assert_eq!(fx.c.status, Status::Stopped);
    }
}
