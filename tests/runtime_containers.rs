//! End-to-end tests of `tern::runtime` on the real kernel: a busybox root volume packed with
//! `mksquashfs`, started through a loop device, an overlay and new namespaces, then stopped,
//! reaped and torn down. They call the library directly (not the daemon).
//!
//! They need root, loop devices, squashfs and overlay support, `busybox-static` and
//! `squashfs-tools`; missing packages are installed with apt-get. When that is impossible a
//! test prints `SKIP <test>: <reason>` and passes. Every test cleans up through drop guards,
//! even when it fails: the container is killed and reaped, its mounts undone, its cgroup and
//! temporary directory removed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

mod common;

use common::rootfs::{static_busybox, which};
use nix::mount::{MntFlags, umount2};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getpgid};
use tern::runtime::{
    self, Capabilities, CgroupSupport, LaunchSpec, Launched, LxcConf, Mode, ModeRequest, Network,
    Persistence, Pump, PvPaths, PvView, RootSource, Volume,
};

const APPLETS: &[&str] = &[
    "sh", "sleep", "cat", "hostname", "ps", "ls", "mount", "echo", "grep", "wc", "test", "touch",
    "true", "false", "seq", "mkdir", "rm", "head", "tail", "printf", "id",
];

// ---------------------------------------------------------------------------------------------
// Prerequisites

// ---------------------------------------------------------------------------------------------
// Guards

/// A temporary directory; dropping it detaches any mount left under it, then removes it.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("tern-rt-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let mut points = mounts_under(&self.0);
        points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        for p in points {
            let _ = umount2(&p, MntFlags::MNT_DETACH);
        }
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn mountinfo_points() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(PathBuf::from))
        .collect()
}

fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    mountinfo_points()
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// A launched container; dropping it kills, reaps and tears it down, and removes the test
/// cgroup parent once no other test uses it.
struct Running {
    l: Launched,
    reaped: bool,
    cgroup_parents: Vec<PathBuf>,
}

impl Running {
    fn launch(spec: &LaunchSpec) -> Running {
        Running::launch_with(spec, runtime::capabilities())
    }

    fn launch_with(spec: &LaunchSpec, caps: &Capabilities) -> Running {
        let l = runtime::launch(spec, caps).unwrap_or_else(|e| panic!("launch {}: {e}", spec.name));
        let cgroup_parents = l
            .plan
            .cgroup()
            .map(|cg| {
                cg.dirs()
                    .iter()
                    .filter_map(|d| d.parent().map(Path::to_path_buf))
                    .collect()
            })
            .unwrap_or_default();
        Running {
            l,
            reaped: false,
            cgroup_parents,
        }
    }

    fn console(&self) -> String {
        let rotated = fs::read_to_string(self.l.log.rotated_path()).unwrap_or_default();
        rotated + &fs::read_to_string(self.l.log.path()).unwrap_or_default()
    }

    fn pump(&mut self) -> bool {
        matches!(self.l.log.pump(&self.l.console).unwrap(), Pump::Eof { .. })
    }

    /// Pumps the console until the init has exited, been reaped and the pipe is closed.
    fn wait_exit(&mut self, timeout: Duration) -> WaitStatus {
        let deadline = Instant::now() + timeout;
        let (mut status, mut eof) = (None, false);
        loop {
            eof = eof || self.pump();
            if status.is_none() {
                match waitpid(self.l.pid, Some(WaitPidFlag::WNOHANG)).unwrap() {
                    WaitStatus::StillAlive => {}
                    s => {
                        status = Some(s);
                        self.reaped = true;
                    }
                }
            }
            if let (Some(s), true) = (status, eof) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out; console:\n{}",
                self.console()
            );
            sleep(Duration::from_millis(10));
        }
    }

    /// Pumps the console until it contains `needle`.
    fn wait_console(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.console().contains(needle) {
            self.pump();
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in console:\n{}",
                self.console()
            );
            sleep(Duration::from_millis(10));
        }
    }

    fn teardown(&mut self) {
        runtime::teardown(&mut self.l.plan).unwrap();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.l.kill_all();
            let _ = kill(self.l.pid, Signal::SIGKILL);
            let _ = waitpid(self.l.pid, None);
        }
        for _ in 0..100 {
            if runtime::teardown(&mut self.l.plan).is_ok() {
                break;
            }
            sleep(Duration::from_millis(20));
        }
        for p in &self.cgroup_parents {
            let _ = fs::remove_dir(p); // busy while another test's cgroup is in it
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fixture: a busybox root volume and a spec around it

struct Fixture {
    dir: TempDir,
    image: PathBuf,
    name: String,
    _listener: UnixListener,
}

impl Fixture {
    /// Run dir, control socket and storage, without a root volume (enough for process mode).
    fn bare(tag: &str) -> Fixture {
        let dir = TempDir::new(tag);
        let run = dir.path().join("run");
        fs::create_dir_all(&run).unwrap();
        fs::write(run.join("device-id"), "dev-1234\n").unwrap();
        let listener = UnixListener::bind(run.join("pv-ctrl")).unwrap();
        let name = format!("{tag}-{}", std::process::id());
        let image = dir.path().join("root.squashfs");
        Fixture {
            dir,
            image,
            name,
            _listener: listener,
        }
    }

    /// What [`Fixture::bare`] has, plus a busybox root volume packed with mksquashfs.
    fn new(tag: &str) -> Fixture {
        let fx = Fixture::bare(tag);
        let root = fx.dir.path().join("rootfs");
        for d in [
            "bin",
            "proc",
            "dev",
            "tmp",
            "pantavisor",
            "etc",
            "sys",
            "run",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::copy(static_busybox().unwrap(), root.join("bin/busybox")).unwrap();
        fs::set_permissions(root.join("bin/busybox"), fs::Permissions::from_mode(0o755)).unwrap();
        for a in APPLETS {
            symlink("busybox", root.join("bin").join(a)).unwrap();
        }
        fs::write(root.join("etc/hostname"), "image\n").unwrap();
        let out = Command::new("mksquashfs")
            .args([root.as_os_str(), fx.image.as_os_str()])
            .args(
                [
                    "-noappend",
                    "-quiet",
                    "-no-progress",
                    "-all-root",
                    "-comp",
                    "gzip",
                ]
                .map(OsStr::new),
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mksquashfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        fx
    }

    fn pv_paths(&self) -> PvPaths {
        let run = self.dir.path().join("run");
        PvPaths {
            control_socket: run.join("pv-ctrl"),
            log_socket: None,
            run_dir: run,
            logs_dir: self.storage().join("logs"),
        }
    }

    fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    fn spec(&self, script: &str) -> LaunchSpec {
        let work = self.dir.path().join("containers").join(&self.name);
        let mut s = LaunchSpec::new(
            &self.name,
            "0",
            &self.storage(),
            &work,
            RootSource::Squashfs(self.image.clone()),
        );
        s.init = vec!["/bin/sh".into(), "-c".into(), script.into()];
        s.env = vec![("PATH".into(), "/bin".into())];
        s.hostname = Some(format!("box-{}", self.name));
        s.console_log = self.dir.path().join("logs").join("console.log");
        s.cgroup_parent = "tern-test".into();
        s.view = PvView::restricted(&self.pv_paths(), &self.name, "0");
        s.mode = ModeRequest::Isolated;
        s
    }
}

fn lines(console: &str) -> Vec<&str> {
    console.lines().collect()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

// ---------------------------------------------------------------------------------------------
// Isolation

#[test]
fn isolated_init_is_pid_1_with_its_hostname_and_sees_only_its_processes() {
    require_containers!("isolated_init_is_pid_1_with_its_hostname_and_sees_only_its_processes");
    let fx = Fixture::new("pid1");
    let host_pid = std::process::id();
    let script = format!(
        "echo pid=$$; echo host=$(hostname); echo procs=$(ls /proc | grep -c '^[0-9]'); \
         test -d /proc/{host_pid} && echo sees-host-pid; ps; \
         test -S /pantavisor/pv-ctrl && echo ctrl=socket; test -c /dev/null && echo null=chardev; \
         grep -c cgroup /proc/self/mountinfo; echo ok"
    );
    let mut c = Running::launch(&fx.spec(&script));
    assert_eq!(c.l.mode, Mode::Isolated);
    let status = c.wait_exit(secs(20));
    let out = c.console();
    assert_eq!(status, WaitStatus::Exited(c.l.pid, 0), "console:\n{out}");
    let l = lines(&out);
    assert!(l.contains(&"pid=1"), "{out}");
    assert!(
        l.contains(&format!("host=box-{}", fx.name).as_str()),
        "{out}"
    );
    let procs: usize = l
        .iter()
        .find_map(|x| x.strip_prefix("procs="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(procs <= 4, "container sees {procs} processes:\n{out}");
    assert!(!l.contains(&"sees-host-pid"), "{out}");
    assert!(
        l.contains(&"ctrl=socket") && l.contains(&"null=chardev"),
        "{out}"
    );
    assert!(
        l.contains(&"0"),
        "host cgroup mounts visible inside:\n{out}"
    );
    assert!(
        !Path::new(&format!("/proc/{}", c.l.pid)).exists(),
        "zombie left"
    );
}

#[test]
fn private_network_has_only_loopback_and_it_is_up() {
    require_containers!("private_network_has_only_loopback_and_it_is_up");
    let fx = Fixture::new("net");
    let mut spec = fx
        .spec("echo ifaces=$(grep -c : /proc/net/dev); echo flags=$(cat /sys/class/net/lo/flags)");
    spec.network = Network::Private;
    let mut c = Running::launch(&spec);
    c.wait_exit(secs(20));
    let out = c.console();
    assert!(lines(&out).contains(&"ifaces=1"), "{out}");
    assert!(lines(&out).contains(&"flags=0x9"), "lo not up:\n{out}");
}

#[test]
fn mgmt_view_shows_the_run_dir_read_only() {
    require_containers!("mgmt_view_shows_the_run_dir_read_only");
    let fx = Fixture::new("mgmt");
    let mut spec = fx.spec(
        "cat /pantavisor/device-id; test -S /pantavisor/pv-ctrl && echo ctrl=socket; \
         touch /pantavisor/x 2>/dev/null && echo writable || echo readonly",
    );
    spec.view = PvView::mgmt(&fx.pv_paths());
    let mut c = Running::launch(&spec);
    c.wait_exit(secs(20));
    let out = c.console();
    let l = lines(&out);
    assert!(
        l.contains(&"dev-1234") && l.contains(&"ctrl=socket") && l.contains(&"readonly"),
        "{out}"
    );
    assert!(!fx.pv_paths().run_dir.join("x").exists());
}

#[test]
fn conf_mount_entries_and_volumes_are_applied() {
    require_containers!("conf_mount_entries_and_volumes_are_applied");
    let fx = Fixture::new("conf");
    let shared = fx.dir.path().join("shared");
    fs::create_dir_all(&shared).unwrap();
    fs::write(shared.join("greeting"), "hello from host\n").unwrap();
    let conf = LxcConf::parse(&format!(
        "lxc.tty.max = 8\nlxc.mount.auto = proc sys\n\
         lxc.init.cmd = /bin/sh -c \"ignored\"\n\
         lxc.mount.entry = tmpfs run tmpfs rw,nodev,mode=755 0 0\n\
         lxc.mount.entry = {} mnt/shared none bind,ro,create=dir 0 0\n\
         lxc.mount.entry = /volumes/{name}/docker-data data none bind,rw,create=dir 0 0\n\
         lxc.mount.entry = /nonexistent opt/x none bind,optional,create=dir 0 0\n\
         lxc.environment = GREETING=hi\n",
        shared.display(),
        name = fx.name
    ))
    .unwrap();
    let mut spec = fx.spec("");
    spec.apply_conf(&conf);
    spec.init = vec![
        "sh".into(), // found through PATH
        "-c".into(),
        "grep -c ' /run ' /proc/self/mountinfo; cat /mnt/shared/greeting; echo env=$GREETING; \
         touch /mnt/shared/x 2>/dev/null && echo writable || echo readonly; echo saved > /data/f"
            .into(),
    ];
    spec.volumes = vec![Volume {
        key: "docker-data".into(),
        persistence: Persistence::Permanent,
    }];
    let mut c = Running::launch(&spec);
    let status = c.wait_exit(secs(20));
    let out = c.console();
    assert_eq!(status, WaitStatus::Exited(c.l.pid, 0), "{out}");
    let l = lines(&out);
    assert!(
        l.contains(&"1") && l.contains(&"hello from host") && l.contains(&"env=hi"),
        "{out}"
    );
    assert!(l.contains(&"readonly"), "{out}");
    let disk = fx
        .storage()
        .join("disks/perm")
        .join(&fx.name)
        .join("docker-data/f");
    assert_eq!(fs::read_to_string(disk).unwrap(), "saved\n");
}

#[test]
fn exec_failure_is_reported_on_the_console_with_status_127() {
    require_containers!("exec_failure_is_reported_on_the_console_with_status_127");
    let fx = Fixture::new("noexec");
    let mut spec = fx.spec("");
    spec.init = vec!["/bin/nope".into()];
    let mut c = Running::launch(&spec);
    let status = c.wait_exit(secs(20));
    assert_eq!(status, WaitStatus::Exited(c.l.pid, 127));
    assert!(
        c.console()
            .contains("tern: container start failed: exec /bin/nope: No such file or directory"),
        "{}",
        c.console()
    );
}

// ---------------------------------------------------------------------------------------------
// Persistence

fn write_then_read(fx: &Fixture, persistence: Persistence, second_rev: &str) -> String {
    let mut spec = fx.spec("echo kept > /etc/marker");
    spec.rootfs.persistence = persistence;
    let mut c = Running::launch(&spec);
    assert_eq!(
        c.wait_exit(secs(20)),
        WaitStatus::Exited(c.l.pid, 0),
        "{}",
        c.console()
    );
    c.teardown();
    drop(c);
    let mut spec = fx.spec("cat /etc/marker 2>/dev/null || echo absent");
    spec.rootfs.persistence = persistence;
    spec.rev = second_rev.into();
    spec.console_log = fx.dir.path().join(format!("logs/read-{second_rev}.log"));
    let mut c = Running::launch(&spec);
    c.wait_exit(secs(20));
    c.console().trim().to_string()
}

#[test]
fn permanent_overlay_keeps_a_file_across_teardown_and_relaunch() {
    require_containers!("permanent_overlay_keeps_a_file_across_teardown_and_relaunch");
    let fx = Fixture::new("perm");
    assert_eq!(write_then_read(&fx, Persistence::Permanent, "1"), "kept");
    let upper = fx
        .storage()
        .join("disks/perm")
        .join(&fx.name)
        .join("lxc-overlay/upper/etc/marker");
    assert!(upper.exists(), "{} missing", upper.display());
}

#[test]
fn revision_overlay_is_kept_per_revision() {
    require_containers!("revision_overlay_is_kept_per_revision");
    let fx = Fixture::new("rev");
    assert_eq!(write_then_read(&fx, Persistence::Revision, "0"), "kept");
    assert_eq!(write_then_read(&fx, Persistence::Revision, "1"), "absent");
}

#[test]
fn boot_overlay_loses_a_file_across_teardown_and_relaunch() {
    require_containers!("boot_overlay_loses_a_file_across_teardown_and_relaunch");
    let fx = Fixture::new("boot");
    assert_eq!(write_then_read(&fx, Persistence::Boot, "0"), "absent");
    assert!(
        !fx.storage().join("disks").exists(),
        "boot persistence wrote to storage"
    );
}

// ---------------------------------------------------------------------------------------------
// Console

#[test]
fn console_lands_in_the_log_and_rotates_at_a_small_cap() {
    require_containers!("console_lands_in_the_log_and_rotates_at_a_small_cap");
    let fx = Fixture::new("log");
    let mut spec = fx.spec("for i in $(seq 0 199); do echo line-$i-abcdefghij; done");
    spec.console_cap = 1024;
    let mut c = Running::launch(&spec);
    c.wait_exit(secs(20));
    let current = fs::read_to_string(c.l.log.path()).unwrap();
    let old = fs::read_to_string(c.l.log.rotated_path()).unwrap();
    assert!(current.len() <= 1024 && !current.is_empty());
    // Rotation falls on a line end: the old generation is as full as whole lines make it.
    let line = "line-199-abcdefghij\n".len();
    assert!(
        old.len() <= 1024 && old.len() > 1024 - line,
        "{}",
        old.len()
    );
    assert!(old.ends_with('\n'), "{old}");
    assert!(current.ends_with("line-199-abcdefghij\n"), "{current}");
    let joined = old + &current;
    let tail: Vec<&str> = joined.lines().collect();
    let first: usize = tail[0].split('-').nth(1).unwrap().parse().unwrap();
    for (k, line) in tail.iter().enumerate() {
        assert_eq!(*line, format!("line-{}-abcdefghij", first + k));
    }
}

// ---------------------------------------------------------------------------------------------
// Stop and teardown

fn stop_by_cgroup(c: &mut Running) {
    c.wait_console("started", secs(20));
    let cg = c.l.plan.cgroup().expect("a cgroup").clone();
    assert!(cg.pids().unwrap().len() >= 3, "pids: {:?}", cg.pids());
    runtime::signal(c.l.pid, Signal::SIGTERM).unwrap();
    sleep(Duration::from_millis(300));
    assert_eq!(
        waitpid(c.l.pid, Some(WaitPidFlag::WNOHANG)).unwrap(),
        WaitStatus::StillAlive,
        "pid 1 without a handler ignores SIGTERM"
    );
    runtime::kill_cgroup(&cg).unwrap();
    assert_eq!(
        c.wait_exit(secs(10)),
        WaitStatus::Signaled(c.l.pid, Signal::SIGKILL, false)
    );
    let deadline = Instant::now() + secs(5);
    while !runtime::cgroup_is_empty(&cg).unwrap() {
        assert!(
            Instant::now() < deadline,
            "cgroup still has {:?}",
            cg.pids()
        );
        sleep(Duration::from_millis(10));
    }
    c.teardown();
    assert!(cg.dirs().iter().all(|d| !d.exists()), "cgroup dir left");
}

#[test]
fn sigterm_is_ignored_by_a_shell_init_and_cgroup_kill_empties_the_cgroup() {
    require_containers!("sigterm_is_ignored_by_a_shell_init_and_cgroup_kill_empties_the_cgroup");
    let fx = Fixture::new("stop");
    let mut c = Running::launch(&fx.spec("sleep 1000 & sleep 1000 & echo started; wait"));
    stop_by_cgroup(&mut c);
}

#[test]
fn cgroup_v1_kill_empties_the_cgroup() {
    require_containers!("cgroup_v1_kill_empties_the_cgroup");
    let pids_root = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let opts = post.split_whitespace().nth(2)?;
            let point = pre.split_whitespace().nth(4)?;
            (post.starts_with("cgroup ") && opts.split(',').any(|o| o == "pids"))
                .then(|| PathBuf::from(point))
        });
    let Some(pids_root) = pids_root else {
        println!("SKIP cgroup_v1_kill_empties_the_cgroup: no cgroup v1 pids hierarchy");
        return;
    };
    let mut caps = Capabilities::probe();
    caps.cgroup = CgroupSupport::V1 {
        roots: vec![pids_root],
    };
    let fx = Fixture::new("v1");
    let mut c = Running::launch_with(
        &fx.spec("sleep 1000 & sleep 1000 & echo started; wait"),
        &caps,
    );
    stop_by_cgroup(&mut c);
}

#[test]
fn teardown_leaves_no_mount_and_releases_the_loop_device() {
    require_containers!("teardown_leaves_no_mount_and_releases_the_loop_device");
    let fx = Fixture::new("teardown");
    let spec = fx.spec("true");
    let mut c = Running::launch(&spec);
    let loop_dev = c.l.plan.loop_device().unwrap().to_path_buf();
    assert!(runtime::loop_device_is_bound(&loop_dev));
    assert!(!mounts_under(&spec.work_dir).is_empty());
    c.wait_exit(secs(20));
    c.teardown();
    assert!(c.l.plan.is_released());
    assert!(
        mounts_under(&spec.work_dir).is_empty(),
        "left: {:?}",
        mounts_under(&spec.work_dir)
    );
    assert!(!spec.work_dir.exists());
    let deadline = Instant::now() + secs(5);
    while runtime::loop_device_is_bound(&loop_dev) {
        assert!(
            Instant::now() < deadline,
            "{} still bound",
            loop_dev.display()
        );
        sleep(Duration::from_millis(20));
    }
    // A second teardown has nothing left to do.
    c.teardown();
}

// ---------------------------------------------------------------------------------------------
// Process mode

fn host_sh() -> String {
    which("sh").unwrap().to_string_lossy().into_owned()
}

#[test]
fn process_mode_runs_a_plain_child_in_its_own_group_with_the_spec_env() {
    let fx = Fixture::bare("proc");
    let mut spec = fx.spec("");
    spec.mode = ModeRequest::Process;
    spec.init = vec![
        host_sh(),
        "-c".into(),
        "echo pid=$$; echo foo=$FOO; echo home=${HOME:-unset}; echo started; exec sleep 1000"
            .into(),
    ];
    spec.env = vec![
        ("FOO".into(), "bar".into()),
        ("PATH".into(), "/usr/bin:/bin".into()),
    ];
    let mut c = Running::launch(&spec);
    assert_eq!(c.l.mode, Mode::Process);
    assert!(c.l.fallback_reason.is_some());
    c.wait_console("started", secs(10));
    let out = c.console();
    let l = lines(&out);
    assert!(l.contains(&format!("pid={}", c.l.pid).as_str()), "{out}");
    assert!(l.contains(&"foo=bar") && l.contains(&"home=unset"), "{out}");
    assert_eq!(getpgid(Some(c.l.pid)).unwrap(), c.l.pid);
    assert!(c.l.plan.loop_device().is_none() && c.l.plan.mount_points().is_empty());
    let caps = runtime::capabilities();
    if caps.root && caps.cgroup != CgroupSupport::None {
        let cg =
            c.l.plan
                .cgroup()
                .expect("root gets a cgroup in process mode too");
        assert_eq!(cg.pids().unwrap(), vec![c.l.pid]);
    }
    c.l.kill_all().unwrap();
    assert_eq!(
        c.wait_exit(secs(10)),
        WaitStatus::Signaled(c.l.pid, Signal::SIGKILL, false)
    );
    c.teardown();
}

#[test]
fn process_mode_without_cgroup_stops_its_whole_group() {
    let fx = Fixture::bare("procgrp");
    let mut caps = Capabilities::probe();
    caps.cgroup = CgroupSupport::None;
    let mut spec = fx.spec("");
    spec.mode = ModeRequest::Process;
    spec.init = vec![
        host_sh(),
        "-c".into(),
        "sleep 1000 & echo child=$!; echo started; wait".into(),
    ];
    let mut c = Running::launch_with(&spec, &caps);
    c.wait_console("started", secs(10));
    let out = c.console();
    let child: i32 = out
        .lines()
        .find_map(|x| x.strip_prefix("child="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(c.l.plan.cgroup().is_none());
    runtime::signal_group(c.l.pid, Signal::SIGKILL).unwrap();
    assert_eq!(
        c.wait_exit(secs(10)),
        WaitStatus::Signaled(c.l.pid, Signal::SIGKILL, false)
    );
    let deadline = Instant::now() + secs(5);
    while kill(Pid::from_raw(child), None).is_ok() && !is_zombie(child) {
        assert!(Instant::now() < deadline, "grandchild {child} survived");
        sleep(Duration::from_millis(10));
    }
    assert!(c.l.is_empty().unwrap() || is_zombie(child));
}

fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[test]
fn auto_mode_is_isolated_here_and_reports_no_fallback() {
    require_containers!("auto_mode_is_isolated_here_and_reports_no_fallback");
    let fx = Fixture::new("auto");
    let mut spec = fx.spec("true");
    spec.mode = ModeRequest::Auto;
    let mut c = Running::launch(&spec);
    assert_eq!(
        (c.l.mode, c.l.fallback_reason.clone()),
        (Mode::Isolated, None)
    );
    assert_eq!(
        c.wait_exit(secs(20)),
        WaitStatus::Exited(c.l.pid, 0),
        "{}",
        c.console()
    );
}
