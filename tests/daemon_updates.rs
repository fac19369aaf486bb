//! Updates end to end on real containers: the reboot path (Tern re-executes itself in place,
//! `TERN_DEV_REBOOT=reexec`), the non-reboot path, rollback of a revision that cannot start,
//! commands and their refusals, and garbage collection. Needs what the container tests need.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::time::Duration;

use common::device::{Device, LOCAL_UPDATES as SETS};
use common::rootfs::Spec;
use common::wait_for;
use serde_json::json;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn boot_env(dev: &Device) -> serde_json::Value {
    serde_json::from_slice(&fs::read(dev.d.storage.join("boot/tern.json")).unwrap()).unwrap()
}

#[test]
fn a_reboot_update_ends_done_and_becomes_the_rollback_point() {
    require_containers!("reboot update");
    let dev = Device::boot(
        &[Spec::new("u1-sys", "echo v1; exec sleep 2201", json!({}))],
        SETS,
    );
    dev.wait_status("u1-sys", "STARTED", secs(20));
    let pid = dev.d.pid();
    dev.install(
        "v2",
        &[Spec::new("u1-sys", "echo v2; exec sleep 2202", json!({}))],
    );
    assert_eq!(dev.progress("locals/v2").0, "NEW");
    assert_eq!(dev.command("LOCAL_RUN", "locals/v2"), (200, String::new()));
    let (_, msg) = dev.wait_progress("locals/v2", "DONE", secs(40));
    assert_eq!(msg, "Update finished, revision set as rollback point");
    // The same process, re-executed: the reboot happened in place.
    assert_eq!(dev.d.pid(), pid);
    assert_eq!(dev.current(), "locals/v2");
    assert!(Device::pids_with("sleep 2201").is_empty());
    assert_eq!(Device::pids_with("sleep 2202").len(), 1);
    assert!(dev.d.storage.join("trails/locals/v2/.pv/done").is_file());
    let env = boot_env(&dev);
    assert_eq!(env["rev"], "locals/v2");
    assert_eq!(env["try"], serde_json::Value::Null);
    let log = dev.d.log_text();
    assert!(log.contains("reboot transition"), "{log}");
    assert!(log.contains("INPROGRESS Trying new revision"), "{log}");
}

#[test]
fn a_non_reboot_update_ends_updated_and_unchanged_containers_keep_their_pids() {
    require_containers!("non-reboot update");
    // Stable after 1 s (the app group's default waits 30 s before a commit).
    let app = json!({"group":"app","restart_policy":"container",
                     "auto_recovery":{"policy":"on-failure","stable_timeout":1}});
    let dev = Device::boot(
        &[
            Spec::new("u2-keep", "exec sleep 2211", app.clone()),
            Spec::new("u2-change", "exec sleep 2212", app.clone()),
        ],
        SETS,
    );
    dev.wait_status("u2-change", "STARTED", secs(20));
    assert!(wait_for(secs(5), || Device::pids_with("sleep 2211").len() == 1));
    let kept = Device::pids_with("sleep 2211");
    let pid = dev.d.pid();
    dev.install(
        "v2",
        &[
            Spec::new("u2-keep", "exec sleep 2211", app.clone()),
            Spec::new("u2-change", "exec sleep 2213", app.clone()),
            Spec::new("u2-new", "exec sleep 2214", app.clone()),
        ],
    );
    assert_eq!(dev.command("LOCAL_RUN", "locals/v2").0, 200);
    let (_, msg) = dev.wait_progress("locals/v2", "UPDATED", secs(30));
    assert_eq!(msg, "Update finished, revision not set as rollback point");
    assert_eq!(dev.d.pid(), pid);
    assert_eq!(
        Device::pids_with("sleep 2211"),
        kept,
        "the unchanged container was restarted"
    );
    assert!(Device::pids_with("sleep 2212").is_empty());
    assert_eq!(Device::pids_with("sleep 2213").len(), 1);
    assert_eq!(Device::pids_with("sleep 2214").len(), 1);
    assert_eq!(dev.current(), "locals/v2");
    let names: Vec<String> = dev
        .containers()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["u2-change", "u2-keep", "u2-new"]);
    // Not the rollback point: the committed revision stays 0.
    assert_eq!(boot_env(&dev)["rev"], "0");
    assert!(dev.d.log_text().contains("non-reboot transition"));
}

#[test]
fn a_revision_whose_container_cannot_start_rolls_back_to_the_previous_one() {
    require_containers!("rollback");
    let dev = Device::boot(&[Spec::new("u3-sys", "exec sleep 2221", json!({}))], SETS);
    dev.wait_status("u3-sys", "STARTED", secs(20));
    dev.install(
        "bad",
        &[Spec::new("u3-sys", "echo broken; exit 1", json!({}))],
    );
    assert_eq!(dev.command("LOCAL_RUN", "locals/bad").0, 200);
    let (_, msg) = dev.wait_progress("locals/bad", "ERROR", secs(40));
    assert_eq!(msg, "A container could not be started");
    // Back on revision 0 with its container running.
    assert!(wait_for(secs(30), || dev.current() == "0"
        && Device::pids_with("sleep 2221").len() == 1));
    dev.wait_status("u3-sys", "STARTED", secs(20));
    let p = dev.d.get("/steps/locals/bad/progress").json();
    assert!(
        p["logs"].as_str().unwrap_or_default().contains("u3-sys"),
        "{p}"
    );
    assert_eq!(boot_env(&dev)["try"], serde_json::Value::Null);
}

#[test]
fn commands_are_checked_and_refused_like_pantavisor() {
    require_containers!("commands");
    let dev = Device::boot(&[Spec::new("u4-sys", "exec sleep 2231", json!({}))], SETS);
    dev.wait_status("u4-sys", "STARTED", secs(20));
    let bad = r#"{"Error":"Command has bad format"}"#;
    for body in [
        &b"{}"[..],
        br#"{"op":"LOCAL_RUN"}"#,
        br#"{"op":"NOPE","payload":""}"#,
    ] {
        assert_eq!(
            dev.d.request("POST", "/commands", body).sb(),
            (400, bad.into())
        );
    }
    assert_eq!(
        dev.command("UPDATE_METADATA", "{}"),
        (
            409,
            r#"{"Error":"Cannot do this operation while on local mode"}"#.into()
        )
    );
    assert_eq!(
        dev.command("DEFER_REBOOT", "60"),
        (
            409,
            r#"{"Error":"Cannot do this operation when debug shell is not active"}"#.into()
        )
    );
    assert_eq!(dev.command("UNCLAIM", "").0, 204);
    // A run of a missing revision is accepted, and says WONTGO nowhere: there is no such rev.
    assert_eq!(dev.command("LOCAL_RUN", "locals/none").0, 200);
    // While an update is under way, commands that would disturb it wait.
    dev.install(
        "slow",
        &[
            Spec::new("u4-sys", "exec sleep 2231", json!({})),
            Spec::new(
                "u4-app",
                "exec sleep 2232",
                json!({"group":"app","restart_policy":"container","status_goal":"READY"}),
            ),
        ],
    );
    assert_eq!(dev.command("LOCAL_RUN", "locals/slow").0, 200);
    let r = dev.d.request(
        "POST",
        "/commands",
        json!({"op":"REBOOT_DEVICE","payload":""})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("600"));
    assert_eq!(
        r.text(),
        r#"{"Error":"Cannot do this operation while update is ongoing"}"#
    );
}

#[test]
fn gc_keeps_what_the_running_and_rollback_revisions_need() {
    require_containers!("gc");
    let mut sets = SETS.to_vec();
    sets.push("TERN_GC_GRACE=0");
    let dev = Device::boot(&[Spec::new("u5-sys", "exec sleep 2241", json!({}))], &sets);
    dev.wait_status("u5-sys", "STARTED", secs(20));
    dev.install("v2", &[Spec::new("u5-sys", "exec sleep 2242", json!({}))]);
    dev.install(
        "unused",
        &[Spec::new("u5-sys", "exec sleep 2243", json!({}))],
    );
    assert_eq!(dev.command("LOCAL_RUN", "locals/v2").0, 200);
    dev.wait_progress("locals/v2", "DONE", secs(40));
    let before: Vec<String> = fs::read_dir(dev.d.storage.join("objects"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let r = dev.d.request("POST", "/storage/gc", b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let reclaimed = r.json()["reclaimed"].as_u64().unwrap();
    assert!(reclaimed > 0, "{}", r.text());
    assert!(r.text().starts_with(r#"{"reclaimed": "#));
    let steps: Vec<String> = dev
        .d
        .get("/steps")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(steps, ["locals/v2"]);
    // Every object the running revision names is still there; the others are gone.
    let state = dev.d.get("/steps/current").json();
    let needed: Vec<String> = state
        .as_object()
        .unwrap()
        .values()
        .filter_map(|v| v.as_str())
        .filter(|s| s.len() == 64)
        .map(str::to_string)
        .collect();
    let after: Vec<String> = fs::read_dir(dev.d.storage.join("objects"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(needed.iter().all(|n| after.contains(n)));
    assert!(after.len() < before.len());
    // And it still runs after a restart.
    assert_eq!(dev.action("u5-sys", "stop").0, 403);
}

#[test]
fn kill_9_at_any_point_of_an_update_leaves_a_device_that_boots_and_tells_the_truth() {
    require_containers!("kill -9 during updates");
    let sets = [
        "TERN_DEV_REBOOT=reexec",
        "PV_UPDATER_COMMIT_DELAY=30",
        "TERN_STOP_GRACE=1",
        "PV_CONTROL_REMOTE=0",
    ];
    let mut dev = Device::boot(&[Spec::new("k1-sys", "exec sleep 2251", json!({}))], &sets);
    dev.wait_status("k1-sys", "STARTED", secs(20));
    let mut tried = 0;
    // 1. Killed while testing the reboot-path try: the next start rolls back.
    dev.install("t1", &[Spec::new("k1-sys", "exec sleep 2252", json!({}))]);
    assert_eq!(dev.command("LOCAL_RUN", "locals/t1").0, 200);
    dev.wait_progress("locals/t1", "TESTING", secs(30));
    dev.d.kill9();
    dev.d.spawn();
    tried += 1;
    dev.wait_status("k1-sys", "STARTED", secs(20));
    assert_eq!(dev.current(), "0");
    assert_eq!(
        dev.progress("locals/t1"),
        ("ERROR".into(), "Unexpected rollback".into())
    );
    assert!(wait_for(secs(10), || Device::pids_with("sleep 2252").is_empty()));
    assert!(wait_for(secs(5), || Device::pids_with("sleep 2251").len() == 1));
    // 2. Killed right after the command, before or during the transition.
    dev.install("t2", &[Spec::new("k1-sys", "exec sleep 2253", json!({}))]);
    assert_eq!(dev.command("LOCAL_RUN", "locals/t2").0, 200);
    dev.d.kill9();
    dev.d.spawn();
    tried += 1;
    dev.wait_status("k1-sys", "STARTED", secs(20));
    // Either the try had not been recorded (still NEW… or never left INPROGRESS) and 0 runs,
    // or it was and this start is its one try: both are bootable and truthful.
    let (status, _) = dev.progress("locals/t2");
    match dev.current().as_str() {
        "0" => assert!(matches!(status.as_str(), "NEW" | "ERROR"), "{status}"),
        "locals/t2" => assert_eq!(status, "INPROGRESS"),
        other => panic!("running {other}"),
    }
    assert!(wait_for(secs(10), || Device::pids_with("sleep 2251").len()
        + Device::pids_with("sleep 2253").len()
        == 1));
    // 3. Killed in the middle of an object upload: the partial object is gone, nothing else.
    let mut s = dev.d.connect();
    use std::io::Write;
    let sha = "ab".repeat(32);
    write!(
        s,
        "PUT /objects/{sha} HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n"
    )
    .unwrap();
    s.write_all(&[7u8; 4096]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    dev.d.kill9();
    dev.d.spawn();
    tried += 1;
    dev.wait_status("k1-sys", "STARTED", secs(20));
    let leftovers: Vec<String> = fs::read_dir(dev.d.storage.join("objects"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp") || *n == sha)
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(tried >= 3);
    println!("kill points tried: {tried}");
}

#[test]
fn try_once_returns_to_the_committed_revision_at_the_next_start() {
    require_containers!("TRY_ONCE");
    let mut sets = SETS.to_vec();
    sets.retain(|s| !s.starts_with("PV_UPDATER_COMMIT_DELAY"));
    sets.push("PV_UPDATER_COMMIT_DELAY=20");
    let mut dev = Device::boot(&[Spec::new("t1-sys", "exec sleep 2261", json!({}))], &sets);
    dev.wait_status("t1-sys", "STARTED", secs(20));
    // A restart before the commit goes back.
    dev.install("once", &[Spec::new("t1-sys", "exec sleep 2262", json!({}))]);
    assert_eq!(dev.command("TRY_ONCE", "locals/once").0, 200);
    dev.wait_progress("locals/once", "TESTING", secs(30));
    assert_eq!(dev.current(), "locals/once");
    assert!(dev.d.stop().success());
    dev.d.spawn();
    dev.wait_status("t1-sys", "STARTED", secs(20));
    assert_eq!(dev.current(), "0");
    assert_eq!(
        dev.progress("locals/once"),
        ("ERROR".into(), "Unexpected rollback".into())
    );
    assert!(wait_for(secs(5), || Device::pids_with("sleep 2261").len() == 1));
    // Even a try that finished is no rollback point: the next start is back on 0 too.
    // (Started again with a 1 s commit delay; revision 0 exists, so no factory is needed.)
    assert!(dev.d.stop().success());
    dev.d.opts = SETS.iter().fold(common::Opts::default(), |o, s| o.set(s));
    dev.d.spawn();
    dev.wait_status("t1-sys", "STARTED", secs(20));
    dev.install(
        "once2",
        &[Spec::new("t1-sys", "exec sleep 2263", json!({}))],
    );
    assert_eq!(dev.command("TRY_ONCE", "locals/once2").0, 200);
    let (_, msg) = dev.wait_progress("locals/once2", "UPDATED", secs(40));
    assert_eq!(msg, "Update finished, revision not set as rollback point");
    assert_eq!(dev.current(), "locals/once2");
    assert!(dev.d.stop().success());
    dev.d.spawn();
    dev.wait_status("t1-sys", "STARTED", secs(20));
    assert_eq!(dev.current(), "0");
    assert_eq!(dev.progress("locals/once2").0, "UPDATED");
}
