//! A power cut at every durable step of a remote update. One claimed device takes one hub
//! step after another; for step N the daemon is started with `TERN_TEST_CRASH_AFTER=N` (see
//! `src/store/crash_points.rs`) and kills itself at its N-th durable step, counted from that
//! start and across the reboot the update asks for (`TERN_DEV_REBOOT=exit`, the test starting
//! it again as a bootloader would). Started again without the crash, the device must boot,
//! finish or roll back the update, and leave the hub with the same final progress as its disk.
//! Needs what the container tests need.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use common::device::Device;
use common::hub::{HubOpts, TestHub};
use common::rootfs::Spec;
use common::{Opts, TempDir, wait_for};
use serde_json::{Value, json};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn is_final(s: &str) -> bool {
    matches!(s, "DONE" | "UPDATED" | "ERROR" | "WONTGO")
}

struct Rig {
    hub: TestHub,
    dev: Device,
    id: String,
    _dir: TempDir,
}

impl Rig {
    fn new() -> Rig {
        let hub = TestHub::start_with(HubOpts {
            go_chunking: true,
            ..HubOpts::default()
        });
        let dir = TempDir::new("hubcrash");
        let mut sets = hub.device_sets(dir.path());
        sets.extend([
            "PH_UPDATER_INTERVAL=1".into(),
            "PH_METADATA_USRMETA_INTERVAL=5".into(),
            "PH_METADATA_DEVMETA_INTERVAL=5".into(),
            "PH_UPDATER_NETWORK_TIMEOUT=10".into(),
            "TERN_HUB_REQUEST_TIMEOUT=3".into(),
            "TERN_DEV_REBOOT=exit".into(),
            "PV_UPDATER_COMMIT_DELAY=1".into(),
            "TERN_STOP_GRACE=1".into(),
            "PV_DEBUG_SHELL=0".into(),
            // The update's durable steps only: log push writes cursors at moments of its own
            // (its crash is tested in tests/hub_logs.rs).
            "PV_LOG_PUSH=0".into(),
        ]);
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        let dev = Device::boot_with_opts(
            &[Spec::new("hx-app", "exec sleep 6000", json!({}))],
            &sets,
            &json!({}),
            Opts::default().may_exit(),
        );
        let id = hub.wait_for_device(secs(20)).expect("registers");
        assert!(hub.claim(&id));
        assert!(hub.wait_until(secs(30), |h| h.trail(&id).is_some()));
        Rig {
            hub,
            dev,
            id,
            _dir: dir,
        }
    }

    fn crash_points_in(&self, from: usize) -> u64 {
        self.dev.d.log_text()[from..]
            .lines()
            .filter(|l| l.contains("store: crash point ") && l.contains(" reached: "))
            .count() as u64
    }

    /// (Re)start with the crash set at `n` (0: count only).
    fn start(&mut self, n: u64) {
        let env = &mut self.dev.d.opts.env;
        env.retain(|(k, _)| k != "TERN_TEST_CRASH_AFTER");
        env.push(("TERN_TEST_CRASH_AFTER".into(), n.to_string()));
        self.dev.d.spawn();
    }

    /// Keep the daemon running as a bootloader would (a reboot is exit 3) until `done`
    /// holds; true when it was killed at its crash point first.
    fn drive(&mut self, n: u64, from: usize, done: impl Fn(&Rig) -> bool) -> bool {
        let until = Instant::now() + secs(90);
        while Instant::now() < until {
            if let Some(child) = self.dev.d.child.as_mut()
                && let Some(st) = child.try_wait().unwrap()
            {
                self.dev.d.child = None;
                if st.signal() == Some(9) {
                    return true;
                }
                assert_eq!(st.code(), Some(3), "{}", self.dev.d.log_text());
                let left = if n == 0 {
                    0
                } else {
                    n.saturating_sub(self.crash_points_in(from))
                };
                self.start(left.max(u64::from(n != 0)));
                continue;
            }
            if done(self) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("rev did not end:\n{}", self.dev.d.log_text());
    }

    fn disk(&self, rev: u64) -> String {
        self.dev
            .d
            .try_request("GET", &format!("/steps/{rev}/progress"), b"")
            .and_then(|(s, b)| (s == 200).then_some(b))
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|p| p["status"].as_str().map(str::to_string))
            .unwrap_or_default()
    }

    fn hub_status(&self, rev: u64) -> String {
        self.hub
            .progress(&self.id, rev)
            .and_then(|p| p["status"].as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// The revision's end is final on the device and the hub says the same.
    fn settled(&self, rev: u64) -> bool {
        let disk = self.disk(rev);
        is_final(&disk) && self.hub_status(rev) == disk
    }

    /// One update: step `rev`, the daemon crashing at point `n`. Returns the points used
    /// when it did not crash (the counting run).
    fn update(&mut self, rev: u64, n: u64) -> u64 {
        if self.dev.d.child.is_some() {
            self.dev.d.stop();
        }
        let from = self.dev.d.log_text().len();
        self.start(n);
        let spec = Spec::new("hx-app", &format!("exec sleep {}", 6000 + rev), json!({}));
        let (state, objects) = self.dev.revision_of(&[spec]);
        for (_, bytes) in objects {
            self.hub.add_object(&bytes);
        }
        let state: Value = serde_json::from_slice(&state).unwrap();
        self.hub
            .post_step(&self.id, rev, state, &format!("step {rev}"));
        let crashed = self.drive(n, from, |r| r.settled(rev));
        if !crashed {
            return self.crash_points_in(from);
        }
        // Power back: no crash this time.
        let again = self.dev.d.log_text().len();
        self.start(0);
        self.drive(0, again, |r| r.settled(rev));
        // The device boots a revision whose objects are all there.
        let current = self.dev.current();
        let state: Value = serde_json::from_slice(
            &fs::read(
                self.dev
                    .d
                    .storage
                    .join(format!("trails/{current}/.pvr/json")),
            )
            .unwrap(),
        )
        .unwrap();
        for (k, v) in state.as_object().unwrap() {
            if let Some(sha) = v.as_str().filter(|_| !k.ends_with(".json") && k != "#spec") {
                let p = self.dev.d.storage.join("objects").join(sha);
                assert!(p.is_file(), "point {n}: {k} missing in {current}");
                assert_eq!(common::sha256_hex(&fs::read(&p).unwrap()), sha);
            }
        }
        0
    }
}

#[test]
fn a_crash_at_any_durable_step_of_a_remote_update_leaves_a_device_that_boots_and_a_truthful_hub() {
    require_containers!("remote update crash points");
    let mut rig = Rig::new();
    let points = rig.update(1, 0);
    assert!(points >= 5, "the remote update has {points} durable steps");
    assert_eq!(rig.hub_status(1), "DONE");
    let mut outcomes = Vec::new();
    for n in 1..=points {
        let rev = n + 1;
        rig.update(rev, n);
        outcomes.push((n, rig.hub_status(rev)));
        assert!(wait_for(secs(5), || rig.settled(rev)));
    }
    println!("remote update crash points: {points}; outcomes {outcomes:?}");
}
