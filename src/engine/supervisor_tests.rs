//! The supervisor over parsed states: group ordering, goal timeouts, status reports and the
//! API entry points, with fake time.

use super::*;
use crate::engine::{ExitStatus, TimerKind};
use crate::spec::parse_state;
use serde_json::json;

struct Fx {
    s: Supervisor,
    t0: Instant,
}

impl Fx {
    fn new(state: serde_json::Value) -> Fx {
        let mut doc = json!({"#spec": crate::spec::SYSTEM_SPEC});
        if let (Some(o), serde_json::Value::Object(e)) = (doc.as_object_mut(), state) {
            o.extend(e);
        }
        let st = match parse_state(doc.to_string().as_bytes()) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        Fx {
            s: Supervisor::new(&st, Options::default()),
            t0: Instant::now(),
        }
    }
    fn at(&self, secs: u64) -> Instant {
        self.t0 + Duration::from_secs(secs)
    }
    fn ev(&mut self, e: Event, secs: u64) -> Vec<Action> {
        let now = self.at(secs);
        self.s.handle(e, now)
    }
    fn status(&self, name: &str) -> Option<Status> {
        self.s.container(name).map(|c| c.status)
    }
    fn mounted(&mut self, name: &str, secs: u64) -> Vec<Action> {
        self.ev(
            Event::Mounted {
                container: name.into(),
            },
            secs,
        )
    }
    fn spawned(&mut self, name: &str, pid: i32, secs: u64) -> Vec<Action> {
        self.ev(
            Event::Spawned {
                container: name.into(),
                pid,
            },
            secs,
        )
    }
    fn run(&mut self, name: &str, pid: i32, secs: u64) -> Vec<Action> {
        let mut out = self.mounted(name, secs);
        out.extend(self.spawned(name, pid, secs));
        out
    }
}

fn mounts(out: &[Action]) -> Vec<String> {
    out.iter()
        .filter_map(|a| match a {
            Action::Mount { container } => Some(container.clone()),
            _ => None,
        })
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

fn four_groups() -> serde_json::Value {
    json!({
        "d/run.json": {"name":"d","group":"data"},
        "net/run.json": {"name":"net","group":"root"},
        "mid/run.json": {"name":"mid","group":"platform"},
        "web/run.json": {"name":"web","group":"app"}
    })
}

#[test]
fn nothing_happens_before_start() {
    let fx = Fx::new(four_groups());
    assert!(
        fx.s.containers()
            .iter()
            .all(|c| c.status == Status::Installed)
    );
}

#[test]
fn start_mounts_only_the_first_groups_containers() {
    let mut fx = Fx::new(four_groups());
    let out = fx.ev(Event::Start, 0);
    assert_eq!(mounts(&out), ["d"]);
    assert_eq!(fx.status("net"), Some(Status::Blocked));
    assert_eq!(fx.status("mid"), Some(Status::Blocked));
    assert_eq!(fx.status("web"), Some(Status::Blocked));
}

#[test]
fn groups_start_in_order_each_after_the_previous_achieved() {
    let mut fx = Fx::new(four_groups());
    fx.ev(Event::Start, 0);
    assert_eq!(mounts(&fx.mounted("d", 1)), ["net"]);
    assert_eq!(fx.status("d"), Some(Status::Mounted));
    assert!(
        mounts(&fx.mounted("net", 2)).is_empty(),
        "net is only STARTING"
    );
    assert_eq!(mounts(&fx.spawned("net", 10, 3)), ["mid"]);
    assert_eq!(mounts(&fx.run("mid", 11, 4)), ["web"]);
    fx.run("web", 12, 5);
    assert_eq!(fx.s.revision_status(), Status::Ready);
    assert_eq!(fx.s.revision_goal(), GoalState::Achieved);
}

#[test]
fn blocked_containers_log_their_wait() {
    let mut fx = Fx::new(four_groups());
    let out = fx.ev(Event::Start, 0);
    assert!(lines(&out).contains(
        &"net: INSTALLED -> BLOCKED (earlier groups have not reached their goals)".to_string()
    ));
}

#[test]
fn containers_of_one_group_start_together() {
    let mut fx = Fx::new(json!({
        "a/run.json": {"name":"a","group":"root"},
        "b/run.json": {"name":"b","group":"root"},
        "c/run.json": {"name":"c","group":"platform"}
    }));
    let out = fx.ev(Event::Start, 0);
    let mut m = mounts(&out);
    m.sort();
    assert_eq!(m, ["a", "b"]);
    fx.run("a", 1, 1);
    assert_eq!(
        fx.status("c"),
        Some(Status::Blocked),
        "b still short of its goal"
    );
    assert_eq!(mounts(&fx.run("b", 2, 2)), ["c"]);
}

#[test]
fn empty_groups_do_not_block() {
    let mut fx = Fx::new(json!({"web/run.json": {"name":"web","group":"app"}}));
    assert_eq!(mounts(&fx.ev(Event::Start, 0)), ["web"]);
}

#[test]
fn goal_timeout_releases_the_next_group() {
    let mut fx = Fx::new(json!({
        "net/run.json": {"name":"net","group":"root","status_goal":"READY"},
        "mid/run.json": {"name":"mid","group":"platform"}
    }));
    fx.ev(Event::Start, 0);
    fx.run("net", 10, 1);
    assert_eq!(fx.status("mid"), Some(Status::Blocked));
    // Default groups time out after 30 s; the goal timer was armed at spawn (t=1).
    let out = fx.ev(
        Event::Timer {
            container: "net".into(),
            kind: TimerKind::Goal,
        },
        31,
    );
    assert_eq!(mounts(&out), ["mid"]);
    assert_eq!(fx.s.revision_goal(), GoalState::TimedOut);
}

#[test]
fn ready_goal_holds_the_next_group_until_the_ready_signal() {
    let mut fx = Fx::new(json!({
        "net/run.json": {"name":"net","group":"root","status_goal":"READY"},
        "mid/run.json": {"name":"mid","group":"platform"}
    }));
    fx.ev(Event::Start, 0);
    fx.run("net", 10, 1);
    let now = fx.at(2);
    let out = fx.s.ready("net", now);
    assert_eq!(out.as_ref().map(|o| mounts(o)), Ok(vec!["mid".to_string()]));
    assert_eq!(fx.status("net"), Some(Status::Ready));
}

#[test]
fn ready_signal_refusals() {
    let mut fx = Fx::new(json!({"a/run.json": {"name":"a"}}));
    let now = fx.at(0);
    assert_eq!(
        fx.s.ready("a", now),
        Err((500, "Signal not expected from this platform"))
    );
    assert_eq!(
        fx.s.ready("ghost", now),
        Err((500, "Signal not expected from this platform"))
    );
}

#[test]
fn recovering_container_does_not_block_later_groups() {
    // Pantavisor's goal check: RECOVERING is past every goal (NONE), so a container that
    // crashes before reaching READY releases the next group.
    let mut fx = Fx::new(json!({
        "net/run.json": {"name":"net","group":"root","status_goal":"READY",
            "auto_recovery":{"policy":"always","retry_delay":5}},
        "mid/run.json": {"name":"mid","group":"platform"}
    }));
    fx.ev(Event::Start, 0);
    fx.run("net", 10, 1);
    assert_eq!(fx.status("mid"), Some(Status::Blocked));
    let out = fx.ev(
        Event::ChildExited {
            pid: 10,
            status: ExitStatus::Code(1),
        },
        2,
    );
    assert_eq!(fx.status("net"), Some(Status::Recovering));
    assert_eq!(mounts(&out), ["mid"]);
}

#[test]
fn container_back_to_installed_blocks_a_later_group_not_yet_released() {
    let mut fx = Fx::new(json!({
        "net/run.json": {"name":"net","group":"root","status_goal":"READY",
            "auto_recovery":{"policy":"always","retry_delay":0}},
        "mid/run.json": {"name":"mid","group":"platform"}
    }));
    fx.ev(Event::Start, 0);
    fx.run("net", 10, 1);
    // Zero delay: straight back to INSTALLED, which is short of the goal again.
    let out = fx.ev(
        Event::ChildExited {
            pid: 10,
            status: ExitStatus::Code(1),
        },
        2,
    );
    assert_eq!(mounts(&out), ["net"]);
    assert_eq!(fx.status("mid"), Some(Status::Blocked));
}

#[test]
fn recovered_container_is_mounted_again_when_its_delay_is_over() {
    let mut fx = Fx::new(json!({"web/run.json": {"name":"web","group":"app"}}));
    fx.ev(Event::Start, 0);
    fx.run("web", 10, 1);
    fx.ev(
        Event::ChildExited {
            pid: 10,
            status: ExitStatus::Code(1),
        },
        2,
    );
    assert_eq!(fx.status("web"), Some(Status::Recovering));
    let out = fx.ev(
        Event::Timer {
            container: "web".into(),
            kind: TimerKind::Retry,
        },
        7,
    );
    assert_eq!(mounts(&out), ["web"]);
    assert_eq!(
        fx.s.container("web").map(|c| c.tracker.current_retries),
        Some(1)
    );
}

#[test]
fn crash_of_a_system_container_requests_a_reboot() {
    let mut fx = Fx::new(json!({"net/run.json": {"name":"net"}}));
    fx.ev(Event::Start, 0);
    fx.run("net", 10, 1);
    let out = fx.ev(
        Event::ChildExited {
            pid: 10,
            status: ExitStatus::Signaled(9),
        },
        2,
    );
    assert!(out.contains(&Action::RequestReboot {
        reason: "container 'net' stopped and has no auto-recovery".into()
    }));
}

#[test]
fn crash_during_an_update_requests_a_rollback() {
    let mut fx = Fx::new(json!({"net/run.json": {"name":"net"}}));
    fx.s.set_updating(true);
    fx.ev(Event::Start, 0);
    fx.run("net", 10, 1);
    let out = fx.ev(
        Event::ChildExited {
            pid: 10,
            status: ExitStatus::Code(1),
        },
        2,
    );
    assert!(
        out.iter()
            .any(|a| matches!(a, Action::RequestRollback { .. }))
    );
    assert!(
        !out.iter()
            .any(|a| matches!(a, Action::RequestReboot { .. }))
    );
}

#[test]
fn unknown_pid_exit_is_only_logged() {
    let mut fx = Fx::new(json!({"net/run.json": {"name":"net"}}));
    fx.ev(Event::Start, 0);
    let out = fx.ev(
        Event::ChildExited {
            pid: 4242,
            status: ExitStatus::Code(0),
        },
        1,
    );
    assert_eq!(
        lines(&out),
        ["supervisor: pid 4242 (exit code 0) is no container's init"]
    );
}

#[test]
fn events_for_unknown_containers_are_logged() {
    let mut fx = Fx::new(json!({"net/run.json": {"name":"net"}}));
    let out = fx.ev(
        Event::Mounted {
            container: "ghost".into(),
        },
        0,
    );
    assert_eq!(
        lines(&out),
        ["supervisor: no container 'ghost' for Mounted"]
    );
}

#[test]
fn revision_status_is_reported_on_start_and_on_change() {
    let mut fx = Fx::new(json!({"web/run.json": {"name":"web","group":"app"}}));
    let out = fx.ev(Event::Start, 0);
    assert!(out.contains(&Action::RevisionStatus {
        status: Status::Installed
    }));
    let out = fx.run("web", 10, 1);
    assert!(out.contains(&Action::RevisionStatus {
        status: Status::Ready
    }));
    assert!(lines(&out).contains(&"revision: STARTING -> READY (lowest group status)".to_string()));
    assert!(
        lines(&out)
            .contains(&"group app: STARTING -> READY (every member reached its goal)".to_string())
    );
}

#[test]
fn revision_status_is_not_reported_twice() {
    let mut fx = Fx::new(json!({"web/run.json": {"name":"web","group":"app"}}));
    fx.ev(Event::Start, 0);
    fx.run("web", 10, 1);
    let out = fx.ev(
        Event::Timer {
            container: "web".into(),
            kind: TimerKind::Stable,
        },
        31,
    );
    assert!(
        !out.iter()
            .any(|a| matches!(a, Action::RevisionStatus { .. }))
    );
}

#[test]
fn groups_json_matches_the_golden_once_everything_runs() {
    let mut fx = Fx::new(
        json!({"pvr-sdk/run.json": {"name":"pvr-sdk","group":"platform","restart_policy":"system","roles":["mgmt"]}}),
    );
    fx.ev(Event::Start, 0);
    fx.run("pvr-sdk", 10, 1);
    assert_eq!(
        fx.s.groups_json(),
        concat!(
            r#"[{"name":"data","status_goal":"MOUNTED","restart_policy":"system","status":"READY"},"#,
            r#"{"name":"root","status_goal":"STARTED","restart_policy":"system","status":"READY"},"#,
            r#"{"name":"platform","status_goal":"STARTED","restart_policy":"system","status":"READY"},"#,
            r#"{"name":"app","status_goal":"STARTED","restart_policy":"container","status":"READY","auto_recovery":{"max_retries":5,"stable_timeout":30,"backoff_policy":"reboot"}}]"#
        )
    );
    assert_eq!(
        fx.s.containers_json(),
        r#"[{"name":"pvr-sdk","group":"platform","status":"STARTED","status_goal":"STARTED","restart_policy":"system","roles":["mgmt"]}]"#
    );
}

#[test]
fn containers_json_lists_inherited_app_recovery() {
    let fx = Fx::new(json!({"web/run.json": {"name":"web","group":"app"}}));
    assert_eq!(
        fx.s.containers_json(),
        concat!(
            r#"[{"name":"web","group":"app","status":"INSTALLED","status_goal":"STARTED","restart_policy":"container","roles":["mgmt"],"#,
            r#""auto_recovery":{"policy":"on-failure","max_retries":5,"current_retries":0,"stable_timeout":30,"is_stable":"false","backoff_policy":"reboot"},"#,
            r#""user_stopped":"false"}]"#
        )
    );
}

#[test]
fn stop_of_system_container_is_403() {
    let mut fx = Fx::new(json!({"net/run.json": {"name":"net"}}));
    let now = fx.at(0);
    assert_eq!(
        fx.s.api("net", br#"{"action":"stop"}"#, now),
        Err((
            403,
            "Container has restart_policy 'system' and cannot be controlled via API"
        ))
    );
}

#[test]
fn api_on_unknown_container_is_404() {
    let mut fx = Fx::new(json!({}));
    let now = fx.at(0);
    assert_eq!(
        fx.s.api("ghost", br#"{"action":"stop"}"#, now),
        Err((404, "Container not found"))
    );
}

#[test]
fn api_start_before_the_first_start_is_400() {
    let mut fx = Fx::new(json!({"web/run.json": {"name":"web","group":"app"}}));
    let now = fx.at(0);
    assert_eq!(
        fx.s.api("web", br#"{"action":"start"}"#, now),
        Err((
            400,
            "Container must be in STOPPED, STOPPING, or RECOVERING state to start"
        ))
    );
}

#[test]
fn api_stop_then_start_runs_the_container_again() {
    let mut fx = Fx::new(json!({"web/run.json": {"name":"web","group":"app"}}));
    fx.ev(Event::Start, 0);
    fx.run("web", 10, 1);
    let now = fx.at(2);
    let out = fx.s.api("web", br#"{"action":"stop"}"#, now);
    assert!(out.is_ok_and(|o| o.contains(&Action::Signal {
        container: "web".into(),
        pid: 10,
        sig: super::super::Sig::Term
    })));
    fx.ev(
        Event::ChildExited {
            pid: 10,
            status: ExitStatus::Signaled(15),
        },
        3,
    );
    assert_eq!(fx.status("web"), Some(Status::Stopped));
    assert!(fx.s.containers_json().contains(r#""user_stopped":"true""#));
    let now = fx.at(4);
    let out = fx.s.api("web", br#"{"action":"start"}"#, now);
    assert_eq!(out.map(|o| mounts(&o)), Ok(vec!["web".to_string()]));
    assert!(fx.s.containers_json().contains(r#""user_stopped":"false""#));
}

#[test]
fn api_restart_of_a_running_container_mounts_it_again_after_the_exit() {
    let mut fx = Fx::new(json!({"web/run.json": {"name":"web","group":"app"}}));
    fx.ev(Event::Start, 0);
    fx.run("web", 10, 1);
    let now = fx.at(2);
    assert!(fx.s.api("web", br#"{"action":"restart"}"#, now).is_ok());
    let out = fx.ev(
        Event::ChildExited {
            pid: 10,
            status: ExitStatus::Signaled(15),
        },
        3,
    );
    assert_eq!(mounts(&out), ["web"]);
}

#[test]
fn api_body_errors_come_through() {
    let mut fx = Fx::new(json!({"web/run.json": {"name":"web","group":"app"}}));
    let now = fx.at(0);
    assert_eq!(fx.s.api("web", b"", now), Err((400, "No data")));
    assert_eq!(fx.s.api("web", b"{", now), Err((400, "Invalid JSON")));
    assert_eq!(
        fx.s.api("web", b"{}", now),
        Err((400, "Missing 'action' field"))
    );
    assert_eq!(
        fx.s.api("web", br#"{"action":"pause"}"#, now),
        Err((400, "Invalid action. Use 'start', 'stop', or 'restart'"))
    );
}

#[test]
fn stop_all_stops_everything_quietly_and_starts_nothing() {
    let mut fx = Fx::new(four_groups());
    fx.ev(Event::Start, 0);
    fx.mounted("d", 1);
    fx.run("net", 10, 2);
    let out = fx.ev(Event::StopAll, 3);
    assert!(out.contains(&Action::Signal {
        container: "net".into(),
        pid: 10,
        sig: super::super::Sig::Term
    }));
    assert!(mounts(&out).is_empty());
    let out = fx.ev(
        Event::ChildExited {
            pid: 10,
            status: ExitStatus::Signaled(15),
        },
        4,
    );
    assert!(
        !out.iter()
            .any(|a| matches!(a, Action::RequestReboot { .. } | Action::Mount { .. }))
    );
    assert!(
        fx.s.containers()
            .iter()
            .all(|c| c.status == Status::Stopped)
    );
}

#[test]
fn stability_is_pending_until_every_tracked_container_is_stable() {
    let mut fx = Fx::new(
        json!({"web/run.json": {"name":"web","group":"app"}, "net/run.json": {"name":"net"}}),
    );
    fx.ev(Event::Start, 0);
    fx.run("net", 9, 1);
    fx.run("web", 10, 2);
    assert!(fx.s.stability_pending());
    fx.ev(
        Event::Timer {
            container: "web".into(),
            kind: TimerKind::Stable,
        },
        32,
    );
    assert!(!fx.s.stability_pending());
}

#[test]
fn user_stopped_container_does_not_hold_up_stability() {
    let mut fx = Fx::new(json!({"web/run.json": {"name":"web","group":"app"}}));
    fx.ev(Event::Start, 0);
    fx.run("web", 10, 1);
    let now = fx.at(2);
    assert!(fx.s.api("web", br#"{"action":"stop"}"#, now).is_ok());
    fx.ev(
        Event::ChildExited {
            pid: 10,
            status: ExitStatus::Signaled(15),
        },
        3,
    );
    assert!(!fx.s.stability_pending());
}

#[test]
fn group_timeout_of_custom_groups_applies() {
    let mut fx = Fx::new(json!({
        "device.json": {"groups":[{"name":"first","timeout":5},{"name":"second"}]},
        "a/run.json": {"name":"a","group":"first","status_goal":"READY"},
        "b/run.json": {"name":"b","group":"second"}
    }));
    fx.ev(Event::Start, 0);
    let out = fx.run("a", 10, 1);
    assert!(out.contains(&Action::ArmTimer {
        container: "a".into(),
        kind: TimerKind::Goal,
        at: fx.at(6)
    }));
    let out = fx.ev(
        Event::Timer {
            container: "a".into(),
            kind: TimerKind::Goal,
        },
        6,
    );
    assert_eq!(mounts(&out), ["b"]);
}

#[test]
fn mount_failure_of_a_system_container_requests_a_reboot() {
    let mut fx = Fx::new(json!({"net/run.json": {"name":"net"}}));
    fx.ev(Event::Start, 0);
    let out = fx.ev(
        Event::MountFailed {
            container: "net".into(),
            error: "EIO".into(),
        },
        1,
    );
    assert!(
        out.iter()
            .any(|a| matches!(a, Action::RequestReboot { .. }))
    );
}

#[test]
fn spawn_failure_of_an_app_container_is_recovered() {
    let mut fx = Fx::new(json!({"web/run.json": {"name":"web","group":"app"}}));
    fx.ev(Event::Start, 0);
    fx.mounted("web", 1);
    fx.ev(
        Event::SpawnFailed {
            container: "web".into(),
            error: "ENOEXEC".into(),
        },
        1,
    );
    assert_eq!(fx.status("web"), Some(Status::Recovering));
}
