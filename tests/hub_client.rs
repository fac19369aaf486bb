//! The hub client end to end: the real daemon against the test hub (TLS with a test CA),
//! from the first boot (register, claim, sync) through updates and their failures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::time::Duration;

use common::device::Device;
use common::hub::{HubOpts, TestHub};
use common::rootfs::{Spec, revision};
use common::{Opts, TempDir};
use serde_json::{Value, json};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A hosts file that names the hub, so the test does not depend on the machine's.
fn hosts_file(dir: &TempDir) -> String {
    let p = dir.path().join("hosts");
    fs::write(&p, "127.0.0.1 localhost\n").unwrap();
    p.display().to_string()
}

/// The settings of a device that talks to `hub`, with intervals short enough for tests.
fn hub_sets(hub: &TestHub, dir: &TempDir) -> Vec<String> {
    vec![
        format!("PH_CREDS_HOST={}", hub.host()),
        format!("PH_CREDS_PORT={}", hub.port()),
        format!("PV_LIBTHTTP_CERTSDIR={}", hub.certs_dir().display()),
        format!("TERN_HUB_HOSTS={}", hosts_file(dir)),
        "PH_UPDATER_INTERVAL=1".into(),
        "PH_METADATA_USRMETA_INTERVAL=1".into(),
        "PH_METADATA_DEVMETA_INTERVAL=1".into(),
        "PH_UPDATER_NETWORK_TIMEOUT=5".into(),
        "TERN_HUB_REQUEST_TIMEOUT=3".into(),
        "TERN_DEV_REBOOT=reexec".into(),
        "PV_UPDATER_COMMIT_DELAY=1".into(),
        "TERN_STOP_GRACE=1".into(),
        "PV_DEBUG_SHELL=0".into(),
        "TERN_HUB=on".into(),
    ]
}

struct Setup {
    hub: TestHub,
    dev: Device,
    id: String,
    _dir: TempDir,
}

fn boot(hub: TestHub, containers: &[Spec], extra_sets: &[&str]) -> (TestHub, Device, TempDir) {
    let dir = TempDir::new("hub");
    let mut sets = hub_sets(&hub, &dir);
    sets.extend(extra_sets.iter().map(|s| s.to_string()));
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let dev = Device::boot_with_opts(containers, &sets, &json!({}), Opts::default());
    (hub, dev, dir)
}

fn device_meta(dev: &Device) -> Value {
    dev.d.get("/device-meta").json()
}

/// Boot, wait for the registration, claim, wait until synced and idle.
fn claimed(containers: &[Spec], extra_sets: &[&str]) -> Setup {
    let (hub, dev, dir) = boot(TestHub::start(), containers, extra_sets);
    let id = hub.wait_for_device(secs(20)).expect("the device registers");
    assert!(hub.claim(&id));
    assert!(
        hub.wait_until(secs(30), |h| h.trail(&id).is_some()),
        "synced: {}",
        dev.d.log_text()
    );
    assert!(
        common::wait_for(secs(20), || device_meta(&dev)["pantahub.state"] == "idle"),
        "{}",
        dev.d.log_text()
    );
    Setup {
        hub,
        dev,
        id,
        _dir: dir,
    }
}

/// Put a revision of `containers` on the hub as step `rev` of device `id`.
fn post_revision(s: &Setup, rev: u64, containers: &[Spec]) -> Value {
    let tmp = TempDir::new("step");
    let (state, objects) = revision(tmp.path(), containers);
    for (_, bytes) in objects {
        s.hub.add_object(&bytes);
    }
    let state: Value = serde_json::from_slice(&state).unwrap();
    s.hub
        .post_step(&s.id, rev, state.clone(), &format!("rev {rev}"));
    state
}

fn hub_status(s: &Setup, rev: u64) -> String {
    s.hub
        .progress(&s.id, rev)
        .and_then(|p| p["status"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn wait_hub_status(s: &Setup, rev: u64, want: &str, timeout: Duration) -> Value {
    let ok = s.hub.wait_until(timeout, |_| hub_status(s, rev) == want);
    assert!(
        ok,
        "rev {rev}: hub says {:?}, wanted {want}\n{}",
        s.hub.progress(&s.id, rev),
        s.dev.d.log_text()
    );
    s.hub.progress(&s.id, rev).unwrap()
}

#[test]
fn first_boot_registers_waits_for_the_claim_then_syncs_the_factory_revision() {
    require_containers!("hub first boot");
    let (hub, dev, _dir) = boot(
        TestHub::start(),
        &[Spec::new("hc1-app", "exec sleep 3101", json!({}))],
        &[],
    );
    let id = hub.wait_for_device(secs(20)).expect("the device registers");
    let run = dev.d.rundir.clone();
    assert!(common::wait_for(secs(10), || {
        fs::read_to_string(run.join("challenge")).is_ok_and(|c| !c.is_empty())
    }));
    assert_eq!(fs::read_to_string(run.join("device-id")).unwrap(), id);
    let challenge = fs::read_to_string(run.join("challenge")).unwrap();
    assert_eq!(hub.device(&id).unwrap()["challenge"], challenge.as_str());
    assert!(
        dev.d
            .log_text()
            .contains(&format!("device challenge: '{challenge}'"))
    );
    let unclaimed = fs::read_to_string(dev.d.storage.join("config/unclaimed.config")).unwrap();
    assert!(
        unclaimed.contains(&format!("PH_CREDS_ID={id}")),
        "{unclaimed}"
    );
    assert_eq!(device_meta(&dev)["pantahub.state"], "claim");
    assert_eq!(device_meta(&dev)["pantahub.claimed"], "0");
    assert!(hub.trail(&id).is_none());

    assert!(hub.claim(&id));
    assert!(
        hub.wait_until(secs(30), |h| h.trail(&id).is_some()),
        "{}",
        dev.d.log_text()
    );
    // The trail holds the running state, and every object of it is on the hub.
    let trail = hub.trail(&id).unwrap();
    let state: Value =
        serde_json::from_slice(&fs::read(dev.d.storage.join("trails/0/.pvr/json")).unwrap())
            .unwrap();
    assert_eq!(trail["factory-state"], state);
    let objects = hub.objects();
    for (k, v) in state.as_object().unwrap() {
        if let Some(sha) = v.as_str().filter(|_| !k.ends_with(".json") && k != "#spec") {
            assert!(objects.contains(&sha.to_string()), "{k} {sha} not uploaded");
        }
    }
    assert!(common::wait_for(
        secs(10),
        || device_meta(&dev)["pantahub.state"] == "idle"
    ));
    let meta = device_meta(&dev);
    assert_eq!(meta["pantahub.claimed"], "1");
    assert_eq!(meta["pantahub.online"], "1");
    assert_eq!(fs::read_to_string(run.join("challenge")).unwrap(), "");
    let claimed = fs::read_to_string(dev.d.storage.join("config/pantahub.config")).unwrap();
    assert!(
        claimed.contains(&format!("PH_CREDS_PRN=prn:::devices:/{id}")),
        "{claimed}"
    );
    // The hub has the device's meta.
    let ok = hub.wait_until(secs(10), |h| h.device_meta(&id)["pantahub.state"] == "idle");
    let calls: Vec<String> = hub.requests().iter().map(|r| format!("{} {} {}", r.method, r.path, r.status)).collect();
    assert!(ok, "{:?}\n{calls:#?}", hub.device_meta(&id));
}

#[test]
fn a_step_posted_on_the_hub_ends_done_through_the_reboot_path() {
    require_containers!("hub reboot update");
    let s = claimed(&[Spec::new("hc2-app", "exec sleep 3201", json!({}))], &[]);
    post_revision(
        &s,
        1,
        &[
            Spec::new("hc2-app", "exec sleep 3202", json!({})),
            Spec::new("hc2-new", "exec sleep 3203", json!({})),
        ],
    );
    let p = wait_hub_status(&s, 1, "DONE", secs(60));
    assert_eq!(
        p["status-msg"],
        "Update finished, revision set as rollback point"
    );
    assert_eq!(s.dev.current(), "1");
    let history: Vec<String> = s
        .hub
        .progress_history(&s.id, 1)
        .iter()
        .map(|p| p["status"].as_str().unwrap_or("").to_string())
        .collect();
    for want in ["QUEUED", "DOWNLOADING", "INPROGRESS", "TESTING", "DONE"] {
        assert!(
            history.contains(&want.to_string()),
            "{want} missing: {history:?}"
        );
    }
    assert_eq!(Device::pids_with("sleep 3203").len(), 1);
}
