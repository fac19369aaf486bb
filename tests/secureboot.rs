//! Signed revisions end to end: every way a signature can be wrong, refused at every place a
//! revision enters, runs or boots (PUT /steps, PUT /steps/locals, LOCAL_RUN and friends, a
//! hub step, the boot of a try, the factory), with Pantavisor's status strings; what audit
//! lets through; and that re-signing an unchanged revision restarts nothing.
//!
//! The fixtures (PKI, pvr-style signer) are `tests/common/sig.rs`. A device trusts the three
//! fixture roots (`PV_SYSTEM_ETCDIR`); its mode lives in a config file, so a test can change
//! it the way an operator would (edit, SIGHUP or reboot).
//!
//! How a bad revision reaches the later entry points, given PUT refuses it: it is stored
//! under audit (which lets everything in with a warning), then the mode is tightened (SIGHUP
//! for LOCAL_RUN; the file alone for a reboot, which reads it again); or, for the boot of a
//! try, the storage itself is tampered with while the device is off (the revision and the
//! boot record written directly), which is the attack the boot-time check exists for.

// A build without the verifier (no `sig` feature) refuses every checking mode at start: there
// is nothing here to test.
#![cfg(feature = "sig")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::device::{Device, LOCAL_UPDATES as SETS};
use common::hub::TestHub;
use common::sig::{self, Alg, SigSpec, Signer};
use common::{Opts, TempDir, run_tern, sha256_hex, wait_for};
use serde_json::{Value, json};

const VALIDATION: &str = "Signature validation failed";
const UNCOVERED: &str = "State not fully covered by signatures";

/// The one object of the test revisions.
const BLOB: &[u8] = b"a signed revision's object\n";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A revision that runs without containers: spec, groups, a JSON file and an object, all
/// under `notes/` or named by the first signature (so a strict device finds them covered).
fn base(text: &str) -> Value {
    json!({
        "#spec": "pantavisor-service-system@1",
        "device.json": {"groups": [{"name": "root", "restart_policy": "system", "timeout": 30}]},
        "notes/info.json": {"text": text},
        "notes/blob": sha256_hex(BLOB),
    })
}

/// `pvr sig add --part notes` plus `#spec` and `device.json`: covers the whole of [`base`].
fn full(signer: Signer) -> SigSpec {
    SigSpec::part("notes", signer)
        .include("#spec")
        .include("device.json")
}

fn signed(text: &str, spec: &SigSpec) -> Value {
    let mut s = base(text);
    sig::sign(&mut s, spec);
    s
}

/// One way a signed revision is wrong, and Pantavisor's status string for it (strict mode).
struct Case {
    name: &'static str,
    msg: &'static str,
    state: fn() -> Value,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "flipped byte in a covered value",
            msg: VALIDATION,
            state: || {
                let mut s = signed("signed", &full(Signer::Leaf(Alg::Es256)));
                s["notes/info.json"]["text"] = json!("signec");
                s
            },
        },
        Case {
            name: "uncovered key",
            msg: UNCOVERED,
            state: || {
                let mut s = signed("signed", &full(Signer::Leaf(Alg::Es384)));
                s["extra.json"] = json!({"unsigned": true});
                s
            },
        },
        Case {
            name: "untrusted chain",
            msg: VALIDATION,
            state: || signed("signed", &full(Signer::Untrusted)),
        },
        Case {
            name: "expired leaf",
            msg: VALIDATION,
            state: || signed("signed", &full(Signer::Expired)),
        },
        Case {
            name: "typ is not PVS",
            msg: VALIDATION,
            state: || signed("signed", &full(Signer::Leaf(Alg::Rs256)).typ("JWT")),
        },
        Case {
            name: "unknown alg",
            msg: VALIDATION,
            state: || signed("signed", &full(Signer::Leaf(Alg::Es256)).alg("ES512")),
        },
        Case {
            name: "only a jwk",
            msg: VALIDATION,
            state: || signed("signed", &full(Signer::Leaf(Alg::Es256)).jwk_only()),
        },
        Case {
            name: "header without exclude",
            msg: VALIDATION,
            state: || signed("signed", &full(Signer::Leaf(Alg::Es256)).no_exclude()),
        },
    ]
}

/// The device's trust and config file (mode and etc dir), outside its storage.
struct Trust {
    dir: TempDir,
}

impl Trust {
    fn new(mode: &str) -> Trust {
        let t = Trust {
            dir: TempDir::new("sb-etc"),
        };
        let roots: Vec<PathBuf> = Alg::ALL.iter().map(|a| sig::pki().root(*a)).collect();
        sig::pki().install_trust(t.dir.path(), &roots, None);
        t.set_mode(mode);
        t
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("tern.config")
    }

    /// Rewrite the config file (the daemon reads it at start, on SIGHUP and after a reboot).
    fn set_mode(&self, mode: &str) {
        let text = format!(
            "PV_SECUREBOOT_MODE={mode}\nPV_SYSTEM_ETCDIR={}\n",
            self.dir.path().display()
        );
        fs::write(self.config(), text).unwrap();
    }

    fn opts(&self) -> Opts {
        Opts::default()
            .arg("--config")
            .arg(self.config().to_str().unwrap())
    }
}

/// The factory of the test devices: [`base`] without its object, signed whole, so it boots
/// in every mode (strict refuses an unsigned factory).
fn factory_state() -> Value {
    let mut b = base("factory");
    b.as_object_mut().unwrap().remove("notes/blob");
    sig::fully_signed(b, Signer::Leaf(Alg::Es256), &["notes"])
}

/// A device with no containers on [`factory_state`], holding the object of [`base`].
fn device(trust: &Trust) -> Device {
    let dev = Device::boot_with_opts(&[], SETS, &factory_state(), trust.opts());
    upload_blob(&dev);
    dev
}

fn upload_blob(dev: &Device) {
    let r = dev.d.put(&format!("/objects/{}", sha256_hex(BLOB)), BLOB);
    assert_eq!(r.status, 200, "{}", r.text());
}

fn put_state(dev: &Device, rev: &str, state: &Value) -> (u16, String) {
    dev.d
        .put(&format!("/steps/{rev}"), state.to_string().as_bytes())
        .sb()
}

/// SIGHUP, and wait until the daemon says it read the config again.
fn sighup(dev: &Device) {
    let before = dev
        .d
        .log_text()
        .matches("config: reloaded on SIGHUP")
        .count();
    dev.d.signal(1);
    assert!(wait_for(secs(10), || {
        dev.d
            .log_text()
            .matches("config: reloaded on SIGHUP")
            .count()
            > before
    }));
}

/// Device meta `pantavisor.secureboot` (a JSON value, embedded as such).
fn secureboot_meta(dev: &Device) -> Value {
    dev.d.get("/device-meta").json()["pantavisor.secureboot"].clone()
}

/// Run `rev` (already stored) and wait for it to be committed.
fn run_to_done(dev: &Device, rev: &str) {
    assert_eq!(dev.command("LOCAL_RUN", rev).0, 200);
    dev.wait_progress(rev, "DONE", secs(30));
    assert_eq!(dev.current(), rev);
}

#[test]
fn a_correctly_signed_revision_goes_in_and_runs_in_every_mode() {
    require_containers!("signed revision runs");
    let modes = ["disabled", "audit", "lenient", "strict"];
    for (mode, alg) in modes
        .iter()
        .zip([Alg::Es256, Alg::Es384, Alg::Rs256, Alg::Es256])
    {
        let trust = Trust::new(mode);
        let dev = device(&trust);
        let state = sig::fully_signed(base(mode), Signer::Leaf(alg), &["notes"]);
        assert_eq!(
            put_state(&dev, "locals/good", &state),
            (200, String::new()),
            "{mode}"
        );
        run_to_done(&dev, "locals/good");
        assert_eq!(dev.d.get("/steps/current").json(), state, "{mode}");
        if *mode != "disabled" {
            assert_eq!(
                secureboot_meta(&dev),
                json!({"mode": mode, "findings": []}),
                "{mode}"
            );
        }
    }
}

#[test]
fn a_pretty_printed_signed_state_verifies_in_strict_mode() {
    require_containers!("pretty signed state");
    let trust = Trust::new("strict");
    let dev = device(&trust);
    let state = sig::fully_signed(base("pretty"), Signer::Leaf(Alg::Es384), &["notes"]);
    let r = dev
        .d
        .put("/steps/locals/pretty", sig::pretty(&state).as_bytes());
    assert_eq!(r.sb(), (200, String::new()));
    run_to_done(&dev, "locals/pretty");
}

/// The 422 a refused upload gets, and nothing of it on disk.
fn assert_put_refused(dev: &Device, rev: &str, case: &Case, msg: &str) {
    let (status, body) = put_state(dev, rev, &(case.state)());
    println!(
        "observed | {} | PUT /steps/{rev} | {status} {body}",
        case.name
    );
    assert_eq!(status, 422, "{}: PUT /steps/{rev}: {body}", case.name);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({ "Error": format!("Secureboot: {msg}") }),
        "{}",
        case.name
    );
    assert!(
        !dev.d.storage.join("trails").join(rev).exists(),
        "{}: {rev} was kept",
        case.name
    );
    assert_eq!(dev.d.get(&format!("/steps/{rev}")).status, 404);
}

#[test]
fn put_steps_refuses_each_bad_signature_with_422_and_keeps_nothing() {
    require_containers!("PUT refusals");
    for mode in ["strict", "lenient"] {
        let trust = Trust::new(mode);
        let dev = device(&trust);
        for (i, case) in cases().iter().enumerate() {
            if mode == "lenient" && case.msg == UNCOVERED {
                // Lenient asks only that the signatures present verify.
                let (status, body) = put_state(&dev, "locals/uncovered", &(case.state)());
                assert_eq!((status, body.as_str()), (200, ""), "{}", case.name);
                continue;
            }
            assert_put_refused(&dev, &format!("locals/bad{i}"), case, case.msg);
        }
        assert_eq!(dev.current(), "0");
        let log = dev.d.log_text();
        for line in log.lines().filter(|l| l.contains("secureboot: PUT /steps")) {
            println!("observed log ({mode}) | {line}");
        }
        assert!(log.contains("_sigs/notes.json: "), "{log}");
        assert!(
            mode == "lenient" || log.contains("extra.json is not covered by any signature"),
            "{log}"
        );
    }
}

#[test]
fn audit_lets_each_bad_signature_through_with_a_warning_and_lists_it_in_device_meta() {
    require_containers!("audit");
    let trust = Trust::new("audit");
    let dev = device(&trust);
    for (i, case) in cases().iter().enumerate() {
        let rev = format!("locals/audit{i}");
        assert_eq!(
            put_state(&dev, &rev, &(case.state)()),
            (200, String::new()),
            "{}",
            case.name
        );
    }
    let log = dev.d.log_text();
    let warnings = log
        .lines()
        .filter(|l| l.contains("in secureboot audit mode, so we will pass the bad signatures"))
        .count();
    assert_eq!(warnings, cases().len(), "{log}");
    // The last one runs (in audit a reboot's boot check lets it through too) and device meta
    // names what its signature lacks.
    let last = format!("locals/audit{}", cases().len() - 1);
    run_to_done(&dev, &last);
    let meta = secureboot_meta(&dev);
    assert_eq!(meta["mode"], "audit");
    let findings = meta["findings"].as_array().unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f.as_str().unwrap().starts_with("_sigs/notes.json: ")),
        "{meta}"
    );
}

#[test]
fn local_run_of_a_stored_bad_revision_is_accepted_then_wontgo() {
    require_containers!("LOCAL_RUN refusals");
    // Every op that runs a stored revision checks it first.
    let ops = ["LOCAL_RUN", "LOCAL_RUN_COMMIT", "TRY_ONCE", "LOCAL_APPLY"];
    let trust = Trust::new("audit");
    let dev = device(&trust);
    for (i, case) in cases().iter().enumerate() {
        for op in ops {
            let (status, _) = put_state(&dev, &format!("locals/{op}-{i}"), &(case.state)());
            assert_eq!(status, 200, "{}", case.name);
        }
    }
    trust.set_mode("strict");
    sighup(&dev);
    let all = cases();
    for ((i, case), op) in all.iter().enumerate().flat_map(|c| ops.map(|op| (c, op))) {
        let rev = format!("locals/{op}-{i}");
        assert_eq!(dev.command(op, &rev), (200, String::new()), "{}", case.name);
        let (_, msg) = dev.wait_progress(&rev, "WONTGO", secs(10));
        println!(
            "observed | {} | {op} | 200, progress WONTGO {msg}",
            case.name
        );
        assert_eq!(msg, case.msg, "{}: {op}", case.name);
        assert_eq!(dev.current(), "0", "{}: {op}", case.name);
    }
}

/// Write revision `rev` and a boot record that tries it, straight into a stopped device's
/// storage (what someone with the SD card in hand can do).
fn plant_try(storage: &Path, rev: &str, state: &Value) {
    let dir = storage.join("trails").join(rev);
    fs::create_dir_all(dir.join(".pvr")).unwrap();
    fs::create_dir_all(dir.join(".pv")).unwrap();
    fs::write(dir.join(".pvr/json"), state.to_string()).unwrap();
    fs::write(
        dir.join(".pv/progress"),
        r#"{"status":"INPROGRESS","status-msg":"Rebooting","progress":50}"#,
    )
    .unwrap();
    fs::create_dir_all(storage.join("boot")).unwrap();
    let env = json!({"rev": "0", "try": rev, "tried": false, "once": false});
    fs::write(storage.join("boot/tern.json"), env.to_string()).unwrap();
}

#[test]
fn the_boot_of_a_planted_try_with_a_bad_signature_is_error_and_rolls_back() {
    require_containers!("try boot refusals");
    let trust = Trust::new("strict");
    let mut dev = device(&trust);
    for (i, case) in cases().iter().enumerate() {
        let rev = format!("locals/try{i}");
        dev.d.stop();
        plant_try(&dev.d.storage, &rev, &(case.state)());
        dev.d.spawn();
        let (_, msg) = dev.wait_progress(&rev, "ERROR", secs(10));
        println!(
            "observed | {} | try boot | progress ERROR {msg}, current {}",
            case.name,
            dev.current()
        );
        assert_eq!(msg, case.msg, "{}", case.name);
        assert_eq!(dev.current(), "0", "{}", case.name);
        let env: Value =
            serde_json::from_slice(&fs::read(dev.d.storage.join("boot/tern.json")).unwrap())
                .unwrap();
        assert_eq!(env["try"], Value::Null, "{}: the try is over", case.name);
    }
}

#[test]
fn a_reboot_transition_into_a_revision_the_tightened_mode_refuses_rolls_back() {
    require_containers!("reboot into refused");
    let trust = Trust::new("audit");
    let dev = device(&trust);
    let case = &cases()[0];
    assert_eq!(put_state(&dev, "locals/r", &(case.state)()).0, 200);
    // The operator tightens the mode in the file; the running daemon has not read it yet,
    // the reboot will.
    trust.set_mode("strict");
    assert_eq!(dev.command("LOCAL_RUN_COMMIT", "locals/r").0, 200);
    let (_, msg) = dev.wait_progress("locals/r", "ERROR", secs(30));
    assert_eq!(msg, VALIDATION);
    assert_eq!(dev.current(), "0");
}

#[test]
fn a_factory_with_a_bad_signature_stops_the_start() {
    let trust = Trust::new("strict");
    let run = |mode: &str, state: &Value| {
        trust.set_mode(mode);
        let work = TempDir::new("sb-factory");
        let factory = work.path().join("factory");
        fs::create_dir_all(factory.join("objects")).unwrap();
        fs::write(factory.join("objects").join(sha256_hex(BLOB)), BLOB).unwrap();
        fs::write(factory.join("json"), state.to_string()).unwrap();
        let storage = work.path().join("storage");
        let out = run_tern(
            &[
                "daemon",
                "--storage",
                storage.to_str().unwrap(),
                "--rundir",
                work.path().join("run").to_str().unwrap(),
                "--config",
                trust.config().to_str().unwrap(),
                "--factory",
                factory.to_str().unwrap(),
            ],
            &[("TERN_HUB", "off")],
        );
        let log = fs::read_to_string(storage.join("logs/tern.log")).unwrap_or_default();
        let started = storage.join("trails/0").exists();
        (out, log, started)
    };
    for case in cases() {
        for mode in ["lenient", "strict"] {
            if mode == "lenient" && case.msg == UNCOVERED {
                continue;
            }
            let (out, log, started) = run(mode, &(case.state)());
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().last().unwrap_or_default();
            println!(
                "observed | {} | factory ({mode}) | exit {:?}: {last}",
                case.name,
                out.status.code()
            );
            assert_eq!(
                out.status.code(),
                Some(1),
                "{} ({mode}): {stderr}",
                case.name
            );
            assert!(
                stderr.contains(case.msg),
                "{} ({mode}): {stderr}",
                case.name
            );
            assert!(log.contains(case.msg), "{} ({mode}): {log}", case.name);
            assert!(!started, "{} ({mode}): revision 0 was seeded", case.name);
        }
    }
    // Strict wants every key signed: an unsigned factory does not start either.
    let (out, _, started) = run("strict", &base("unsigned"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(UNCOVERED));
    assert!(!started);
}

#[test]
fn a_correctly_signed_factory_starts_in_strict_mode() {
    require_containers!("signed factory");
    let trust = Trust::new("strict");
    let state = factory_state();
    let dev = Device::boot_with_opts(&[], SETS, &state, trust.opts());
    assert_eq!(dev.current(), "0");
    assert_eq!(dev.d.get("/steps/0").json(), state);
}

/// A device the test hub has claimed, in `mode`, with the fixture trust.
fn hub_device(hub: &TestHub, trust: &Trust, dir: &TempDir) -> (Device, String) {
    let mut sets: Vec<String> = hub.device_sets(dir.path());
    sets.extend(
        [
            "PH_UPDATER_INTERVAL=1",
            "PH_METADATA_DEVMETA_INTERVAL=1",
            "TERN_HUB_REQUEST_TIMEOUT=3",
        ]
        .map(String::from),
    );
    // Remote mode (PV_CONTROL_REMOTE=1, the default): the hub client runs.
    let local = |s: &&str| s.starts_with("PV_CONTROL_REMOTE");
    sets.extend(SETS.iter().filter(|s| !local(s)).map(|s| s.to_string()));
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let dev = Device::boot_with_opts(&[], &sets, &factory_state(), trust.opts());
    let id = hub.wait_for_device(secs(20));
    let id = id.unwrap_or_else(|| panic!("the device registers:\n{}", dev.d.log_text()));
    assert!(hub.claim(&id));
    assert!(hub.wait_until(secs(30), |h| h.trail(&id).is_some()));
    (dev, id)
}

#[test]
fn a_hub_step_with_a_bad_signature_is_wontgo_before_any_download() {
    require_containers!("hub step refusals");
    let hub = TestHub::start();
    let trust = Trust::new("strict");
    let dir = TempDir::new("sb-hub");
    let (dev, id) = hub_device(&hub, &trust, &dir);
    let sha = hub.add_object(BLOB);
    for (i, case) in cases().iter().enumerate() {
        let rev = i as u64 + 1;
        hub.post_step(&id, rev, (case.state)(), case.name);
        let ok = hub.wait_until(secs(20), |h| {
            h.progress(&id, rev)
                .is_some_and(|p| p["status"] == "WONTGO")
        });
        assert!(
            ok,
            "{}: {:?}\n{}",
            case.name,
            hub.progress(&id, rev),
            dev.d.log_text()
        );
        let p = hub.progress(&id, rev).unwrap();
        println!(
            "observed | {} | hub step | {} {}",
            case.name, p["status"], p["status-msg"]
        );
        assert_eq!(p["status-msg"], case.msg, "{}", case.name);
        assert_eq!(dev.progress(&rev.to_string()).1, case.msg, "{}", case.name);
        assert_eq!(dev.current(), "0", "{}", case.name);
    }
    let fetched: Vec<String> = hub
        .requests()
        .into_iter()
        .map(|r| r.path)
        .filter(|p| p.contains(&sha))
        .collect();
    assert!(
        fetched.is_empty(),
        "objects of refused steps asked for: {fetched:?}"
    );
}

#[test]
fn a_hub_step_signed_right_downloads_and_runs_in_strict_mode() {
    require_containers!("hub signed step");
    let hub = TestHub::start();
    let trust = Trust::new("strict");
    let dir = TempDir::new("sb-hub-ok");
    let (dev, id) = hub_device(&hub, &trust, &dir);
    hub.add_object(BLOB);
    let state = sig::fully_signed(base("hub"), Signer::Leaf(Alg::Rs256), &["notes"]);
    hub.post_step(&id, 1, state, "signed");
    dev.wait_progress("1", "DONE", secs(40));
    assert_eq!(dev.current(), "1");
}

#[test]
fn resigning_an_unchanged_revision_restarts_no_container() {
    use common::rootfs::Spec;
    require_containers!("re-signed revision");
    let trust = Trust::new("lenient");
    let specs = [Spec::new("sb-app", "exec sleep 3771", json!({}))];
    let dev = Device::boot_with_opts(&specs, SETS, &json!({}), trust.opts());
    dev.wait_status("sb-app", "STARTED", secs(20));
    assert!(wait_for(secs(10), || Device::pids_with("sleep 3771").len() == 1));
    let pids = Device::pids_with("sleep 3771");
    let daemon = dev.d.pid();
    let (state, _) = dev.revision_of(&specs);
    let state: Value = serde_json::from_slice(&state).unwrap();
    // Signed once, then again: ECDSA makes a different signature each time.
    for (i, name) in ["locals/signed", "locals/resigned"].iter().enumerate() {
        let mut s = state.clone();
        sig::sign(&mut s, &SigSpec::raw("all", Signer::Leaf(Alg::Es256)));
        assert_eq!(put_state(&dev, name, &s), (200, String::new()), "{i}");
        assert_eq!(dev.command("LOCAL_RUN", name).0, 200);
        let (status, _) = dev.wait_progress(name, "UPDATED", secs(30));
        assert_eq!(status, "UPDATED", "a non-reboot update");
        assert_eq!(dev.current(), *name);
        assert_eq!(Device::pids_with("sleep 3771"), pids, "{name}: restarted");
    }
    assert_eq!(dev.d.pid(), daemon);
    let log = dev.d.log_text();
    assert!(!log.contains(": reboot transition"), "{log}");
}

#[test]
fn the_trust_is_read_at_start_and_on_sighup_not_per_request() {
    require_containers!("trust reload");
    let trust = Trust::new("strict");
    let dev = device(&trust);
    let state = sig::fully_signed(base("reload"), Signer::Leaf(Alg::Es384), &["notes"]);
    assert_eq!(put_state(&dev, "locals/a", &state).0, 200);
    // The P-384 root leaves the device's store: nothing changes until SIGHUP.
    let roots = [sig::pki().root(Alg::Es256), sig::pki().root(Alg::Rs256)];
    sig::pki().install_trust(trust.dir.path(), &roots, None);
    assert_eq!(put_state(&dev, "locals/b", &state).0, 200);
    sighup(&dev);
    assert_eq!(
        put_state(&dev, "locals/c", &state),
        (422, format!(r#"{{"Error":"Secureboot: {VALIDATION}"}}"#))
    );
}

#[test]
fn a_committed_revision_the_trust_no_longer_accepts_runs_nothing_but_the_api_serves() {
    require_containers!("committed refused");
    let trust = Trust::new("strict");
    let mut dev = device(&trust);
    assert_eq!(dev.d.get("/containers").status, 200);
    // The factory's signer (P-256) is no longer trusted when the device starts again.
    dev.d.stop();
    let roots = [sig::pki().root(Alg::Es384)];
    sig::pki().install_trust(trust.dir.path(), &roots, None);
    dev.d.spawn();
    let r = dev.d.get("/containers");
    assert_eq!(r.sb(), (500, r#"{"Error":"State not loaded yet"}"#.into()));
    let log = dev.d.log_text();
    assert!(
        log.contains(
            "revision 0: secureboot (strict): Signature validation failed; no container runs"
        ),
        "{log}"
    );
}
