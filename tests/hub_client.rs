//! The hub client end to end: the real daemon against the test hub (TLS with a test CA),
//! from the first boot (register, claim, sync) through updates and their failures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::time::Duration;

use common::device::Device;
use common::hub::{HubOpts, TestHub};
use common::rootfs::Spec;
use common::{Opts, TempDir};
use serde_json::{Value, json};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A test hub that frames its answers as pantahub-base's Go server does (large JSON chunked).
fn real_hub() -> TestHub {
    TestHub::start_with(HubOpts {
        go_chunking: true,
        ..HubOpts::default()
    })
}

/// The settings of a device that talks to `hub`, with intervals short enough for tests.
fn hub_sets(hub: &TestHub, dir: &TempDir) -> Vec<String> {
    let mut sets = hub.device_sets(dir.path());
    sets.extend(
        [
            "PH_UPDATER_INTERVAL=1",
            "PH_METADATA_USRMETA_INTERVAL=1",
            "PH_METADATA_DEVMETA_INTERVAL=1",
            "PH_UPDATER_NETWORK_TIMEOUT=5",
            "TERN_HUB_REQUEST_TIMEOUT=3",
            "TERN_DEV_REBOOT=reexec",
            "PV_UPDATER_COMMIT_DELAY=1",
            "TERN_STOP_GRACE=1",
            "PV_DEBUG_SHELL=0",
        ]
        .map(String::from),
    );
    sets
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

/// A revision's status on the device's disk; empty while the daemon re-executes.
fn disk_status(dev: &Device, rev: &str) -> (String, String) {
    dev.d
        .try_request("GET", &format!("/steps/{rev}/progress"), b"")
        .and_then(|(_, body)| serde_json::from_slice::<Value>(&body).ok())
        .map(|p| {
            (
                p["status"].as_str().unwrap_or_default().to_string(),
                p["status-msg"].as_str().unwrap_or_default().to_string(),
            )
        })
        .unwrap_or_default()
}

fn device_meta(dev: &Device) -> Value {
    dev.d.get("/device-meta").json()
}

/// Boot, wait for the registration, claim, wait until synced and idle.
fn claimed(containers: &[Spec], extra_sets: &[&str]) -> Setup {
    claimed_on(real_hub(), containers, extra_sets)
}

fn claimed_on(hub: TestHub, containers: &[Spec], extra_sets: &[&str]) -> Setup {
    let (hub, dev, dir) = boot(hub, containers, extra_sets);
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
    let (state, objects) = s.dev.revision_of(containers);
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
        real_hub(),
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
    let calls: Vec<String> = hub
        .requests()
        .iter()
        .map(|r| format!("{} {} {}", r.method, r.path, r.status))
        .collect();
    assert!(ok, "{:?}\n{calls:#?}", hub.device_meta(&id));
    // A restart (and a hub that fails meanwhile) keeps the claim: same device, no new
    // registration, straight back to idle without a second sync.
    let mut dev = dev;
    dev.d.stop();
    hub.fail("/devices/", 503, Some(3));
    dev.d.spawn();
    assert!(common::wait_for(
        secs(20),
        || device_meta(&dev)["pantahub.state"] == "idle"
    ));
    assert_eq!(hub.devices(), vec![id.clone()]);
    assert_eq!(
        hub.requests_to("/trails/")
            .iter()
            .filter(|r| r.method == "POST")
            .count(),
        1
    );
    assert_eq!(fs::read_to_string(run.join("device-id")).unwrap(), id);
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

/// Containers that restart alone (a non-reboot update) and are stable after 1 s.
fn app() -> Value {
    json!({"group":"app","restart_policy":"container",
           "auto_recovery":{"policy":"on-failure","stable_timeout":1}})
}

/// The sha of the config object of container `name` in a state.
fn conf_sha(state: &Value, name: &str) -> String {
    state[format!("{name}/lxc.container.conf")]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_non_reboot_step_ends_updated_and_unchanged_containers_keep_their_pids() {
    require_containers!("hub non-reboot update");
    let s = claimed(
        &[
            Spec::new("hc3-keep", "exec sleep 3301", app()),
            Spec::new("hc3-change", "exec sleep 3302", app()),
        ],
        &[],
    );
    assert!(common::wait_for(secs(10), || Device::pids_with(
        "sleep 3301"
    )
    .len()
        == 1));
    let kept = Device::pids_with("sleep 3301");
    let pid = s.dev.d.pid();
    post_revision(
        &s,
        1,
        &[
            Spec::new("hc3-keep", "exec sleep 3301", app()),
            Spec::new("hc3-change", "exec sleep 3303", app()),
        ],
    );
    let p = wait_hub_status(&s, 1, "UPDATED", secs(60));
    assert_eq!(
        p["status-msg"],
        "Update finished, revision not set as rollback point"
    );
    assert_eq!(s.dev.d.pid(), pid, "no reboot");
    assert_eq!(Device::pids_with("sleep 3301"), kept);
    assert_eq!(Device::pids_with("sleep 3303").len(), 1);
    assert!(Device::pids_with("sleep 3302").is_empty());
}

#[test]
fn a_bad_state_is_wontgo_on_the_hub_and_never_tried_again() {
    require_containers!("hub bad state");
    let s = claimed(&[Spec::new("hc4-app", "exec sleep 3401", json!({}))], &[]);
    s.hub.post_step(
        &s.id,
        1,
        json!({"#spec":"pantavisor-service-system@1","x/run.json":{"name":3}}),
        "broken",
    );
    let p = wait_hub_status(&s, 1, "WONTGO", secs(20));
    assert_eq!(p["status-msg"], "State JSON has bad format");
    assert!(!p["logs"].as_str().unwrap_or("").is_empty(), "{p}");
    assert_eq!(s.dev.current(), "0");
    // The hub is told again (it said NEW): the device answers from its disk, it never
    // downloads or runs the step a second time.
    s.hub
        .set_step_progress(&s.id, 1, json!({"status":"NEW","progress":0}));
    let wontgo = |h: &TestHub| {
        h.progress_history(&s.id, 1)
            .iter()
            .filter(|p| p["status"] == "WONTGO")
            .count()
    };
    assert!(s.hub.wait_until(secs(10), |h| wontgo(h) >= 2));
    let tries = s
        .hub
        .progress_history(&s.id, 1)
        .iter()
        .filter(|p| p["status"] == "QUEUED")
        .count();
    assert_eq!(tries, 0);
}

#[test]
fn wrong_object_bytes_are_retried_then_the_step_is_error() {
    require_containers!("hub wrong object");
    let s = claimed(&[Spec::new("hc5-app", "exec sleep 3501", json!({}))], &[]);
    let (state, objects) = s
        .dev
        .revision_of(&[Spec::new("hc5-app", "exec sleep 3502", json!({}))]);
    let state: Value = serde_json::from_slice(&state).unwrap();
    let bad = conf_sha(&state, "hc5-app");
    for (_, bytes) in objects {
        s.hub.add_object(&bytes);
    }
    s.hub.corrupt_blob(&bad, 10);
    s.hub.post_step(&s.id, 1, state, "bad bytes");
    let p = wait_hub_status(&s, 1, "ERROR", secs(60));
    assert_eq!(p["status-msg"], "Object validation went wrong");
    let gets = s
        .hub
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/local-s3/"))
        .count();
    assert!(gets >= 3, "retried: {gets}");
    assert!(!s.dev.d.storage.join("objects").join(&bad).exists());
    assert_eq!(s.dev.current(), "0");
}

#[test]
fn a_blob_cut_half_way_resumes_with_range_from_the_cut() {
    require_containers!("hub resume");
    let s = claimed(&[Spec::new("hc6-app", "exec sleep 3601", app())], &[]);
    let (state, objects) = s
        .dev
        .revision_of(&[Spec::new("hc6-app", "exec sleep 3602", app())]);
    let state: Value = serde_json::from_slice(&state).unwrap();
    let sha = conf_sha(&state, "hc6-app");
    let size = objects.iter().find(|(s, _)| *s == sha).unwrap().1.len() as u64;
    for (_, bytes) in objects {
        s.hub.add_object(&bytes);
    }
    s.hub.cut_blob_at(&sha, size / 2);
    s.hub.post_step(&s.id, 1, state, "cut");
    wait_hub_status(&s, 1, "UPDATED", secs(60));
    let ranges: Vec<String> = s
        .hub
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/local-s3/"))
        .map(|r| {
            r.req_headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("range"))
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        })
        .collect();
    assert!(
        ranges.contains(&format!("bytes={}-", size / 2)),
        "the second request starts at the cut: {ranges:?}"
    );
    assert!(s.dev.d.storage.join("objects").join(&sha).is_file());
}

#[test]
fn a_hub_that_cannot_be_reached_after_the_switch_rolls_the_update_back() {
    require_containers!("hub not reachable");
    let s = claimed(&[Spec::new("hc7-app", "exec sleep 3701", json!({}))], &[]);
    let state = post_revision(&s, 1, &[Spec::new("hc7-app", "exec sleep 3702", json!({}))]);
    // The hub goes away once the last object is on the device, before the switch (the old
    // container's stop alone takes a second).
    let new_object = s
        .dev
        .d
        .storage
        .join("objects")
        .join(conf_sha(&state, "hc7-app"));
    assert!(
        common::wait_for(secs(60), || new_object.is_file()),
        "{}",
        s.dev.d.log_text()
    );
    s.hub.set_down(true);
    assert!(common::wait_for(secs(60), || disk_status(&s.dev, "1").0 == "ERROR"));
    assert_eq!(disk_status(&s.dev, "1").1, "Hub not reachable");
    assert!(common::wait_for(secs(30), || s.dev.current() == "0"));
    // Back online, the hub learns the truth from the device's disk.
    s.hub.set_down(false);
    let p = wait_hub_status(&s, 1, "ERROR", secs(30));
    assert_eq!(p["status-msg"], "Hub not reachable");
}

#[test]
fn a_hub_failing_during_testing_rolls_the_update_back() {
    require_containers!("hub unstable");
    let s = claimed(
        &[Spec::new("hc8-app", "exec sleep 3801", json!({}))],
        &["PV_UPDATER_COMMIT_DELAY=8"],
    );
    post_revision(&s, 1, &[Spec::new("hc8-app", "exec sleep 3802", json!({}))]);
    assert!(
        common::wait_for(secs(60), || disk_status(&s.dev, "1").0 == "TESTING"),
        "{}",
        s.dev.d.log_text()
    );
    s.hub.fail("/", 500, None);
    assert!(common::wait_for(secs(30), || disk_status(&s.dev, "1").0 == "ERROR"));
    assert_eq!(disk_status(&s.dev, "1").1, "Hub communication not stable");
    assert!(common::wait_for(secs(30), || s.dev.current() == "0"));
    s.hub.clear_faults();
    let p = wait_hub_status(&s, 1, "ERROR", secs(30));
    assert_eq!(p["status-msg"], "Hub communication not stable");
}

#[test]
fn user_meta_travels_both_ways_within_an_interval() {
    require_containers!("hub user meta");
    let s = claimed(&[Spec::new("hc9-app", "exec sleep 3901", json!({}))], &[]);
    s.hub
        .set_user_meta(&s.id, json!({"greeting":"hello","cfg":{"a":1}}));
    assert!(common::wait_for(secs(5), || {
        let m = s.dev.d.get("/user-meta").json();
        m["greeting"] == "hello" && m["cfg"] == json!({"a": 1})
    }));
    assert_eq!(
        fs::read_to_string(s.dev.d.rundir.join("user-meta/greeting")).unwrap_or_default(),
        "hello"
    );
    // A key the hub drops is dropped on the device.
    s.hub.set_user_meta(&s.id, json!({"cfg":{"a":2}}));
    assert!(common::wait_for(secs(5), || {
        let m = s.dev.d.get("/user-meta").json();
        m.get("greeting").is_none() && m["cfg"] == json!({"a": 2})
    }));
    // Device meta set on the device reaches the hub.
    let r = s.dev.d.put("/device-meta/site", b"lab-3");
    assert_eq!(r.status, 200);
    assert!(
        s.hub
            .wait_until(secs(5), |h| h.device_meta(&s.id)["site"] == "lab-3")
    );
}

#[test]
fn user_meta_is_asked_with_the_hubs_etag_and_a_change_still_arrives() {
    require_containers!("hub user meta etag");
    let hub = TestHub::start_with(HubOpts {
        etag_user_meta: true,
        go_chunking: true,
        ..HubOpts::default()
    });
    let s = claimed_on(
        hub,
        &[Spec::new("hc15-app", "exec sleep 3951", json!({}))],
        &[],
    );
    s.hub.set_user_meta(&s.id, json!({"greeting":"hello"}));
    assert!(common::wait_for(secs(5), || {
        s.dev.d.get("/user-meta").json()["greeting"] == "hello"
    }));
    // Unchanged: the polls that follow are conditional and cost the hub a 304 each.
    let path = format!("/devices/{}/user-meta", s.id);
    assert!(s.hub.wait_until(secs(10), |h| {
        h.requests_to(&path)
            .iter()
            .filter(|r| r.status == 304)
            .count()
            >= 3
    }));
    let polls = s.hub.requests_to(&path);
    let last = polls.last().unwrap();
    assert!(last.header("If-None-Match").is_some(), "{last:?}");
    assert_eq!(last.resp_len, 0);
    // A change on the hub changes the tag: the device gets it within an interval or two.
    s.hub.set_user_meta(&s.id, json!({"greeting":"bye"}));
    assert!(common::wait_for(secs(5), || {
        s.dev.d.get("/user-meta").json()["greeting"] == "bye"
    }));
}

#[test]
fn an_expired_token_mid_update_logs_in_again_and_the_update_finishes() {
    require_containers!("hub token expiry");
    let s = claimed(&[Spec::new("hc10-app", "exec sleep 4001", app())], &[]);
    s.hub.stall("/local-s3/", Duration::from_millis(1500));
    post_revision(&s, 1, &[Spec::new("hc10-app", "exec sleep 4002", app())]);
    assert!(
        s.hub
            .wait_until(secs(30), |h| !h.requests_to("/local-s3/").is_empty())
    );
    s.hub.expire_all_tokens();
    let p = wait_hub_status(&s, 1, "UPDATED", secs(60));
    assert_eq!(p["status"], "UPDATED");
    let logins = s.hub.requests_to("/auth/login").len();
    assert!(logins >= 2, "logged in again: {logins}");
}

#[test]
fn the_hub_certificate_and_name_are_verified_unless_insecure_is_asked_for() {
    require_containers!("hub certificates");
    for (opts, why) in [
        (
            HubOpts {
                wrong_name: true,
                ..HubOpts::default()
            },
            "a certificate for another name",
        ),
        (
            HubOpts {
                expired: true,
                ..HubOpts::default()
            },
            "an expired certificate",
        ),
    ] {
        let (hub, dev, _dir) = boot(
            TestHub::start_with(opts),
            &[Spec::new("hc11-app", "exec sleep 4101", json!({}))],
            &[],
        );
        assert!(
            hub.wait_for_device(secs(4)).is_none(),
            "registered with {why}"
        );
        assert!(
            dev.d.log_text().contains("TLS"),
            "{why}: {}",
            dev.d.log_text()
        );
    }
    // A hub whose CA is not among the trusted ones, reached only in insecure mode, which
    // warns at every connection.
    let hub = real_hub();
    let dir = TempDir::new("hub");
    let mut sets = hub_sets(&hub, &dir);
    sets.retain(|s| !s.starts_with("PV_LIBTHTTP_CERTSDIR="));
    sets.push(format!("PV_LIBTHTTP_CERTSDIR={}", dir.path().display()));
    let strict: Vec<&str> = sets.iter().map(String::as_str).collect();
    let spec = [Spec::new("hc11-app", "exec sleep 4102", json!({}))];
    let dev = Device::boot_with_opts(&spec, &strict, &json!({}), Opts::default());
    assert!(hub.wait_for_device(secs(4)).is_none());
    drop(dev);
    sets.push("TERN_HUB_INSECURE=1".into());
    let insecure: Vec<&str> = sets.iter().map(String::as_str).collect();
    let dev = Device::boot_with_opts(&spec, &insecure, &json!({}), Opts::default());
    assert!(hub.wait_for_device(secs(20)).is_some());
    assert!(dev.d.log_text().contains("WITHOUT verifying"));
}

/// `curl` against the v1 API: (status, body).
fn v1(port: u16, key: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-X", method])
        .args(["-H", "Content-Type: application/json", "--data", body])
        .arg(format!("http://127.0.0.1:{port}{path}?apikey={key}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn v1_update_polls_at_once_and_v1_device_follows_the_download() {
    require_containers!("hub v1 update");
    let port = common::free_port();
    let addr = format!("TERN_V1_ADDRESS=127.0.0.1:{port}");
    // A steps poll once a minute: only POST /v1/update can make the step start soon.
    let (hub, dev, dir) = boot(
        real_hub(),
        &[Spec::new("hc12-app", "exec sleep 4201", app())],
        &[&addr, "PH_UPDATER_INTERVAL=60"],
    );
    let id = hub.wait_for_device(secs(20)).expect("the device registers");
    let key = fs::read_to_string(dev.d.storage.join("cache/v1-api-key")).unwrap();
    assert!(hub.claim(&id));
    // The claim check waits for its minute too: /v1/update asks the hub now.
    assert_eq!(v1(port, &key, "POST", "/v1/update", "{}").0, 202);
    assert!(
        hub.wait_until(secs(20), |h| h.trail(&id).is_some()),
        "{}",
        dev.d.log_text()
    );
    assert!(common::wait_for(secs(20), || {
        device_meta(&dev)["pantahub.state"] == "idle"
    }));
    let s = Setup {
        hub,
        dev,
        id,
        _dir: dir,
    };
    let (_, before) = v1(port, &key, "GET", "/v1/device", "");
    let before: Value = serde_json::from_str(&before).unwrap();
    assert_eq!(before["update_pending"], false);
    assert_eq!(before["download_progress"], Value::Null);
    post_revision(&s, 1, &[Spec::new("hc12-app", "exec sleep 4202", app())]);
    std::thread::sleep(secs(2));
    assert!(
        s.hub.progress(&s.id, 1).is_none(),
        "nothing before the next poll"
    );
    assert_eq!(v1(port, &key, "POST", "/v1/update", "{}").0, 202);
    wait_hub_status(&s, 1, "UPDATED", secs(20));
    let (_, after) = v1(port, &key, "GET", "/v1/device", "");
    let after: Value = serde_json::from_str(&after).unwrap();
    assert_eq!(after["update_failed"], false);
    assert_eq!(after["update_pending"], false);
}

#[test]
fn a_local_revision_stays_off_the_hub_until_go_remote() {
    require_containers!("hub go remote");
    let s = claimed(&[Spec::new("hc13-app", "exec sleep 4301", json!({}))], &[]);
    s.dev
        .install("v2", &[Spec::new("hc13-app", "exec sleep 4302", json!({}))]);
    assert_eq!(s.dev.command("LOCAL_RUN_COMMIT", "locals/v2").0, 200);
    assert!(common::wait_for(secs(30), || disk_status(
        &s.dev,
        "locals/v2"
    )
    .0 == "DONE"));
    let quiet = s.hub.requests().len();
    std::thread::sleep(secs(3));
    assert_eq!(
        s.hub.requests().len(),
        quiet,
        "a local revision talked to the hub"
    );
    assert_eq!(s.dev.command("GO_REMOTE", "").0, 200);
    assert!(
        s.hub.wait_until(secs(10), |h| h.requests().len() > quiet),
        "{}",
        s.dev.d.log_text()
    );
    assert!(common::wait_for(secs(10), || {
        device_meta(&s.dev)["pantahub.state"] == "idle"
    }));
}

#[test]
fn unclaim_forgets_the_credentials_and_registers_a_new_device() {
    require_containers!("hub unclaim");
    let s = claimed(&[Spec::new("hc14-app", "exec sleep 4401", json!({}))], &[]);
    assert_eq!(s.dev.command("UNCLAIM", "").0, 200);
    let again = s.hub.wait_until(secs(20), |h| h.devices().len() == 2);
    assert!(again, "{}", s.dev.d.log_text());
    let new_id = s.hub.devices().into_iter().find(|d| *d != s.id).unwrap();
    let claimed = fs::read_to_string(s.dev.d.storage.join("config/pantahub.config")).unwrap();
    assert!(!claimed.contains(&s.id), "{claimed}");
    assert!(common::wait_for(secs(10), || {
        fs::read_to_string(s.dev.d.rundir.join("device-id")).is_ok_and(|d| d == new_id)
    }));
    assert!(common::wait_for(secs(10), || {
        device_meta(&s.dev)["pantahub.claimed"] == "0"
    }));
    // Nothing is claimed now: a second UNCLAIM has nothing to do.
    assert_eq!(s.dev.command("UNCLAIM", "").0, 204);
}
