//! The daemon running a revision's containers for real: busybox root volumes seeded as the
//! factory revision, driven through pv-ctrl from the host and from inside the containers.
//! Needs root, loop devices, squashfs and overlayfs; skips with the reason otherwise.
//!
//! Container names are unique per test: tests run in parallel and a container's cgroup is
//! named after it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::device::Device;
use common::rootfs::Spec;
use common::{Opts, wait_for};
use serde_json::{Value, json};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn groups_start_in_order_isolated_and_the_app_signals_ready_from_inside() {
    require_containers!("groups_start_in_order...");
    let dev = Device::boot(
        &[
            Spec::new(
                "g1-svc",
                "echo svc up; exec sleep 1000",
                json!({"group":"platform"}),
            ),
            Spec::new(
                "g1-app",
                "echo pid=$$ host=$(hostname) procs=$(ls -d /proc/[0-9]* | wc -l); \
                 pvcontrol signal ready && echo signalled; exec sleep 1000",
                json!({"group":"app","status_goal":"READY","restart_policy":"container"}),
            ),
        ],
        &[],
    );
    dev.wait_status("g1-app", "READY", secs(20));
    assert_eq!(dev.status("g1-svc"), "STARTED");
    let console = dev.console("g1-app");
    // Its own pid namespace (init is pid 1, only its own processes), its own hostname.
    assert!(console.contains("pid=1 host=g1-app"), "{console}");
    let procs: usize = console
        .split("procs=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(99);
    // sh, the command substitution's subshell, ls and wc: nothing of the host.
    assert!(procs <= 5, "host processes visible: {console}");
    dev.wait_console("g1-app", "signalled", secs(5));
    // The app group only started once platform had reached its goal.
    let log = dev.d.log_text();
    let svc_started = log.find("g1-svc: STARTING -> STARTED").unwrap();
    let app_mounted = log.find("g1-app: BLOCKED -> MOUNTED").unwrap();
    assert!(svc_started < app_mounted, "{log}");
    let groups = dev.d.get("/groups").json();
    let app = groups
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "app")
        .unwrap();
    assert_eq!(app["status"], "READY");
    let meta = dev.d.get("/device-meta").json();
    assert_eq!(meta["pantavisor.status"], "READY");
}

#[test]
fn a_container_without_mgmt_role_gets_403_from_inside_and_a_mgmt_one_does_not() {
    require_containers!("roles");
    let dev = Device::boot(
        &[
            Spec::new(
                "r1-plain",
                "pvcontrol ls; echo ls-rc=$?; pvcontrol signal ready; echo sig-rc=$?; exec sleep 1000",
                json!({"roles":[]}),
            ),
            Spec::new(
                "r1-mgmt",
                "pvcontrol groups ls; echo ls-rc=$?; exec sleep 1000",
                json!({}),
            ),
        ],
        &[],
    );
    dev.wait_console("r1-plain", "sig-rc=", secs(20));
    let plain = dev.console("r1-plain");
    assert!(
        plain.contains("Request not sent from a mgmt platform"),
        "{plain}"
    );
    assert!(!plain.contains("ls-rc=0"), "{plain}");
    // /signal stays open to it; its goal is STARTED, so a ready signal is not expected.
    assert!(
        plain.contains("Signal not expected from this platform"),
        "{plain}"
    );
    dev.wait_console("r1-mgmt", "ls-rc=", secs(20));
    let mgmt = dev.console("r1-mgmt");
    assert!(
        mgmt.contains("ls-rc=0") && mgmt.contains("\"name\":\"app\""),
        "{mgmt}"
    );
    let listed = dev.containers();
    let roles: Vec<(&str, &Value)> = listed
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), &c["roles"]))
        .collect();
    assert!(roles.contains(&("r1-plain", &json!([]))), "{roles:?}");
    assert!(roles.contains(&("r1-mgmt", &json!(["mgmt"]))), "{roles:?}");
}

#[test]
fn stop_start_and_restart_over_the_api() {
    require_containers!("api actions");
    let dev = Device::boot(
        &[
            Spec::new("a1-sys", "exec sleep 1000", json!({})),
            Spec::new(
                "a1-app",
                "echo run a1-marker; exec sleep 1001",
                json!({"restart_policy":"container",
                       "auto_recovery":{"policy":"always","retry_delay":0}}),
            ),
        ],
        &["TERN_STOP_GRACE=1"],
    );
    dev.wait_status("a1-app", "STARTED", secs(20));
    assert_eq!(
        dev.action("a1-sys", "stop"),
        (
            403,
            r#"{"Error":"Container has restart_policy 'system' and cannot be controlled via API"}"#
                .into()
        )
    );
    assert_eq!(
        dev.action("nope", "stop"),
        (404, r#"{"Error":"Container not found"}"#.into())
    );
    assert_eq!(
        dev.action("a1-app", "jump"),
        (
            400,
            r#"{"Error":"Invalid action. Use 'start', 'stop', or 'restart'"}"#.into()
        )
    );

    // The first run's marker is out before the stop (a stop no longer waits a grace).
    dev.wait_console("a1-app", "run a1-marker", secs(10));
    assert_eq!(dev.action("a1-app", "stop").0, 200);
    dev.wait_status("a1-app", "STOPPED", secs(10));
    let c = dev.container("a1-app");
    assert_eq!(c["user_stopped"], "true");
    // A user stop is not a crash: recovery leaves it alone.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(dev.status("a1-app"), "STOPPED");
    assert!(Device::pids_with("sleep 1001").is_empty());

    assert_eq!(dev.action("a1-app", "start").0, 200);
    dev.wait_status("a1-app", "STARTED", secs(10));
    assert_eq!(dev.container("a1-app")["user_stopped"], "false");
    // STARTED means the init was cloned; its exec follows a moment later. (The shell's own
    // command line holds "sleep 1001" too: wait for its marker, or a restart without a
    // grace may kill it before it echoes.)
    assert!(wait_for(secs(5), || dev
        .console("a1-app")
        .matches("run a1-marker")
        .count()
        == 2));
    assert!(wait_for(secs(5), || Device::pids_with("sleep 1001").len() == 1));
    let before = Device::pids_with("sleep 1001");

    assert_eq!(dev.action("a1-app", "restart").0, 200);
    assert!(wait_for(secs(10), || {
        let now = Device::pids_with("sleep 1001");
        now.len() == 1 && now != before
    }));
    dev.wait_status("a1-app", "STARTED", secs(10));
    // Three runs: the first, the API start, the restart (the console is pumped a moment later).
    assert!(
        wait_for(secs(5), || dev
            .console("a1-app")
            .matches("run a1-marker")
            .count()
            == 3),
        "console:\n{}\nlog:\n{}",
        dev.console("a1-app"),
        dev.d.log_text()
    );
    // The same through /programs: a restart is a new process, and the system container
    // answers ER with Pantavisor's reason.
    let r = dev.d.request(
        "POST",
        "/programs/restart",
        br#"{"op":"component","arg":"a1-app"}"#,
    );
    assert_eq!(r.text(), r#"[{"status":"OK","tag":"a1-app"}]"#);
    assert!(wait_for(secs(10), || dev
        .console("a1-app")
        .matches("run a1-marker")
        .count()
        == 4));
    dev.wait_status("a1-app", "STARTED", secs(10));
    let r = dev.d.request("DELETE", "/programs/a1-sys", b"");
    assert_eq!(
        r.text(),
        r#"[{"message":"Container has restart_policy 'system' and cannot be controlled via API","status":"ER","tag":"a1-sys"}]"#
    );
    assert!(dev.zombies().is_empty());
}

#[test]
fn a_crash_is_recovered_after_the_delay_until_retries_run_out() {
    require_containers!("recovery");
    let dev = Device::boot(
        &[Spec::new(
            "c1-crash",
            "echo started; sleep 0.2; exit 3",
            json!({"restart_policy":"container",
                   "auto_recovery":{"policy":"on-failure","max_retries":2,"retry_delay":1,
                                    "backoff_factor":2.0,"backoff_policy":"never"}}),
        )],
        &[],
    );
    let t0 = Instant::now();
    // Three runs: the first and two retries after 1 s and 2 s (delay x factor^(n-1)).
    dev.wait_console("c1-crash", "started\nstarted\nstarted", secs(20));
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(2900),
        "retries too fast: {took:?}"
    );
    dev.wait_status("c1-crash", "STOPPED", secs(10));
    let c = dev.container("c1-crash");
    assert_eq!(c["auto_recovery"]["current_retries"], 2, "{c}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(dev.console("c1-crash").matches("started").count(), 3);
    assert!(dev.zombies().is_empty());
    // backoff_policy never: the device keeps running.
    assert_eq!(dev.d.get("/steps").status, 200);
}

#[test]
fn a_crash_with_nothing_to_recover_it_asks_for_a_reboot() {
    require_containers!("reboot");
    let mut dev = Device::boot_with_opts(
        &[Spec::new("b1-dies", "sleep 0.5; exit 1", json!({}))],
        &["TERN_STOP_GRACE=1"],
        &json!({}),
        Opts::default().may_exit(),
    );
    let status = dev.d.wait();
    assert_eq!(status.code(), Some(3), "{}", dev.d.log_text());
    assert!(dev.d.log_text().contains("reboot requested"));
    assert!(Device::mounts_under(dev.d.dir.path()).is_empty());
}

#[test]
fn overlay_persistence_follows_the_storage_policy_across_restarts() {
    require_containers!("persistence");
    // The mark is made before the line is echoed: a restart (no grace for a shell init) may
    // come as soon as the line is seen.
    let script = "if [ -f /mark ]; then touch /mark; echo had-mark; \
                  else touch /mark; echo no-mark; fi; exec sleep 1000";
    let dev = Device::boot(
        &[
            Spec::new(
                "p1-perm",
                script,
                json!({"restart_policy":"container",
                       "storage":{"lxc-overlay":{"persistence":"permanent"}}}),
            ),
            Spec::new(
                "p1-boot",
                script,
                json!({"restart_policy":"container",
                       "storage":{"lxc-overlay":{"persistence":"boot"}}}),
            ),
        ],
        &["TERN_STOP_GRACE=1"],
    );
    for name in ["p1-perm", "p1-boot"] {
        dev.wait_console(name, "no-mark", secs(20));
        assert_eq!(dev.action(name, "restart").0, 200);
    }
    dev.wait_console("p1-perm", "had-mark", secs(10));
    dev.wait_console("p1-boot", "no-mark\nno-mark", secs(10));
    assert!(!dev.console("p1-boot").contains("had-mark"));
    assert!(dev.d.storage.join("disks/perm/p1-perm").is_dir());
}

#[test]
fn console_output_is_captured_and_rotated_at_the_cap() {
    require_containers!("console");
    let dev = Device::boot(
        &[Spec::new(
            "l1-chatty",
            "for i in $(seq 1 400); do echo line $i of the chatty container; done; echo done-l1; exec sleep 1000",
            json!({}),
        )],
        &["TERN_CONSOLE_MAXSIZE=4096"],
    );
    dev.wait_console("l1-chatty", "done-l1", secs(20));
    let log = dev.d.storage.join("logs/0/l1-chatty/lxc/console.log");
    let rotated = log.with_extension("log.1");
    assert!(rotated.is_file());
    for f in [&log, &rotated] {
        assert!(fs::metadata(f).unwrap().len() <= 4096, "{f:?} over the cap");
    }
    assert!(dev.console("l1-chatty").contains("line 400 of"));
}

#[test]
fn shutdown_stops_every_container_and_leaves_nothing_behind() {
    require_containers!("shutdown");
    let mut dev = Device::boot(
        &[
            Spec::new("s1-a", "exec sleep 33021", json!({})),
            Spec::new(
                "s1-b",
                "sleep 33022 & exec sleep 33023",
                json!({"group":"app","restart_policy":"container"}),
            ),
        ],
        &["TERN_STOP_GRACE=1"],
    );
    dev.wait_status("s1-b", "STARTED", secs(20));
    assert!(wait_for(secs(5), || Device::pids_with("sleep 3302").len() == 3));
    let cgroups: Vec<_> = ["s1-a", "s1-b"]
        .iter()
        .map(|n| Path::new("/sys/fs/cgroup/tern").join(n))
        .collect();
    let t0 = Instant::now();
    let status = dev.d.stop();
    assert!(status.success(), "{status:?}: {}", dev.d.log_text());
    assert!(t0.elapsed() < secs(5), "shutdown took {:?}", t0.elapsed());
    assert!(Device::pids_with("sleep 3302").is_empty());
    assert!(Device::mounts_under(dev.d.dir.path()).is_empty());
    assert!(cgroups.iter().all(|c| !c.exists()), "{cgroups:?}");
    assert!(!dev.d.rundir.join("containers/s1-a").exists());
}

#[test]
fn process_mode_runs_plain_children_that_still_reach_pv_ctrl_with_their_role() {
    require_containers!("process mode");
    let dev = Device::boot(
        &[
            Spec::new(
                "m1-plain",
                "echo host=$(hostname); pvcontrol ls; echo ls-rc=$?; exec sleep 2005",
                json!({"roles":[]}),
            ),
            Spec::new(
                "m1-ready",
                "pvcontrol signal ready && echo signalled; exec sleep 2006",
                json!({"group":"app","status_goal":"READY","restart_policy":"container"}),
            ),
        ],
        &["TERN_CONTAINER_MODE=process", "TERN_STOP_GRACE=1"],
    );
    dev.wait_status("m1-ready", "READY", secs(20));
    dev.wait_console("m1-plain", "ls-rc=", secs(10));
    let plain = dev.console("m1-plain");
    // The host's hostname: no namespaces in this mode.
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(plain.contains(&format!("host={}", host.trim())), "{plain}");
    assert!(
        plain.contains("Request not sent from a mgmt platform"),
        "{plain}"
    );
    assert!(dev.d.log_text().contains("m1-plain: init pid"));
    assert!(dev.d.log_text().contains("(process mode)"));
    assert!(
        plain.contains("tern: not isolated, running as a plain process: process mode requested"),
        "{plain}"
    );
    // Still stopped and reaped like a container.
    assert_eq!(dev.action("m1-ready", "stop").0, 200);
    dev.wait_status("m1-ready", "STOPPED", secs(10));
    assert!(Device::pids_with("sleep 2006").is_empty());
    assert!(dev.zombies().is_empty());
}

#[test]
fn containers_read_their_metadata_as_files_under_pantavisor() {
    require_containers!("metadata view");
    let dev = Device::boot(
        &[
            Spec::new(
                "v1-plain",
                "while [ ! -f /pantavisor/user-meta/greeting ]; do sleep 0.1; done; \
                 echo got=$(cat /pantavisor/user-meta/greeting); ls /pantavisor/user-meta; \
                 echo status=$(cat /pantavisor/device-meta/pantavisor.status 2>&1); exec sleep 1000",
                json!({"roles":[]}),
            ),
            Spec::new(
                "v1-mgmt",
                "while [ ! -f /pantavisor/user-meta/v1-plain.greeting ]; do sleep 0.1; done; \
                 echo mgmt-got=$(cat /pantavisor/user-meta/v1-plain.greeting); exec sleep 1000",
                json!({}),
            ),
        ],
        &[],
    );
    dev.wait_status("v1-plain", "STARTED", secs(20));
    assert_eq!(
        dev.d.put("/user-meta/v1-plain.greeting", b"hello").status,
        200
    );
    assert_eq!(dev.d.put("/user-meta/other.secret", b"no").status, 200);
    dev.wait_console("v1-plain", "got=hello", secs(10));
    dev.wait_console("v1-mgmt", "mgmt-got=hello", secs(10));
    let plain = dev.console("v1-plain");
    // Only its own keys, under their short names.
    assert!(!plain.contains("secret"), "{plain}");
    assert!(!plain.contains("other"), "{plain}");
    // Its own device-meta view has no keys of its own: the supervisor's are not its business.
    assert!(!plain.contains("status=READY"), "{plain}");
    // The run dir view follows deletes.
    assert_eq!(
        dev.d
            .request("DELETE", "/user-meta/v1-plain.greeting", b"")
            .status,
        200
    );
    assert!(!dev.d.rundir.join("user-meta.v1-plain/greeting").exists());
    assert!(!dev.d.rundir.join("user-meta/v1-plain.greeting").exists());
    assert_eq!(
        fs::read_to_string(dev.d.rundir.join("device-meta/pantavisor.status")).unwrap(),
        "READY"
    );
}

/// A module loader for tests: records its arguments, fails for modules named `bad*`.
fn fake_loader(dir: &Path) -> String {
    let script = dir.join("loader");
    let calls = dir.join("calls");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\n\
             for a in \"$@\"; do case \"$a\" in -*) ;; bad*) exit 1;; *) exit 0;; esac; done\n",
            calls.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    format!("TERN_MODULE_LOADER={} -q", script.display())
}

fn drivers_json() -> Value {
    json!({"bsp/drivers.json": {"#spec": "driver-aliases@1", "all": {
        "wifi": ["cfg80211", "mt76 country=DE"],
        "usbnet": ["badmod"],
        "bt": ["btusb"],
        "broken": ["badder"]}}})
}

#[test]
fn drivers_load_before_their_container_and_manual_ones_through_the_api() {
    require_containers!("drivers");
    let tmp = common::TempDir::new("loader");
    let loader = fake_loader(tmp.path());
    let dev = Device::boot_with(
        &[Spec::new(
            "dr1-app",
            "pvcontrol drivers ls; echo; pvcontrol drivers load; echo load-rc=$?; exec sleep 1000",
            json!({"drivers": {"required": ["wifi"], "optional": ["usbnet", "ghost"],
                               "manual": ["bt"]}}),
        )],
        &[&loader],
        &drivers_json(),
    );
    dev.wait_status("dr1-app", "STARTED", secs(20));
    dev.wait_console("dr1-app", "load-rc=", secs(10));
    let calls = || fs::read_to_string(tmp.path().join("calls")).unwrap_or_default();
    assert!(
        wait_for(secs(5), || calls().contains("-q btusb")),
        "{}",
        calls()
    );
    let c = calls();
    let lines: Vec<&str> = c.lines().collect();
    // Required and optional ones before the start (drivers side by side, a driver's modules
    // one after the other), no shell in between.
    let at = |l: &str| lines.iter().position(|x| *x == l).unwrap_or(usize::MAX);
    assert!(at("-q cfg80211") < at("-q mt76 country=DE"), "{c}");
    assert!(at("-q badmod") < 3 && at("-q mt76 country=DE") < 3, "{c}");
    let console = dev.console("dr1-app");
    assert!(
        console.contains(r#"{"name":"wifi","type":"REQUIRED","status":"LOADED"}"#),
        "{console}"
    );
    assert!(console.contains(r#"{"name":"usbnet","type":"OPTIONAL","status":"UNKNOWN"}"#));
    assert!(console.contains(r#"{"name":"bt","type":"MANUAL","status":"UNKNOWN"}"#));
    assert!(console.contains("load-rc=0"), "{console}");
    // The host has no drivers of its own.
    assert_eq!(dev.d.get("/drivers").text(), "{}");
    assert_eq!(
        dev.d.request("PUT", "/drivers/load", b"").sb(),
        (400, r#"{"Error":"Error loading driver(s)"}"#.into())
    );
}

#[test]
fn a_required_driver_that_fails_stops_the_start() {
    require_containers!("required driver");
    let tmp = common::TempDir::new("loader");
    let loader = fake_loader(tmp.path());
    // It may be down before the harness first reaches its socket.
    let mut dev = Device::boot_with_opts(
        &[Spec::new(
            "dr2-app",
            "echo should-not-run; exec sleep 1000",
            json!({"drivers": {"required": ["broken"]}}),
        )],
        &[&loader, "TERN_STOP_GRACE=1"],
        &drivers_json(),
        Opts::default().may_exit(),
    );
    // A system container that cannot start, in steady state: the device reboots (exit 3 here).
    let status = dev.d.wait();
    assert_eq!(status.code(), Some(3), "{}", dev.d.log_text());
    let log = dev.d.log_text();
    assert!(
        log.contains(r#"required driver(s) ["broken"] failed to load"#),
        "{log}"
    );
    assert!(!dev.console("dr2-app").contains("should-not-run"));
}

#[test]
fn xconnect_brings_a_providers_socket_into_its_consumer_and_follows_restarts() {
    require_containers!("xconnect");
    let provider = Spec::new(
        "x1-prov",
        "exec tern daemon --storage /tmp/s --rundir /run/prov --set PV_LOG_LEVEL=2 --set TERN_HUB=off",
        json!({"group": "platform", "restart_policy": "container"}),
    );
    let consumer = Spec::new(
        "x1-cons",
        "while true; do pvcontrol -s /run/api.sock steps ls > /tmp/out 2>&1 && \
         echo reached=$(cat /tmp/out); sleep 1; done",
        json!({"group": "app", "restart_policy": "container",
               "services": {"required": [{"name": "prov-api", "type": "rest",
                                          "target": "/run/api.sock"}]}}),
    );
    let exports = json!({"x1-prov/services.json": {"#spec": "service-manifest-xconnect@1",
        "services": [{"name": "prov-api", "type": "rest", "socket": "/run/prov/pv-ctrl"}]}});
    let dev = Device::boot_with(&[provider, consumer], &["TERN_STOP_GRACE=1"], &exports);
    dev.wait_status("x1-cons", "STARTED", secs(20));
    // The consumer talks to the daemon inside the provider through its own /run/api.sock.
    dev.wait_console("x1-cons", r#"reached=[{"name":"0""#, secs(20));
    let graph = dev.d.get("/xconnect-graph").json();
    let link = &graph[0];
    assert_eq!(link["consumer"], "x1-cons");
    assert_eq!(link["provider"], "x1-prov");
    assert_eq!(link["name"], "prov-api");
    assert_eq!(link["type"], "rest");
    assert_eq!(link["target"], "/run/api.sock");
    assert_eq!(link["socket"], "/run/prov/pv-ctrl");
    let first_pid = link["provider_pid"].as_i64().unwrap();
    assert!(
        first_pid > 0 && link["consumer_pid"].as_i64().unwrap() > 0,
        "{graph}"
    );
    // Nothing landed on the host.
    assert!(!Path::new("/run/api.sock").exists());
    // The provider restarts: the link follows its new pid.
    assert_eq!(dev.action("x1-prov", "restart").0, 200);
    assert!(wait_for(secs(20), || {
        let p = dev.d.get("/xconnect-graph").json()[0]["provider_pid"]
            .as_i64()
            .unwrap_or(0);
        p > 0 && p != first_pid
    }));
    let before = dev.console("x1-cons").matches("reached=").count();
    assert!(wait_for(secs(20), || dev
        .console("x1-cons")
        .matches("reached=")
        .count()
        > before + 1));
    assert_eq!(
        dev.d
            .request(
                "POST",
                "/commands",
                br#"{"op":"XCONNECT_GRAPH","payload":""}"#
            )
            .status,
        200
    );
}
