//! STARTED and READY: ready signals, crashes and recovery, stability, stops.

use super::*;

// ---- STARTED / READY ----

#[test]
fn ready_signal_with_a_ready_goal_makes_it_ready() {
    let mut fx = Fx::with(|c| c.goal = StatusGoal::Ready).started();
    let out = fx.feed(Input::ReadySignal, 3);
    assert_eq!(fx.c.status, Status::Ready);
    assert_eq!(acts(&out), [cancel(TimerKind::Goal)]);
    assert_eq!(lines(&out), ["c: STARTED -> READY (ready signal)"]);
}

#[test]
fn ready_signal_with_a_started_goal_is_ignored() {
    let mut fx = Fx::new(cfg()).started();
    assert!(fx.feed(Input::ReadySignal, 3).is_empty());
    assert_eq!(fx.c.status, Status::Started);
}

#[test]
fn second_ready_signal_is_ignored() {
    let mut fx = Fx::with(|c| c.goal = StatusGoal::Ready).started();
    fx.feed(Input::ReadySignal, 3);
    assert!(fx.feed(Input::ReadySignal, 4).is_empty());
}

#[test]
fn goal_timeout_short_of_ready_marks_the_goal_timed_out() {
    let mut fx = Fx::with(|c| c.goal = StatusGoal::Ready).started();
    fx.feed(
        Input::Timer {
            kind: TimerKind::Goal,
        },
        30,
    );
    assert!(fx.c.goal_timed_out);
    // A late ready signal still makes it READY.
    fx.feed(Input::ReadySignal, 40);
    assert_eq!(fx.c.status, Status::Ready);
}

#[test]
fn goal_timer_is_cancelled_once_ready() {
    let mut fx = Fx::with(|c| c.goal = StatusGoal::Ready).started();
    fx.feed(Input::ReadySignal, 3);
    assert!(
        fx.feed(
            Input::Timer {
                kind: TimerKind::Goal
            },
            30
        )
        .is_empty()
    );
    assert!(!fx.c.goal_timed_out);
}

#[test]
fn crash_without_recovery_in_steady_state_reboots() {
    let mut fx = Fx::new(cfg()).started();
    let out = fx.feed(
        Input::Exited {
            status: ExitStatus::Code(1),
        },
        10,
    );
    assert_eq!(fx.c.status, Status::Stopped);
    assert_eq!(
        acts(&out),
        [
            unmount(),
            Action::RequestReboot {
                reason: "container 'c' stopped and has no auto-recovery".into()
            }
        ]
    );
    assert_eq!(
        lines(&out),
        [
            "c: STARTED -> STOPPED (init exited with exit code 1)",
            "c: container 'c' stopped and has no auto-recovery"
        ]
    );
}

#[test]
fn clean_exit_without_recovery_reboots_too() {
    let mut fx = Fx::new(cfg()).started();
    let out = fx.feed(
        Input::Exited {
            status: ExitStatus::Code(0),
        },
        10,
    );
    assert!(
        acts(&out)
            .iter()
            .any(|a| matches!(a, Action::RequestReboot { .. }))
    );
}

#[test]
fn crash_without_recovery_during_an_update_rolls_back() {
    let mut fx = Fx::new(cfg()).started();
    fx.ctx.updating = true;
    let out = fx.feed(
        Input::Exited {
            status: ExitStatus::Signaled(11),
        },
        10,
    );
    assert_eq!(
        acts(&out),
        [
            unmount(),
            Action::RequestRollback {
                reason: "container 'c' stopped and has no auto-recovery".into()
            }
        ]
    );
}

#[test]
fn crash_cancels_the_goal_and_stable_timers() {
    let mut fx = Fx::with(|c| {
        c.goal = StatusGoal::Ready;
        c.recovery = on_failure();
    })
    .started();
    let out = fx.feed(
        Input::Exited {
            status: ExitStatus::Code(2),
        },
        1,
    );
    assert_eq!(acts(&out)[0], cancel(TimerKind::Goal));
    assert!(fx.c.timer(TimerKind::Goal).is_none());
    assert!(fx.c.pid.is_none());
}

#[test]
fn crash_with_on_failure_recovers_after_the_delay() {
    let mut fx = Fx::with(|c| c.recovery = on_failure()).started();
    let out = fx.feed(
        Input::Exited {
            status: ExitStatus::Code(1),
        },
        10,
    );
    assert_eq!(fx.c.status, Status::Recovering);
    assert_eq!(
        acts(&out),
        [
            cancel(TimerKind::Stable),
            unmount(),
            arm(TimerKind::Retry, fx.at(15))
        ]
    );
    assert_eq!(
        lines(&out),
        [
            "c: STARTED -> STOPPED (init exited with exit code 1)",
            "c: STOPPED -> RECOVERING (auto-recovery attempt 1/5 in 5s)"
        ]
    );
    let out = fx.feed(
        Input::Timer {
            kind: TimerKind::Retry,
        },
        15,
    );
    assert_eq!(fx.c.status, Status::Installed);
    assert_eq!(
        lines(&out),
        ["c: RECOVERING -> INSTALLED (recovery delay over)"]
    );
}

#[test]
fn clean_exit_with_on_failure_stays_stopped_without_reboot() {
    let mut fx = Fx::with(|c| c.recovery = on_failure()).started();
    let out = fx.feed(
        Input::Exited {
            status: ExitStatus::Code(0),
        },
        10,
    );
    assert_eq!(fx.c.status, Status::Stopped);
    assert!(fx.c.tracker.completed);
    assert_eq!(acts(&out), [cancel(TimerKind::Stable), unmount()]);
    assert!(lines(&out).contains(&"c: exited cleanly; on-failure leaves it stopped".to_string()));
}

#[test]
fn killed_by_a_signal_counts_as_a_failure_for_on_failure() {
    let mut fx = Fx::with(|c| c.recovery = on_failure()).started();
    fx.feed(
        Input::Exited {
            status: ExitStatus::Signaled(9),
        },
        10,
    );
    assert_eq!(fx.c.status, Status::Recovering);
}

#[test]
fn clean_exit_with_always_recovers() {
    let mut fx = Fx::with(|c| {
        c.recovery = AutoRecovery {
            policy: RecoveryPolicy::Always,
            ..on_failure()
        }
    })
    .started();
    fx.feed(
        Input::Exited {
            status: ExitStatus::Code(0),
        },
        10,
    );
    assert_eq!(fx.c.status, Status::Recovering);
}

#[test]
fn unless_stopped_recovers_instead_of_rebooting() {
    let mut fx = Fx::with(|c| {
        c.recovery = AutoRecovery {
            policy: RecoveryPolicy::UnlessStopped,
            ..on_failure()
        }
    })
    .started();
    let out = fx.feed(
        Input::Exited {
            status: ExitStatus::Code(1),
        },
        10,
    );
    assert_eq!(fx.c.status, Status::Recovering);
    assert!(
        !acts(&out)
            .iter()
            .any(|a| matches!(a, Action::RequestReboot { .. }))
    );
}

#[test]
fn unless_stopped_leaves_an_api_stopped_container_down() {
    let mut fx = Fx::with(|c| {
        c.recovery = AutoRecovery {
            policy: RecoveryPolicy::UnlessStopped,
            ..on_failure()
        }
    })
    .started();
    fx.feed(Input::ApiStop, 1);
    let out = fx.feed(
        Input::Exited {
            status: ExitStatus::Signaled(15),
        },
        2,
    );
    assert_eq!((fx.c.status, fx.c.user_stopped), (Status::Stopped, true));
    assert_eq!(fx.c.tracker.current_retries, 0, "an API stop uses no retry");
    assert!(!acts(&out).iter().any(|a| matches!(
        a,
        Action::ArmTimer {
            kind: TimerKind::Retry,
            ..
        }
    )));
}

#[test]
fn zero_retry_delay_goes_straight_to_installed() {
    let mut fx = Fx::with(|c| {
        c.recovery = AutoRecovery {
            retry_delay: 0,
            ..on_failure()
        }
    })
    .started();
    let out = fx.feed(
        Input::Exited {
            status: ExitStatus::Code(1),
        },
        10,
    );
    assert_eq!(fx.c.status, Status::Installed);
    assert!(
        lines(&out)
            .contains(&"c: STOPPED -> INSTALLED (auto-recovery attempt 1/5, at once)".to_string())
    );
}

#[test]
fn repeated_crashes_back_off_5_10_20_40_80_then_reboot() {
    let mut fx = Fx::with(|c| c.recovery = on_failure());
    let mut t = 0;
    let mut delays = Vec::new();
    for _ in 0..5 {
        fx.feed(Input::GroupsBefore { achieved: true }, t);
        fx.feed(Input::Mounted, t);
        fx.feed(Input::Spawned { pid: PID }, t);
        fx.feed(
            Input::Exited {
                status: ExitStatus::Code(1),
            },
            t + 1,
        );
        let at =
            fx.c.timer(TimerKind::Retry)
                .map(|at| at.duration_since(fx.at(t + 1)).as_secs());
        delays.push(at.unwrap_or(0));
        t += 1 + delays.last().copied().unwrap_or(0);
        fx.feed(
            Input::Timer {
                kind: TimerKind::Retry,
            },
            t,
        );
        assert_eq!(fx.c.status, Status::Installed);
    }
    assert_eq!(delays, [5, 10, 20, 40, 80]);
    fx.feed(Input::GroupsBefore { achieved: true }, t);
    fx.feed(Input::Mounted, t);
    fx.feed(Input::Spawned { pid: PID }, t);
    let out = fx.feed(
        Input::Exited {
            status: ExitStatus::Code(1),
        },
        t + 1,
    );
    assert!(acts(&out).contains(&Action::RequestReboot {
        reason: "container 'c' reached max retries (5), backoff_policy reboot".into()
    }));
}

#[test]
fn exhausted_retries_with_a_duration_backoff_wait_in_recovering() {
    let mut fx = Fx::with(|c| {
        c.recovery = AutoRecovery {
            max_retries: 1,
            backoff_policy: BackoffPolicy::Wait(600),
            ..on_failure()
        }
    })
    .started();
    fx.feed(
        Input::Exited {
            status: ExitStatus::Code(1),
        },
        1,
    );
    fx.feed(
        Input::Timer {
            kind: TimerKind::Retry,
        },
        6,
    );
    fx.feed(Input::GroupsBefore { achieved: true }, 6);
    fx.feed(Input::Mounted, 6);
    fx.feed(Input::Spawned { pid: PID }, 6);
    let out = fx.feed(
        Input::Exited {
            status: ExitStatus::Code(1),
        },
        7,
    );
    assert_eq!(fx.c.status, Status::Recovering);
    assert_eq!(fx.c.tracker.current_retries, 0);
    assert_eq!(fx.c.timer(TimerKind::Retry), Some(fx.at(607)));
    assert!(lines(&out).contains(
        &"c: STOPPED -> RECOVERING (max retries reached; new cycle in 600s)".to_string()
    ));
}

#[test]
fn exhausted_retries_with_never_leave_it_stopped() {
    let mut fx = Fx::with(|c| {
        c.recovery = AutoRecovery {
            max_retries: 1,
            backoff_policy: BackoffPolicy::Never,
            ..on_failure()
        }
    })
    .started();
    fx.feed(
        Input::Exited {
            status: ExitStatus::Code(1),
        },
        1,
    );
    fx.feed(
        Input::Timer {
            kind: TimerKind::Retry,
        },
        6,
    );
    fx.feed(Input::GroupsBefore { achieved: true }, 6);
    fx.feed(Input::Mounted, 6);
    fx.feed(Input::Spawned { pid: PID }, 6);
    let out = fx.feed(
        Input::Exited {
            status: ExitStatus::Code(1),
        },
        7,
    );
    assert_eq!(fx.c.status, Status::Stopped);
    assert!(fx.c.tracker.recovery_failed);
    assert!(
        !acts(&out)
            .iter()
            .any(|a| matches!(a, Action::RequestReboot { .. } | Action::ArmTimer { .. }))
    );
    // API start brings it back with a clean slate.
    fx.feed(Input::ApiStart, 8);
    assert_eq!(fx.c.status, Status::Installed);
    assert!(!fx.c.tracker.recovery_failed);
    assert_eq!(fx.c.tracker.current_retries, 0);
}

#[test]
fn exhausted_retries_during_an_update_roll_back() {
    let mut fx = Fx::with(|c| {
        c.recovery = AutoRecovery {
            max_retries: 1,
            backoff_policy: BackoffPolicy::Never,
            ..on_failure()
        }
    })
    .started();
    fx.ctx.updating = true;
    fx.feed(
        Input::Exited {
            status: ExitStatus::Code(1),
        },
        1,
    );
    fx.feed(
        Input::Timer {
            kind: TimerKind::Retry,
        },
        6,
    );
    fx.feed(Input::GroupsBefore { achieved: true }, 6);
    fx.feed(Input::Mounted, 6);
    fx.feed(Input::Spawned { pid: PID }, 6);
    let out = fx.feed(
        Input::Exited {
            status: ExitStatus::Code(1),
        },
        7,
    );
    assert!(acts(&out).contains(&Action::RequestRollback {
        reason: "container 'c' reached max retries (1) during an update".into()
    }));
}

#[test]
fn long_uptime_resets_the_retry_counter() {
    let mut fx = Fx::with(|c| {
        c.recovery = AutoRecovery {
            reset_window: 60,
            ..on_failure()
        }
    })
    .started();
    fx.feed(
        Input::Exited {
            status: ExitStatus::Code(1),
        },
        1,
    );
    fx.feed(
        Input::Timer {
            kind: TimerKind::Retry,
        },
        6,
    );
    fx.feed(Input::GroupsBefore { achieved: true }, 6);
    fx.feed(Input::Mounted, 6);
    fx.feed(Input::Spawned { pid: PID }, 6);
    // Up for 100 s (> 60): the count starts over, delay back to 5 s.
    fx.feed(
        Input::Exited {
            status: ExitStatus::Code(1),
        },
        106,
    );
    assert_eq!(fx.c.tracker.current_retries, 1);
    assert_eq!(fx.c.timer(TimerKind::Retry), Some(fx.at(111)));
}

#[test]
fn stable_timer_is_armed_at_the_goal_and_marks_it_stable() {
    let mut fx = Fx::with(|c| c.recovery = on_failure()).starting();
    let out = fx.feed(Input::Spawned { pid: PID }, 2);
    assert_eq!(
        acts(&out),
        [cancel(TimerKind::Goal), arm(TimerKind::Stable, fx.at(32))]
    );
    assert!(!fx.c.tracker.is_stable);
    let out = fx.feed(
        Input::Timer {
            kind: TimerKind::Stable,
        },
        32,
    );
    assert!(fx.c.tracker.is_stable);
    assert_eq!(lines(&out), ["c: stable"]);
}

#[test]
fn stable_timer_waits_for_ready_when_ready_is_the_goal() {
    let mut fx = Fx::with(|c| {
        c.goal = StatusGoal::Ready;
        c.recovery = on_failure();
    })
    .started();
    assert!(fx.c.timer(TimerKind::Stable).is_none());
    fx.feed(Input::ReadySignal, 5);
    assert_eq!(fx.c.timer(TimerKind::Stable), Some(fx.at(35)));
}

#[test]
fn crash_before_stable_restarts_the_stability_window() {
    let mut fx = Fx::with(|c| c.recovery = on_failure()).started();
    fx.feed(
        Input::Exited {
            status: ExitStatus::Code(1),
        },
        10,
    );
    assert!(fx.c.timer(TimerKind::Stable).is_none());
    // The old stable timer firing later is stale.
    assert!(
        fx.feed(
            Input::Timer {
                kind: TimerKind::Stable
            },
            30
        )
        .is_empty()
    );
    fx.feed(
        Input::Timer {
            kind: TimerKind::Retry,
        },
        15,
    );
    fx.feed(Input::GroupsBefore { achieved: true }, 15);
    fx.feed(Input::Mounted, 15);
    fx.feed(Input::Spawned { pid: PID }, 15);
    assert_eq!(fx.c.timer(TimerKind::Stable), Some(fx.at(45)));
    assert!(!fx.c.tracker.is_stable);
}

#[test]
fn no_stable_timer_without_stable_timeout() {
    let mut fx = Fx::new(cfg()).starting();
    let out = fx.feed(Input::Spawned { pid: PID }, 1);
    assert!(!acts(&out).iter().any(|a| matches!(
        a,
        Action::ArmTimer {
            kind: TimerKind::Stable,
            ..
        }
    )));
}

#[test]
fn api_stop_terminates_and_arms_the_5s_grace() {
    let mut fx = Fx::new(cfg()).started();
    let out = fx.feed(Input::ApiStop, 10);
    assert_eq!(fx.c.status, Status::Stopping);
    assert_eq!(
        acts(&out),
        [signal(PID, Sig::Term), arm(TimerKind::StopGrace, fx.at(15))]
    );
    assert_eq!(
        lines(&out),
        ["c: STARTED -> STOPPING (stop requested through the API)"]
    );
}

#[test]
fn stop_grace_is_configurable() {
    let mut fx = Fx::with(|c| c.stop_grace = Duration::from_secs(2)).started();
    fx.feed(Input::ApiStop, 10);
    assert_eq!(fx.c.timer(TimerKind::StopGrace), Some(fx.at(12)));
}

#[test]
fn stop_grace_expiry_kills() {
    let mut fx = Fx::new(cfg()).stopping();
    let out = fx.feed(
        Input::Timer {
            kind: TimerKind::StopGrace,
        },
        6,
    );
    assert_eq!(acts(&out), [signal(PID, Sig::Kill)]);
    assert_eq!(fx.c.status, Status::Stopping);
    assert_eq!(lines(&out), ["c: still running 5s after SIGTERM; SIGKILL"]);
}

#[test]
fn exit_after_an_api_stop_is_stopped_by_the_user_without_recovery() {
    let mut fx = Fx::with(|c| c.recovery = on_failure()).stopping();
    let out = fx.feed(
        Input::Exited {
            status: ExitStatus::Signaled(15),
        },
        2,
    );
    assert_eq!((fx.c.status, fx.c.user_stopped), (Status::Stopped, true));
    assert_eq!(acts(&out), [cancel(TimerKind::StopGrace), unmount()]);
    assert_eq!(
        lines(&out),
        ["c: STOPPING -> STOPPED (init exited with signal 15 after stop)"]
    );
}

#[test]
fn api_stop_of_a_ready_container_stops_it() {
    let mut fx = Fx::with(|c| c.goal = StatusGoal::Ready).started();
    fx.feed(Input::ReadySignal, 1);
    fx.feed(Input::ApiStop, 2);
    assert_eq!(fx.c.status, Status::Stopping);
}

#[test]
fn api_restart_stops_then_installs_with_counters_reset() {
    let mut fx = Fx::with(|c| c.recovery = on_failure()).started();
    fx.c.tracker.current_retries = 3;
    let out = fx.feed(Input::ApiRestart, 1);
    assert_eq!(
        acts(&out)[..2],
        [cancel(TimerKind::Stable), signal(PID, Sig::Term)]
    );
    let out = fx.feed(
        Input::Exited {
            status: ExitStatus::Signaled(15),
        },
        2,
    );
    assert_eq!(fx.c.status, Status::Installed);
    assert_eq!(fx.c.tracker.current_retries, 0);
    assert!(!fx.c.user_stopped);
    assert_eq!(
        lines(&out),
        [
            "c: STOPPING -> STOPPED (init exited with signal 15 after stop)",
            "c: STOPPED -> INSTALLED (restart requested through the API)"
        ]
    );
}

#[test]
fn api_start_while_running_is_a_no_op() {
    let mut fx = Fx::new(cfg()).started();
    assert!(fx.feed(Input::ApiStart, 1).is_empty());
    assert_eq!(fx.c.status, Status::Started);
}

#[test]
fn revision_stop_of_a_running_container_ends_quietly() {
    let mut fx = Fx::with(|c| c.recovery = on_failure()).started();
    let out = fx.feed(Input::Stop, 1);
    assert_eq!(lines(&out), ["c: STARTED -> STOPPING (revision stopping)"]);
    let out = fx.feed(
        Input::Exited {
            status: ExitStatus::Code(0),
        },
        2,
    );
    assert_eq!((fx.c.status, fx.c.user_stopped), (Status::Stopped, false));
    assert_eq!(acts(&out), [cancel(TimerKind::StopGrace), unmount()]);
}

#[test]
fn second_pid_while_running_is_killed_and_own_pid_is_ignored() {
    let mut fx = Fx::new(cfg()).started();
    assert_eq!(
        acts(&fx.feed(Input::Spawned { pid: 555 }, 1)),
        [signal(555, Sig::Kill)]
    );
    assert!(fx.feed(Input::Spawned { pid: PID }, 1).is_empty());
}

#[test]
fn stale_inputs_while_running_change_nothing() {
    let mut fx = Fx::new(cfg()).started();
    for input in [
        Input::GroupsBefore { achieved: false },
        Input::Mounted,
        Input::MountFailed { error: "x".into() },
        Input::SpawnFailed { error: "x".into() },
        Input::Timer {
            kind: TimerKind::Retry,
        },
        Input::Timer {
            kind: TimerKind::StopGrace,
        },
    ] {
        assert!(fx.feed(input.clone(), 1).is_empty(), "{input:?}");
        assert_eq!(fx.c.status, Status::Started);
    }
}
