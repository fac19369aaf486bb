//! INSTALLED, BLOCKED and STARTING: gates, mounts, spawns.

use super::*;

// ---- INSTALLED / BLOCKED ----

#[test]
fn new_container_is_installed_with_nothing_armed() {
    let fx = Fx::new(cfg());
    assert_eq!(fx.c.status, Status::Installed);
    assert!(TimerKind::ALL.iter().all(|k| fx.c.timer(*k).is_none()));
    assert!(!fx.c.user_stopped);
}

#[test]
fn open_gate_mounts_an_installed_container() {
    let mut fx = Fx::new(cfg());
    let out = fx.feed(Input::GroupsBefore { achieved: true }, 0);
    assert_eq!(acts(&out), [mount()]);
    assert_eq!(fx.c.status, Status::Installed);
    assert!(fx.c.mounting);
}

#[test]
fn open_gate_twice_mounts_once() {
    let mut fx = Fx::new(cfg());
    fx.feed(Input::GroupsBefore { achieved: true }, 0);
    assert!(
        fx.feed(Input::GroupsBefore { achieved: true }, 0)
            .is_empty()
    );
}

#[test]
fn closed_gate_blocks_an_installed_container() {
    let mut fx = Fx::new(cfg());
    let out = fx.feed(Input::GroupsBefore { achieved: false }, 0);
    assert_eq!(fx.c.status, Status::Blocked);
    assert_eq!(
        lines(&out),
        ["c: INSTALLED -> BLOCKED (earlier groups have not reached their goals)"]
    );
    assert!(acts(&out).is_empty());
}

#[test]
fn closed_gate_during_a_mount_lets_the_mount_finish() {
    let mut fx = Fx::new(cfg());
    fx.feed(Input::GroupsBefore { achieved: true }, 0);
    assert!(
        fx.feed(Input::GroupsBefore { achieved: false }, 0)
            .is_empty()
    );
    assert_eq!(fx.c.status, Status::Installed);
    fx.feed(Input::Mounted, 0);
    assert_eq!(fx.c.status, Status::Starting);
}

#[test]
fn blocked_container_stays_blocked_while_the_gate_is_closed() {
    let mut fx = Fx::new(cfg());
    fx.feed(Input::GroupsBefore { achieved: false }, 0);
    assert!(
        fx.feed(Input::GroupsBefore { achieved: false }, 1)
            .is_empty()
    );
    assert_eq!(fx.c.status, Status::Blocked);
}

#[test]
fn blocked_container_mounts_when_the_gate_opens() {
    let mut fx = Fx::new(cfg());
    fx.feed(Input::GroupsBefore { achieved: false }, 0);
    let out = fx.feed(Input::GroupsBefore { achieved: true }, 1);
    assert_eq!(acts(&out), [mount()]);
    let out = fx.feed(Input::Mounted, 1);
    assert_eq!(
        lines(&out),
        [
            "c: BLOCKED -> MOUNTED (volumes mounted)",
            "c: MOUNTED -> STARTING (spawning init)"
        ]
    );
}

#[test]
fn mounted_volumes_spawn_init_and_arm_the_goal_timer() {
    let mut fx = Fx::new(cfg());
    fx.feed(Input::GroupsBefore { achieved: true }, 0);
    let out = fx.feed(Input::Mounted, 2);
    assert_eq!(acts(&out), [arm(TimerKind::Goal, fx.at(32)), spawn()]);
    assert_eq!(fx.c.status, Status::Starting);
    assert_eq!(
        lines(&out),
        [
            "c: INSTALLED -> MOUNTED (volumes mounted)",
            "c: MOUNTED -> STARTING (spawning init)"
        ]
    );
}

#[test]
fn goal_timer_uses_the_group_timeout() {
    let mut fx = Fx::with(|c| c.goal_timeout = Duration::from_secs(120));
    fx.feed(Input::GroupsBefore { achieved: true }, 0);
    fx.feed(Input::Mounted, 0);
    assert_eq!(fx.c.timer(TimerKind::Goal), Some(fx.at(120)));
}

#[test]
fn mounted_goal_container_stops_at_mounted() {
    let mut fx = Fx::with(|c| c.goal = StatusGoal::Mounted);
    fx.feed(Input::GroupsBefore { achieved: true }, 0);
    let out = fx.feed(Input::Mounted, 0);
    assert_eq!(fx.c.status, Status::Mounted);
    assert!(acts(&out).is_empty(), "no spawn, no goal timer");
}

#[test]
fn mounted_goal_container_becomes_stable_after_stable_timeout() {
    let mut fx = Fx::with(|c| {
        c.goal = StatusGoal::Mounted;
        c.recovery = AutoRecovery {
            stable_timeout: 10,
            ..AutoRecovery::NONE
        };
    });
    fx.feed(Input::GroupsBefore { achieved: true }, 0);
    let out = fx.feed(Input::Mounted, 0);
    assert_eq!(acts(&out), [arm(TimerKind::Stable, fx.at(10))]);
    fx.feed(
        Input::Timer {
            kind: TimerKind::Stable,
        },
        10,
    );
    assert!(fx.c.tracker.is_stable);
}

#[test]
fn stale_mounted_without_a_mount_is_ignored() {
    let mut fx = Fx::new(cfg());
    assert!(fx.feed(Input::Mounted, 0).is_empty());
    assert_eq!(fx.c.status, Status::Installed);
}

#[test]
fn mount_failure_without_recovery_reboots() {
    let mut fx = Fx::new(cfg());
    fx.feed(Input::GroupsBefore { achieved: true }, 0);
    let out = fx.feed(
        Input::MountFailed {
            error: "no loop device".into(),
        },
        0,
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
        lines(&out)[0],
        "c: INSTALLED -> STOPPED (mount failed: no loop device)"
    );
}

#[test]
fn mount_failure_during_an_update_rolls_back() {
    let mut fx = Fx::new(cfg());
    fx.ctx.updating = true;
    fx.feed(Input::GroupsBefore { achieved: true }, 0);
    let out = fx.feed(Input::MountFailed { error: "x".into() }, 0);
    assert!(acts(&out).contains(&Action::RequestRollback {
        reason: "container 'c' stopped and has no auto-recovery".into()
    }));
}

#[test]
fn mount_failure_with_recovery_retries() {
    let mut fx = Fx::with(|c| c.recovery = on_failure());
    fx.feed(Input::GroupsBefore { achieved: true }, 0);
    let out = fx.feed(Input::MountFailed { error: "x".into() }, 0);
    assert_eq!(fx.c.status, Status::Recovering);
    assert!(acts(&out).contains(&arm(TimerKind::Retry, fx.at(5))));
}

#[test]
fn api_stop_before_the_start_stops_without_unmounting() {
    let mut fx = Fx::new(cfg());
    let out = fx.feed(Input::ApiStop, 0);
    assert_eq!(fx.c.status, Status::Stopped);
    assert!(fx.c.user_stopped);
    assert!(acts(&out).is_empty());
}

#[test]
fn api_stop_while_blocked_stops() {
    let mut fx = Fx::new(cfg());
    fx.feed(Input::GroupsBefore { achieved: false }, 0);
    fx.feed(Input::ApiStop, 0);
    assert_eq!((fx.c.status, fx.c.user_stopped), (Status::Stopped, true));
}

#[test]
fn mount_landing_after_an_api_stop_is_undone() {
    let mut fx = Fx::new(cfg());
    fx.feed(Input::GroupsBefore { achieved: true }, 0);
    fx.feed(Input::ApiStop, 0);
    let out = fx.feed(Input::Mounted, 1);
    assert_eq!(acts(&out), [unmount()]);
    assert_eq!(fx.c.status, Status::Stopped);
    assert!(!fx.c.mounting);
    assert!(fx.feed(Input::Mounted, 2).is_empty(), "only once");
}

#[test]
fn mount_failure_after_an_api_stop_is_forgotten() {
    let mut fx = Fx::new(cfg());
    fx.feed(Input::GroupsBefore { achieved: true }, 0);
    fx.feed(Input::ApiStop, 0);
    assert!(acts(&fx.feed(Input::MountFailed { error: "x".into() }, 1)).is_empty());
    assert!(!fx.c.mounting);
}

#[test]
fn api_start_and_restart_before_the_start_do_nothing() {
    for input in [Input::ApiStart, Input::ApiRestart] {
        let mut fx = Fx::new(cfg());
        assert!(fx.feed(input, 0).is_empty());
        assert_eq!(fx.c.status, Status::Installed);
    }
}

#[test]
fn revision_stop_before_the_start_stops_quietly() {
    let mut fx = Fx::new(cfg());
    let out = fx.feed(Input::Stop, 0);
    assert_eq!(fx.c.status, Status::Stopped);
    assert!(!fx.c.user_stopped);
    assert!(acts(&out).is_empty());
}

#[test]
fn stray_spawn_before_the_start_is_killed() {
    let mut fx = Fx::new(cfg());
    let out = fx.feed(Input::Spawned { pid: 7 }, 0);
    assert_eq!(acts(&out), [signal(7, Sig::Kill)]);
    assert_eq!(fx.c.status, Status::Installed);
}

// ---- STARTING ----

#[test]
fn spawned_init_is_started_and_reaches_a_started_goal() {
    let mut fx = Fx::new(cfg()).starting();
    let out = fx.feed(Input::Spawned { pid: PID }, 1);
    assert_eq!(fx.c.status, Status::Started);
    assert_eq!(fx.c.pid, Some(PID));
    assert_eq!(acts(&out), [cancel(TimerKind::Goal)]);
    assert_eq!(
        lines(&out),
        ["c: STARTING -> STARTED (init running as pid 100)"]
    );
}

#[test]
fn spawned_init_with_a_ready_goal_keeps_the_goal_timer() {
    let mut fx = Fx::with(|c| c.goal = StatusGoal::Ready).starting();
    let out = fx.feed(Input::Spawned { pid: PID }, 1);
    assert!(acts(&out).is_empty());
    assert!(fx.c.timer(TimerKind::Goal).is_some());
}

#[test]
fn spawn_records_the_start_time_for_the_reset_window() {
    let mut fx = Fx::new(cfg()).starting();
    fx.feed(Input::Spawned { pid: PID }, 0);
    assert_eq!(fx.c.tracker.last_start, Some(fx.at(0)));
}

#[test]
fn spawn_failure_without_recovery_unmounts_and_reboots() {
    let mut fx = Fx::new(cfg()).starting();
    let out = fx.feed(
        Input::SpawnFailed {
            error: "ENOENT".into(),
        },
        1,
    );
    assert_eq!(fx.c.status, Status::Stopped);
    assert_eq!(
        acts(&out),
        [
            cancel(TimerKind::Goal),
            unmount(),
            Action::RequestReboot {
                reason: "container 'c' stopped and has no auto-recovery".into()
            }
        ]
    );
}

#[test]
fn spawn_failure_with_recovery_goes_recovering() {
    let mut fx = Fx::with(|c| c.recovery = on_failure()).starting();
    fx.feed(Input::SpawnFailed { error: "x".into() }, 1);
    assert_eq!(fx.c.status, Status::Recovering);
    assert_eq!(fx.c.tracker.current_retries, 1);
}

#[test]
fn stop_while_starting_waits_for_the_pid_then_terminates() {
    let mut fx = Fx::new(cfg()).starting();
    assert!(acts(&fx.feed(Input::ApiStop, 1)).is_empty());
    assert_eq!(fx.c.status, Status::Starting);
    let out = fx.feed(Input::Spawned { pid: PID }, 2);
    assert_eq!(fx.c.status, Status::Stopping);
    assert_eq!(
        acts(&out),
        [
            cancel(TimerKind::Goal),
            signal(PID, Sig::Term),
            arm(TimerKind::StopGrace, fx.at(7))
        ]
    );
    fx.feed(
        Input::Exited {
            status: ExitStatus::Signaled(15),
        },
        3,
    );
    assert_eq!((fx.c.status, fx.c.user_stopped), (Status::Stopped, true));
}

#[test]
fn restart_while_starting_starts_again_after_the_exit() {
    let mut fx = Fx::new(cfg()).starting();
    fx.feed(Input::ApiRestart, 1);
    fx.feed(Input::Spawned { pid: PID }, 2);
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
fn revision_stop_while_starting_ends_quietly() {
    let mut fx = Fx::new(cfg()).starting();
    fx.feed(Input::Stop, 1);
    fx.feed(Input::Spawned { pid: PID }, 2);
    let out = fx.feed(
        Input::Exited {
            status: ExitStatus::Code(0),
        },
        3,
    );
    assert_eq!((fx.c.status, fx.c.user_stopped), (Status::Stopped, false));
    assert!(
        !acts(&out)
            .iter()
            .any(|a| matches!(a, Action::RequestReboot { .. }))
    );
}

#[test]
fn spawn_failure_after_a_stop_request_ends_stopped_by_the_user() {
    let mut fx = Fx::new(cfg()).starting();
    fx.feed(Input::ApiStop, 1);
    let out = fx.feed(Input::SpawnFailed { error: "x".into() }, 2);
    assert_eq!((fx.c.status, fx.c.user_stopped), (Status::Stopped, true));
    assert!(
        !acts(&out)
            .iter()
            .any(|a| matches!(a, Action::RequestReboot { .. }))
    );
}

#[test]
fn goal_timeout_while_starting_marks_the_goal_timed_out() {
    let mut fx = Fx::new(cfg()).starting();
    let out = fx.feed(
        Input::Timer {
            kind: TimerKind::Goal,
        },
        30,
    );
    assert!(fx.c.goal_timed_out);
    assert_eq!(lines(&out), ["c: status goal timed out after 30s"]);
    assert_eq!(fx.c.status, Status::Starting);
}

#[test]
fn early_goal_timer_is_ignored() {
    let mut fx = Fx::new(cfg()).starting();
    assert!(
        fx.feed(
            Input::Timer {
                kind: TimerKind::Goal
            },
            29
        )
        .is_empty()
    );
    assert!(!fx.c.goal_timed_out);
    assert!(fx.c.timer(TimerKind::Goal).is_some(), "still armed");
}

#[test]
fn exit_and_ready_while_starting_are_ignored() {
    let mut fx = Fx::new(cfg()).starting();
    assert!(
        fx.feed(
            Input::Exited {
                status: ExitStatus::Code(1)
            },
            1
        )
        .is_empty()
    );
    assert!(fx.feed(Input::ReadySignal, 1).is_empty());
    assert!(fx.feed(Input::ApiStart, 1).is_empty());
    assert_eq!(fx.c.status, Status::Starting);
}
