//! A daemon running a revision of busybox containers, for the tests that drive containers
//! and updates end to end.

use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::rootfs::{Spec, factory_with, revision};
use super::{Daemon, Opts, TempDir, wait_for};

/// Settings of a device driven by local updates: a reboot re-executes Tern in place, a try
/// commits after 1 s, containers get 1 s to stop, no hub, no debug shell.
pub const LOCAL_UPDATES: &[&str] = &[
    "TERN_DEV_REBOOT=reexec",
    "PV_UPDATER_COMMIT_DELAY=1",
    "TERN_STOP_GRACE=1",
    "PV_CONTROL_REMOTE=0",
    "PV_DEBUG_SHELL=0",
];

/// A daemon on a fresh storage whose factory revision holds `containers`; stopped with
/// SIGTERM on drop so no container outlives a test.
pub struct Device {
    pub d: Daemon,
    _factory: TempDir,
}

impl Device {
    pub fn boot(containers: &[Spec], sets: &[&str]) -> Device {
        Device::boot_with(containers, sets, &json!({}))
    }

    /// The same with more top-level state entries (a BSP's `drivers.json`, …).
    pub fn boot_with(containers: &[Spec], sets: &[&str], extra: &Value) -> Device {
        Device::boot_with_opts(containers, sets, extra, Opts::default())
    }

    /// As [`Device::boot_with`], starting from `base` options.
    pub fn boot_with_opts(containers: &[Spec], sets: &[&str], extra: &Value, base: Opts) -> Device {
        let f = TempDir::new("factory");
        let dir = factory_with(f.path(), containers, extra);
        let mut opts = base
            .arg("--factory")
            .arg(dir.to_str().unwrap())
            .set("PV_LOG_LEVEL=4");
        for s in sets {
            opts = opts.set(s);
        }
        Device {
            d: Daemon::start_with(opts),
            _factory: f,
        }
    }

    pub fn containers(&self) -> Vec<Value> {
        let r = self.d.get("/containers");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json().as_array().cloned().unwrap_or_default()
    }

    pub fn container(&self, name: &str) -> Value {
        self.containers()
            .into_iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no container {name}"))
    }

    pub fn status(&self, name: &str) -> String {
        self.container(name)["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn wait_status(&self, name: &str, want: &str, timeout: Duration) {
        let mut now = None;
        let ok = wait_for(timeout, || {
            now = self.try_status(name);
            now.as_deref() == Some(want)
        });
        assert!(
            ok,
            "{name} never reached {want} (now {now:?}):\n{}",
            self.d.log_text()
        );
    }

    pub fn console(&self, name: &str) -> String {
        let log = self
            .d
            .storage
            .join("logs/0")
            .join(name)
            .join("lxc/console.log");
        let old = fs::read_to_string(log.with_extension("log.1")).unwrap_or_default();
        old + &fs::read_to_string(log).unwrap_or_default()
    }

    pub fn wait_console(&self, name: &str, needle: &str, timeout: Duration) {
        let ok = wait_for(timeout, || self.console(name).contains(needle));
        assert!(
            ok,
            "{name} console never showed {needle:?}:\n{}\n--- daemon log:\n{}",
            self.console(name),
            self.d.log_text()
        );
    }

    pub fn action(&self, name: &str, action: &str) -> (u16, String) {
        self.d
            .put(
                &format!("/containers/{name}"),
                json!({ "action": action }).to_string().as_bytes(),
            )
            .sb()
    }

    /// Pids of processes whose command line holds `marker`.
    pub fn pids_with(marker: &str) -> Vec<i32> {
        let mut pids = Vec::new();
        for e in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let mut cmd = fs::read(e.path().join("cmdline")).unwrap_or_default();
            cmd.iter_mut().filter(|b| **b == 0).for_each(|b| *b = b' ');
            if String::from_utf8_lossy(&cmd).contains(marker) {
                pids.push(pid);
            }
        }
        pids
    }

    pub fn mounts_under(dir: &Path) -> Vec<String> {
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
            .filter(|p| Path::new(p).starts_with(dir))
            .collect()
    }

    /// Zombie children of the daemon.
    pub fn zombies(&self) -> Vec<i32> {
        let me = self.d.pid().to_string();
        let mut out = Vec::new();
        for e in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let stat = fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                continue;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            if f.first() == Some(&"Z") && f.get(1) == Some(&me.as_str()) {
                out.push(pid);
            }
        }
        out
    }
}

impl Device {
    /// A revision of `containers` built as the factory was (same paths in the configs, so a
    /// container whose spec is unchanged is unchanged).
    pub fn revision_of(&self, containers: &[Spec]) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
        revision(self._factory.path(), containers)
    }

    /// Upload `containers` as revision `locals/<name>` (objects first, then the state).
    pub fn install(&self, name: &str, containers: &[Spec]) {
        let (state, objects) = revision(self._factory.path(), containers);
        for (sha, bytes) in objects {
            let r = self.d.put(&format!("/objects/{sha}"), &bytes);
            assert_eq!(r.status, 200, "object {sha}: {}", r.text());
        }
        let r = self.d.put(&format!("/steps/locals/{name}"), &state);
        assert_eq!(r.status, 200, "state: {}", r.text());
    }

    pub fn command(&self, op: &str, payload: &str) -> (u16, String) {
        self.d
            .request(
                "POST",
                "/commands",
                json!({"op": op, "payload": payload}).to_string().as_bytes(),
            )
            .sb()
    }

    /// `status` and `status-msg` of a revision's progress.
    pub fn progress(&self, rev: &str) -> (String, String) {
        let p = self.d.get(&format!("/steps/{rev}/progress")).json();
        (
            p["status"].as_str().unwrap_or_default().to_string(),
            p["status-msg"].as_str().unwrap_or_default().to_string(),
        )
    }

    pub fn wait_progress(&self, rev: &str, status: &str, timeout: Duration) -> (String, String) {
        // Keep what was seen: a second read may land while the daemon re-executes.
        let mut now = (String::new(), String::new());
        let ok = wait_for(timeout, || {
            if let Some(p) = self.try_progress(rev) {
                now = p;
            }
            now.0 == status
        });
        assert!(
            ok,
            "{rev} never reached {status} (now {now:?}):\n{}",
            self.d.log_text()
        );
        now
    }

    /// The progress, or `None` while the daemon does not answer (re-executing).
    fn try_progress(&self, rev: &str) -> Option<(String, String)> {
        let p = self.try_get_json(&format!("/steps/{rev}/progress"))?;
        Some((
            p["status"].as_str()?.to_string(),
            p["status-msg"].as_str()?.to_string(),
        ))
    }

    /// A container's status, or `None` while the daemon does not answer (re-executing).
    fn try_status(&self, name: &str) -> Option<String> {
        let list = self.try_get_json("/containers")?;
        let c = list.as_array()?.iter().find(|c| c["name"] == name)?;
        Some(c["status"].as_str()?.to_string())
    }

    /// `GET path` as JSON, by hand and without panicking: the daemon may be re-executing
    /// (a reboot on a development host) mid-request.
    pub fn try_get_json(&self, path: &str) -> Option<Value> {
        let (status, body) = self.d.try_request("GET", path, b"")?;
        (status == 200).then(|| serde_json::from_slice(&body).ok())?
    }

    /// The revision `GET /steps/current` names (through the `trails/current` link).
    pub fn current(&self) -> String {
        fs::read_link(self.d.storage.join("trails/current"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if self.d.child.is_some() {
            self.d.signal(15);
            let _ = self.d.wait();
        }
    }
}
