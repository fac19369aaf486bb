#![allow(clippy::unwrap_used)]

use super::*;
use crate::spec::parse_state;
use serde_json::json;

fn at(t0: Instant, s: u64) -> Instant {
    t0 + Duration::from_secs(s)
}

fn statuses(actions: &[UpdateAction]) -> Vec<(String, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            UpdateAction::Progress(p) => Some((p.status.clone(), p.status_msg.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn reboot_update_commits_done_after_the_delay() {
    let t0 = Instant::now();
    let mut u = Update::new("locals/a", true, false, Duration::from_secs(25));
    let a = u.step(UpdateEvent::GoalsAchieved, t0);
    assert_eq!(
        statuses(&a),
        [(
            "TESTING".into(),
            "Awaiting to set rollback point if update is stable".into()
        )]
    );
    assert!(a.contains(&UpdateAction::ArmCommit { at: at(t0, 25) }));
    assert!(u.step(UpdateEvent::GoalsAchieved, t0).is_empty());
    let a = u.step(
        UpdateEvent::CommitTimer {
            stability_pending: false,
        },
        at(t0, 25),
    );
    assert_eq!(
        statuses(&a),
        [(
            "DONE".into(),
            "Update finished, revision set as rollback point".into()
        )]
    );
    // The commit comes before the DONE it announces: a crash between the two must find the
    // try committed (start-up then finishes the progress), never DONE and rolled back.
    assert!(matches!(
        a.as_slice(),
        [
            UpdateAction::Commit { done: true },
            UpdateAction::Progress(_)
        ]
    ));
}

#[test]
fn non_reboot_and_try_once_updates_end_updated() {
    for (reboot, once) in [(false, false), (true, true)] {
        let t0 = Instant::now();
        let mut u = Update::new("locals/a", reboot, once, Duration::from_secs(1));
        let a = u.step(UpdateEvent::GoalsAchieved, t0);
        assert_eq!(statuses(&a)[0].1, "Awaiting to see if update is stable");
        let a = u.step(
            UpdateEvent::CommitTimer {
                stability_pending: false,
            },
            at(t0, 1),
        );
        assert_eq!(statuses(&a)[0].0, "UPDATED");
        // UPDATED before the commit: a crash between them rolls back, as UPDATED implies.
        assert!(matches!(
            a.as_slice(),
            [
                UpdateAction::Progress(_),
                UpdateAction::Commit { done: false }
            ]
        ));
    }
}

#[test]
fn the_commit_waits_for_stability_announcing_it_once() {
    let t0 = Instant::now();
    let mut u = Update::new("1", true, false, Duration::from_secs(5));
    u.step(UpdateEvent::GoalsAchieved, t0);
    let pending = UpdateEvent::CommitTimer {
        stability_pending: true,
    };
    let a = u.step(pending.clone(), at(t0, 5));
    assert_eq!(
        statuses(&a),
        [(
            "TESTING".into(),
            "Waiting for all containers to become stable".into()
        )]
    );
    assert!(a.contains(&UpdateAction::ArmCommit { at: at(t0, 6) }));
    let a = u.step(pending, at(t0, 6));
    assert_eq!(a, [UpdateAction::ArmCommit { at: at(t0, 7) }]);
}

#[test]
fn failures_and_timeouts_roll_back_with_their_message() {
    let t0 = Instant::now();
    let mut u = Update::new("1", true, false, Duration::from_secs(5));
    let a = u.step(UpdateEvent::GoalsTimedOut, t0);
    assert_eq!(
        statuses(&a)[0],
        ("ERROR".into(), "Status goal not reached".into())
    );
    assert_eq!(a.last(), Some(&UpdateAction::Rollback));
    let mut u = Update::new("1", true, false, Duration::from_secs(5));
    u.step(UpdateEvent::GoalsAchieved, t0);
    let a = u.step(
        UpdateEvent::Failed {
            reason: "app: exit code 1".into(),
        },
        t0,
    );
    match &a[0] {
        UpdateAction::Progress(p) => {
            assert_eq!(p.status_msg, "A container could not be started");
            assert_eq!(p.logs.as_deref(), Some("app: exit code 1"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(a.last(), Some(&UpdateAction::Rollback));
}

#[test]
fn a_stale_commit_timer_while_trying_does_nothing() {
    let mut u = Update::new("1", true, false, Duration::from_secs(5));
    let stale = UpdateEvent::CommitTimer {
        stability_pending: false,
    };
    assert!(u.step(stale, Instant::now()).is_empty());
    assert_eq!(u.phase, Phase::Trying);
}

fn doc(v: serde_json::Value) -> (Map<String, Value>, State) {
    let state = parse_state(v.to_string().as_bytes()).unwrap();
    (v.as_object().unwrap().clone(), state)
}

fn base() -> serde_json::Value {
    json!({
        "#spec": "pantavisor-service-system@1",
        "bsp/run.json": {"linux": "kernel.img"},
        "bsp/kernel.img": "a".repeat(64),
        "sys/run.json": {"name":"sys","type":"lxc","root-volume":"root.squashfs"},
        "sys/root.squashfs": "b".repeat(64),
        "app/run.json": {"name":"app","type":"lxc","root-volume":"root.squashfs","group":"app",
                         "restart_policy":"container"},
        "app/root.squashfs": "c".repeat(64),
        "_config/app/etc/x": "d".repeat(64),
    })
}

fn plan(change: impl FnOnce(&mut Map<String, Value>)) -> Transition {
    let (old_doc, old) = doc(base());
    let mut new = base();
    change(new.as_object_mut().unwrap());
    let (new_doc, new) = doc(new);
    plan_transition(&old_doc, &new_doc, &old, &new)
}

#[test]
fn container_policy_changes_restart_only_those_containers() {
    let t = plan(|m| {
        m.insert("app/root.squashfs".into(), json!("e".repeat(64)));
    });
    assert_eq!(
        t,
        Transition::NonReboot {
            restart: vec!["app".into()]
        }
    );
    let t = plan(|m| {
        m.insert("_config/app/etc/x".into(), json!("e".repeat(64)));
    });
    assert_eq!(
        t,
        Transition::NonReboot {
            restart: vec!["app".into()]
        }
    );
    let t = plan(|m| {
        m.insert(
            "web/run.json".into(),
            json!({"name":"web","type":"lxc","root-volume":"r","group":"app","restart_policy":"container"}),
        );
        m.insert("web/r".into(), json!("f".repeat(64)));
    });
    assert_eq!(
        t,
        Transition::NonReboot {
            restart: vec!["web".into()]
        }
    );
    assert_eq!(plan(|_| {}), Transition::NonReboot { restart: vec![] });
}

#[test]
fn bsp_root_keys_and_system_containers_need_a_reboot() {
    assert!(matches!(
        plan(|m| {
            m.insert("bsp/kernel.img".into(), json!("e".repeat(64)));
        }),
        Transition::Reboot { .. }
    ));
    assert!(matches!(
        plan(|m| {
            m.insert("network-mapping.json".into(), json!({}));
        }),
        Transition::Reboot { .. }
    ));
    assert_eq!(
        plan(|m| {
            m.insert("sys/root.squashfs".into(), json!("e".repeat(64)));
        }),
        Transition::Reboot {
            why: "sys has restart_policy system".into()
        }
    );
    // A container moving from container to system policy: the new version decides too.
    assert!(matches!(
        plan(|m| {
            m.insert(
                "app/run.json".into(),
                json!({"name":"app","type":"lxc","root-volume":"root.squashfs","group":"app",
                       "restart_policy":"system"}),
            );
        }),
        Transition::Reboot { .. }
    ));
}

#[test]
fn losing_the_hub_rolls_back_with_the_hub_message_in_either_phase() {
    let t0 = Instant::now();
    for testing in [false, true] {
        let mut u = Update::new("4", true, false, Duration::from_secs(5));
        if testing {
            u.step(UpdateEvent::GoalsAchieved, t0);
        }
        let a = u.step(
            UpdateEvent::HubLost {
                msg: "Hub communication not stable".into(),
            },
            t0,
        );
        assert_eq!(
            statuses(&a)[0],
            ("ERROR".into(), "Hub communication not stable".into())
        );
        assert_eq!(a.last(), Some(&UpdateAction::Rollback));
    }
}

#[test]
fn signatures_alone_restart_nothing_and_need_no_reboot() {
    let sig = |v: &str| json!({"#spec":"pvs@2","protected":v,"signature":v});
    // Added, changed and removed signatures of a container, of the BSP and of a system
    // container: none of them changes what runs.
    for key in [
        "_sigs/app.json",
        "_sigs/bsp.json",
        "_sigs/sys.json",
        "_sigs/all.json",
    ] {
        let t = plan(|m| {
            m.insert(key.into(), sig("resigned"));
        });
        assert_eq!(t, Transition::NonReboot { restart: vec![] }, "{key}");
    }
    // A signature riding along with a real change does not hide it.
    let t = plan(|m| {
        m.insert("_sigs/app.json".into(), sig("new"));
        m.insert("app/root.squashfs".into(), json!("e".repeat(64)));
    });
    assert_eq!(
        t,
        Transition::NonReboot {
            restart: vec!["app".into()]
        }
    );
}
