//! Quiet stops (shutdown, non-reboot transitions) in reverse group order: the members of the
//! latest group get their SIGTERM together, an earlier group's once every later one is down.

use super::*;
use crate::engine::{ExitStatus, Sig};
use crate::spec::parse_state;
use serde_json::json;

fn sup(state: serde_json::Value) -> (Supervisor, Instant) {
    let mut doc = json!({"#spec": crate::spec::SYSTEM_SPEC});
    if let (Some(o), serde_json::Value::Object(e)) = (doc.as_object_mut(), state) {
        o.extend(e);
    }
    let st = match parse_state(doc.to_string().as_bytes()) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    (Supervisor::new(&st, Options::default()), Instant::now())
}

/// data (d, mounted), root (net 10, dns 11), platform (mid 12), app (web 13, ui 14), all up.
fn running() -> (Supervisor, Instant) {
    let (mut s, t) = sup(json!({
        "d/run.json": {"name":"d","group":"data","status_goal":"MOUNTED"},
        "net/run.json": {"name":"net","group":"root"},
        "dns/run.json": {"name":"dns","group":"root"},
        "mid/run.json": {"name":"mid","group":"platform"},
        "web/run.json": {"name":"web","group":"app"},
        "ui/run.json": {"name":"ui","group":"app"}
    }));
    s.handle(Event::Start, t);
    let pids = [
        ("net", 10),
        ("dns", 11),
        ("mid", 12),
        ("web", 13),
        ("ui", 14),
    ];
    s.handle(
        Event::Mounted {
            container: "d".into(),
        },
        t,
    );
    for (name, pid) in pids {
        s.handle(
            Event::Mounted {
                container: name.into(),
            },
            t,
        );
        s.handle(
            Event::Spawned {
                container: name.into(),
                pid,
            },
            t,
        );
    }
    for (name, _) in pids {
        assert_eq!(
            s.container(name).map(|c| c.status),
            Some(Status::Started),
            "{name}"
        );
    }
    (s, t)
}

fn terms(out: &[Action]) -> Vec<String> {
    let mut v: Vec<String> = out
        .iter()
        .filter_map(|a| match a {
            Action::Signal {
                container,
                sig: Sig::Term,
                ..
            } => Some(container.clone()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn exit(s: &mut Supervisor, pid: i32, t: Instant) -> Vec<Action> {
    s.handle(
        Event::ChildExited {
            pid,
            status: ExitStatus::Signaled(9),
        },
        t,
    )
}

fn unmounts(out: &[Action]) -> Vec<String> {
    out.iter()
        .filter_map(|a| match a {
            Action::Unmount { container } => Some(container.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn stop_all_stops_the_latest_group_first_and_its_members_together() {
    let (mut s, t) = running();
    let out = s.handle(Event::StopAll, t);
    assert_eq!(terms(&out), ["ui", "web"]);
    assert_eq!(s.container("mid").map(|c| c.status), Some(Status::Started));
    // One of two app members down: the platform still waits.
    assert!(terms(&exit(&mut s, 13, t)).is_empty());
    assert_eq!(terms(&exit(&mut s, 14, t)), ["mid"]);
    assert_eq!(terms(&exit(&mut s, 12, t)), ["dns", "net"]);
    exit(&mut s, 10, t);
    // The data container's volumes go last.
    assert_eq!(unmounts(&exit(&mut s, 11, t)), ["dns", "d"]);
    assert!(
        s.containers().iter().all(|c| c.status == Status::Stopped),
        "{:?}",
        s.containers()
            .iter()
            .map(|c| (c.name(), c.status))
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_transition_waits_only_for_the_containers_it_stops() {
    let (mut s, t) = running();
    // mid (platform) carries on; net and web are restarted.
    let out = s.stop(&["net".to_string(), "web".to_string()], t);
    assert_eq!(terms(&out), ["web"]);
    assert_eq!(terms(&exit(&mut s, 13, t)), ["net"]);
    exit(&mut s, 10, t);
    assert!(s.are_down(&["net".to_string(), "web".to_string()]));
    assert_eq!(s.container("mid").map(|c| c.status), Some(Status::Started));
}

#[test]
fn a_container_that_exits_while_waiting_its_turn_is_not_recovered() {
    let (mut s, t) = running();
    s.handle(Event::StopAll, t);
    // net dies on its own while the app group is still stopping.
    let out = exit(&mut s, 10, t);
    assert_eq!(s.container("net").map(|c| c.status), Some(Status::Stopped));
    assert!(!out.iter().any(|a| matches!(
        a,
        Action::RequestReboot { .. }
            | Action::RequestRollback { .. }
            | Action::Mount { .. }
            | Action::Signal { .. }
    )));
}

#[test]
fn containers_not_running_stop_at_once_and_are_not_started() {
    let (mut s, t) = sup(json!({
        "net/run.json": {"name":"net","group":"root"},
        "web/run.json": {"name":"web","group":"app"}
    }));
    s.handle(Event::Start, t);
    s.handle(
        Event::Mounted {
            container: "net".into(),
        },
        t,
    );
    s.handle(
        Event::Spawned {
            container: "net".into(),
            pid: 10,
        },
        t,
    );
    // web was released to start but has not been mounted yet.
    let out = s.stop(&["net".to_string(), "web".to_string()], t);
    assert_eq!(terms(&out), ["net"]);
    assert_eq!(s.container("web").map(|c| c.status), Some(Status::Stopped));
}
