//! A power cut at every durable step of an update. The daemon counts the durable steps of
//! its storage (`TERN_TEST_CRASH_AFTER`, see `src/store/crash_points.rs`); a first run of the
//! whole flow only counts them, then the flow is run once per step N with the daemon killing
//! itself with SIGKILL at step N, across the reboot it asks for. After each crash the device is
//! started again and must boot, run a revision whose objects are all there and intact, report
//! a final and truthful progress for the update, and keep every write it acknowledged.
//!
//! The flow: upload the objects of an update, a spare revision and an unreferenced object,
//! PUT both revisions, LOCAL_RUN the update, wait for its end, then `POST /storage/gc`. Twice:
//! a system container changes (the reboot path, with `TERN_DEV_REBOOT=exit`, the test
//! starting the daemon again as a bootloader would; ends DONE), and a `container`-policy one
//! changes (the non-reboot path; ends UPDATED, which is not a rollback point, so any restart
//! runs revision 0 again). Needs what the container tests need.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::device::Device;
use common::rootfs::{Spec, revision};
use common::{Opts, TempDir, sha256_hex};
use serde_json::{Value, json};

const SETS: &[&str] = &[
    "TERN_DEV_REBOOT=exit",
    "PV_UPDATER_COMMIT_DELAY=1",
    "TERN_STOP_GRACE=1",
    "TERN_GC_GRACE=0",
    "PV_CONTROL_REMOTE=0",
];

/// Test threads at once: each runs whole devices, one crash point after another.
const WORKERS: u64 = 3;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// How many crash points the daemon's log shows so far (over every start).
fn points_used(dev: &Device) -> u64 {
    dev.d
        .log_text()
        .lines()
        .filter(|l| l.contains("store: crash point ") && l.contains(" reached: "))
        .count() as u64
}

/// What one run of the flow saw acknowledged.
#[derive(Default)]
struct Acked {
    objects: Vec<String>,
    steps: Vec<String>,
    gc_sent: bool,
}

enum Ended {
    /// The flow ran to its end without reaching the crash point.
    Completed,
    /// Killed at the crash point.
    Crashed,
}

struct Run {
    dev: Device,
    n: u64,
    acked: Acked,
    ended: Option<Ended>,
}

impl Run {
    /// The daemon is alive, or was restarted after the reboot it asked for (exit 3). Sets
    /// `ended` when it was killed at the crash point.
    fn alive(&mut self) -> bool {
        if self.ended.is_some() {
            return false;
        }
        let Some(child) = self.dev.d.child.as_mut() else {
            return false;
        };
        match child.try_wait().unwrap() {
            None => true,
            Some(st) if st.signal() == Some(9) => {
                self.dev.d.child = None;
                self.ended = Some(Ended::Crashed);
                false
            }
            Some(st) if st.code() == Some(3) => {
                // A reboot: start again, with what is left of the count (0 = count only).
                self.dev.d.child = None;
                let left = if self.n == 0 {
                    0
                } else {
                    self.n - points_used(&self.dev)
                };
                set_crash_after(&mut self.dev, left);
                self.dev.d.spawn();
                self.alive()
            }
            Some(st) => panic!("daemon ended with {st}:\n{}", self.dev.d.log_text()),
        }
    }

    /// A request while the daemon is alive; `None` once it is gone (crashed mid-request
    /// included).
    fn request(&mut self, method: &str, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
        loop {
            if !self.alive() {
                return None;
            }
            if let Some(r) = self.dev.d.try_request(method, path, body) {
                return Some(r);
            }
            // No answer: crashed, or re-starting after a reboot; look again.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the update's progress to become final; false if the daemon went away.
    fn wait_final(&mut self, rev: &str, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            let Some((200, body)) = self.request("GET", &format!("/steps/{rev}/progress"), b"")
            else {
                if self.ended.is_some() {
                    return false;
                }
                continue;
            };
            let p: Value = serde_json::from_slice(&body).unwrap();
            if matches!(
                p["status"].as_str(),
                Some("DONE" | "UPDATED" | "ERROR" | "WONTGO")
            ) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{rev} did not end in {timeout:?}:\n{}",
            self.dev.d.log_text()
        );
    }
}

fn set_crash_after(dev: &mut Device, n: u64) {
    dev.d.opts.env.retain(|(k, _)| k != "TERN_TEST_CRASH_AFTER");
    dev.d
        .opts
        .env
        .push(("TERN_TEST_CRASH_AFTER".into(), n.to_string()));
}

#[derive(Clone, Copy)]
enum Path {
    Reboot,
    NonReboot,
}

/// The flow with the daemon set to die at crash point `n` (0: never).
fn run_flow(path: Path, n: u64) -> Run {
    // Names and markers unique per test and point: tests run side by side.
    let (name, base, run) = match path {
        Path::Reboot => (format!("cp{n}"), 26000, json!({})),
        Path::NonReboot => (
            format!("cq{n}"),
            36000,
            // Not in `app`: its 30 s stable_timeout would hold every commit back.
            json!({"restart_policy": "container"}),
        ),
    };
    let old = Spec::new(&name, &format!("exec sleep {}", base + n), run.clone());
    let new = Spec::new(
        &name,
        &format!("exec sleep {}", base + 1000 + n),
        run.clone(),
    );
    let spare = Spec::new(&name, &format!("exec sleep {}", base + 2000 + n), run);
    let opts = Opts::default()
        .may_exit()
        .env("TERN_TEST_CRASH_AFTER", &n.to_string());
    let dev = Device::boot_with_opts(&[old], SETS, &json!({}), opts);
    let mut run = Run {
        dev,
        n,
        acked: Acked::default(),
        ended: None,
    };
    let dir = TempDir::new("crash-rev");
    let (state, mut objects) = revision(dir.path(), &[new]);
    let (spare_state, spare_objects) = revision(dir.path(), &[spare]);
    objects.extend(spare_objects);
    let junk = format!("unreferenced object of run {n}").into_bytes();
    objects.push((sha256_hex(&junk), junk));
    for (sha, bytes) in &objects {
        match run.request("PUT", &format!("/objects/{sha}"), bytes) {
            Some((200, _)) => run.acked.objects.push(sha.clone()),
            Some((code, body)) => panic!("object: {code} {}", String::from_utf8_lossy(&body)),
            None => return run,
        }
    }
    for (step, body) in [("locals/spare", &spare_state), ("locals/v2", &state)] {
        match run.request("PUT", &format!("/steps/{step}"), body) {
            Some((200, _)) => run.acked.steps.push(step.to_string()),
            Some((code, body)) => panic!("{step}: {code} {}", String::from_utf8_lossy(&body)),
            None => return run,
        }
    }
    let cmd = json!({"op": "LOCAL_RUN", "payload": "locals/v2"}).to_string();
    match run.request("POST", "/commands", cmd.as_bytes()) {
        Some((200, _)) => {}
        Some((code, body)) => panic!("LOCAL_RUN: {code} {}", String::from_utf8_lossy(&body)),
        None => return run,
    }
    if !run.wait_final("locals/v2", secs(60)) {
        return run;
    }
    run.acked.gc_sent = true;
    match run.request("POST", "/storage/gc", b"") {
        Some((200, _)) => {}
        Some((code, body)) => panic!("gc: {code} {}", String::from_utf8_lossy(&body)),
        None => return run,
    }
    // Whatever is left of the count (progress writes of a late commit) must not be reached.
    if run.alive() {
        run.ended = Some(Ended::Completed);
    }
    run
}

/// After the crash: start as a bootloader would and check what the device says and holds.
fn check_after_crash(path: Path, mut run: Run) {
    let n = run.n;
    let ctx = |dev: &Device| format!("crash point {n}:\n{}", dev.d.log_text());
    set_crash_after(&mut run.dev, 0);
    let mut dev = run.dev;
    // Starting again may itself end in a reboot (a try that was about to begin): follow it.
    let until = Instant::now() + secs(60);
    let settled = loop {
        assert!(Instant::now() < until, "never settled: {}", ctx(&dev));
        if dev.d.child.is_none() {
            dev.d.spawn();
        }
        if let Some(st) = dev.d.child.as_mut().unwrap().try_wait().unwrap() {
            assert_eq!(st.code(), Some(3), "{st}: {}", ctx(&dev));
            dev.d.child = None;
            continue;
        }
        let current = dev.current();
        let progress = dev.try_get_json("/steps/locals/v2/progress");
        let status = progress
            .as_ref()
            .and_then(|p| p["status"].as_str().map(str::to_string));
        let running = dev
            .try_get_json("/containers")
            .and_then(|c| c.as_array().cloned())
            .is_some_and(|c| c.iter().all(|c| c["status"] == "STARTED") && !c.is_empty());
        let final_or_new = match status.as_deref() {
            None | Some("NEW" | "DONE" | "UPDATED" | "ERROR" | "WONTGO") => true,
            Some(_) => false,
        };
        if running && final_or_new {
            break (current, status, progress);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (current, status, progress) = settled;
    // The running revision and the update's progress agree.
    match (path, current.as_str(), status.as_deref()) {
        (Path::Reboot, "locals/v2", Some("DONE"))
        | (_, "0", None | Some("NEW" | "WONTGO"))
        | (Path::NonReboot, "0", Some("UPDATED")) => {}
        (_, "0", Some("ERROR")) => {
            let msg = progress.as_ref().unwrap()["status-msg"]
                .as_str()
                .unwrap_or("");
            assert!(!msg.is_empty(), "ERROR without a message: {}", ctx(&dev));
        }
        (_, cur, st) => panic!("running {cur} with the update {st:?}: {}", ctx(&dev)),
    }
    // DONE is the rollback point.
    // (No boot record yet: no update got as far as its try; 0 is committed.)
    let boot: Value = fs::read(dev.d.storage.join("boot/tern.json"))
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap_or(Value::Null);
    let committed = boot["rev"].as_str().unwrap_or("0").to_string();
    if status.as_deref() == Some("DONE") {
        assert_eq!(committed, "locals/v2", "{}", ctx(&dev));
    }
    // Every object the running and the committed revisions name is there, whole.
    let objects = dev.d.storage.join("objects");
    let mut needed = BTreeSet::new();
    for rev in [current.as_str(), committed.as_str()] {
        let state = dev
            .try_get_json(&format!("/steps/{rev}"))
            .unwrap_or(Value::Null);
        for v in state.as_object().into_iter().flat_map(|m| m.values()) {
            if let Some(id) = v.as_str().filter(|s| s.len() == 64) {
                needed.insert(id.to_string());
            }
        }
    }
    assert!(!needed.is_empty(), "{}", ctx(&dev));
    for id in &needed {
        let bytes = fs::read(objects.join(id))
            .unwrap_or_else(|e| panic!("object {id}: {e}: {}", ctx(&dev)));
        assert_eq!(&sha256_hex(&bytes), id, "{}", ctx(&dev));
    }
    // What was acknowledged before the crash is still there (GC may remove what nothing
    // needs once it was asked to).
    if !run.acked.gc_sent {
        for id in &run.acked.objects {
            assert!(
                objects.join(id).exists(),
                "acked object {id}: {}",
                ctx(&dev)
            );
        }
        let steps: Vec<String> = dev
            .try_get_json("/steps")
            .and_then(|s| s.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s["name"].as_str().map(str::to_string))
            .collect();
        for step in &run.acked.steps {
            assert!(steps.contains(step), "acked {step} lost: {}", ctx(&dev));
        }
    }
    // No half-written file is left visible.
    for dir in ["objects", "trails", "trails/locals"] {
        for e in fs::read_dir(dev.d.storage.join(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            let f = e.file_name().to_string_lossy().into_owned();
            assert!(!f.starts_with(".tmp"), "{dir}/{f} left: {}", ctx(&dev));
        }
    }
}

#[test]
fn a_crash_at_any_durable_step_of_a_reboot_update_leaves_a_device_that_boots_and_tells_the_truth() {
    require_containers!("crash points, reboot path");
    crash_at_every_point(Path::Reboot);
}

#[test]
fn a_crash_at_any_durable_step_of_a_non_reboot_update_leaves_a_device_that_boots_and_tells_the_truth()
 {
    require_containers!("crash points, non-reboot path");
    crash_at_every_point(Path::NonReboot);
}

fn crash_at_every_point(path: Path) {
    // Count the points of the whole flow.
    let full = run_flow(path, 0);
    assert!(
        matches!(full.ended, Some(Ended::Completed)),
        "the flow did not complete"
    );
    let total = points_used(&full.dev);
    assert!(
        total >= 20,
        "only {total} crash points:\n{}",
        full.dev.d.log_text()
    );
    drop(full);
    // Then crash at each one, a few devices at a time.
    let next = AtomicU64::new(1);
    let crashed = AtomicU64::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n > total {
                        break;
                    }
                    // CRASH_POINTS_ONLY=N (debugging): that point alone.
                    if std::env::var("CRASH_POINTS_ONLY").is_ok_and(|o| o != n.to_string()) {
                        continue;
                    }
                    let outcome = std::panic::catch_unwind(|| {
                        let run = run_flow(path, n);
                        match run.ended {
                            Some(Ended::Crashed) => {
                                check_after_crash(path, run);
                                true
                            }
                            // Timing-dependent steps (a commit a little earlier or later)
                            // can leave a run with fewer points than the counting one.
                            _ => false,
                        }
                    });
                    match outcome {
                        Ok(true) => {
                            crashed.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(false) => {}
                        Err(e) => {
                            let msg = e
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_default();
                            failures.lock().unwrap().push(format!("point {n}: {msg}"));
                        }
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    let crashed = crashed.into_inner();
    println!("crash points: {total} in the flow, {crashed} crashed at and checked");
    assert!(
        crashed * 10 >= total * 9,
        "only {crashed} of {total} points reached"
    );
}
