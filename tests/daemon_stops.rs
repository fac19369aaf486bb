//! Stops without waits that cannot change the outcome: a container whose init SIGTERM cannot
//! reach (it ignores it, or it is its pid namespace's init without a handler) is killed at
//! once; one that handles SIGTERM gets the grace it needs and no more; one that never exits
//! is killed when the grace is over. Shutdown ends as soon as every container is down.
//! Needs root, loop devices, squashfs and overlayfs; skips with the reason otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::device::Device;
use common::rootfs::Spec;
use common::wait_for;
use serde_json::json;

/// Long enough that a test can tell a skipped grace from a waited one.
const GRACE: u64 = 4;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn app(name: &str, script: &str) -> Spec {
    Spec::new(name, script, json!({"restart_policy":"container"}))
}

/// Every process whose command line holds `marker` has exec'd `sleep` (the shell before
/// the exec holds the marker too, and has not set its traps yet).
fn sleeping(marker: &str, n: usize) -> bool {
    let pids = Device::pids_with(marker);
    pids.len() == n
        && pids.iter().all(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep")
        })
}

/// PUT stop, then the time until `GET /containers` says STOPPED.
fn timed_stop(dev: &Device, name: &str) -> Duration {
    let t0 = Instant::now();
    assert_eq!(dev.action(name, "stop").0, 200);
    dev.wait_status(name, "STOPPED", secs(GRACE + 5));
    t0.elapsed()
}

#[test]
fn stopping_an_init_that_sigterm_cannot_reach_skips_the_grace() {
    require_containers!("unreachable inits");
    let dev = Device::boot(
        &[
            // busybox sleep as pid 1 of its namespace: no handler, the kernel drops SIGTERM.
            app("u1-shielded", "exec sleep 34001"),
            // SIG_IGN survives the exec.
            app("u1-ignores", "trap '' TERM; exec sleep 34002"),
        ],
        &[&format!("TERN_STOP_GRACE={GRACE}")],
    );
    dev.wait_status("u1-ignores", "STARTED", secs(20));
    dev.wait_status("u1-shielded", "STARTED", secs(20));
    assert!(wait_for(secs(5), || sleeping("sleep 3400", 2)));
    for name in ["u1-shielded", "u1-ignores"] {
        let took = timed_stop(&dev, name);
        assert!(
            took < Duration::from_millis(1500),
            "{name}: stop took {took:?}"
        );
    }
    assert!(Device::pids_with("sleep 3400").is_empty());
    let log = dev.d.log_text();
    assert!(
        log.contains("kernel drops the signal); SIGKILL now"),
        "{log}"
    );
    assert!(log.contains("it ignores SIGTERM); SIGKILL now"), "{log}");
    // A restart pays no grace either.
    assert_eq!(dev.action("u1-shielded", "start").0, 200);
    dev.wait_status("u1-shielded", "STARTED", secs(10));
    assert!(wait_for(secs(5), || sleeping("sleep 34001", 1)));
    let before = Device::pids_with("sleep 34001");
    let t0 = Instant::now();
    assert_eq!(dev.action("u1-shielded", "restart").0, 200);
    assert!(wait_for(secs(GRACE + 5), || {
        let now = Device::pids_with("sleep 34001");
        now.len() == 1 && now != before
    }));
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "restart took {:?}",
        t0.elapsed()
    );
}

#[test]
fn an_init_that_handles_sigterm_gets_the_time_it_takes() {
    require_containers!("handled SIGTERM");
    let dev = Device::boot(
        &[app(
            "h1-slow",
            "trap 'echo h1 term; sleep 1; exit 0' TERM; echo h1 armed; \
             while true; do sleep 0.1; done",
        )],
        &[&format!("TERN_STOP_GRACE={GRACE}")],
    );
    dev.wait_status("h1-slow", "STARTED", secs(20));
    dev.wait_console("h1-slow", "h1 armed", secs(10));
    let took = timed_stop(&dev, "h1-slow");
    assert!(
        took >= secs(1),
        "the handler's second was cut short: {took:?}"
    );
    assert!(
        took < secs(GRACE - 1),
        "the stop waited the grace out: {took:?}"
    );
    dev.wait_console("h1-slow", "h1 term", secs(5));
    assert!(!dev.d.log_text().contains("h1-slow: still running"));
}

#[test]
fn an_init_that_handles_sigterm_and_stays_is_killed_at_the_grace() {
    require_containers!("stubborn init");
    let dev = Device::boot(
        &[app(
            "k1-stays",
            "trap 'echo k1 term' TERM; echo k1 armed; while true; do sleep 0.1; done",
        )],
        &[&format!("TERN_STOP_GRACE={GRACE}")],
    );
    dev.wait_status("k1-stays", "STARTED", secs(20));
    dev.wait_console("k1-stays", "k1 armed", secs(10));
    let took = timed_stop(&dev, "k1-stays");
    assert!(took >= secs(GRACE), "killed before the grace: {took:?}");
    assert!(took < secs(GRACE + 2), "the kill came late: {took:?}");
    dev.wait_console("k1-stays", "k1 term", secs(5));
    let log = dev.d.log_text();
    assert!(log.contains(&format!(
        "k1-stays: still running {GRACE}s after SIGTERM; SIGKILL"
    )));
}

#[test]
fn shutdown_ends_as_soon_as_every_container_is_down() {
    require_containers!("prompt shutdown");
    let mut dev = Device::boot(
        &[
            Spec::new("d1-a", "exec sleep 34011", json!({})),
            Spec::new(
                "d1-b",
                "trap 'sleep 0.5; exit 0' TERM; echo d1 armed; while true; do sleep 0.1; done",
                json!({"group":"app","restart_policy":"container"}),
            ),
            Spec::new(
                "d1-c",
                "exec sleep 34013",
                json!({"group":"app","restart_policy":"container"}),
            ),
        ],
        // The default grace (5 s): nothing here may wait it out.
        &[],
    );
    dev.wait_status("d1-b", "STARTED", secs(20));
    dev.wait_status("d1-c", "STARTED", secs(20));
    assert!(wait_for(secs(5), || sleeping("sleep 3401", 2)));
    dev.wait_console("d1-b", "d1 armed", secs(10));
    let t0 = Instant::now();
    let status = dev.d.stop();
    let took = t0.elapsed();
    assert!(status.success(), "{status:?}: {}", dev.d.log_text());
    assert!(
        took >= Duration::from_millis(500),
        "d1-b's handler was cut short: {took:?}"
    );
    assert!(took < Duration::from_millis(2500), "shutdown took {took:?}");
    assert!(Device::pids_with("sleep 3401").is_empty());
}

#[test]
fn shutdown_never_waits_past_the_grace_and_a_second() {
    require_containers!("bounded shutdown");
    let mut dev = Device::boot(
        &[
            Spec::new(
                "g1-stays",
                "trap 'echo g1 term' TERM; echo g1 armed; while true; do sleep 0.1; done",
                json!({"restart_policy":"container"}),
            ),
            Spec::new(
                "g1-app",
                "trap 'echo g1-app term' TERM; echo g1-app armed; while true; do sleep 0.1; done",
                json!({"group":"app","restart_policy":"container"}),
            ),
        ],
        &["TERN_STOP_GRACE=2"],
    );
    dev.wait_console("g1-stays", "g1 armed", secs(20));
    dev.wait_console("g1-app", "g1-app armed", secs(20));
    let t0 = Instant::now();
    let status = dev.d.stop();
    let took = t0.elapsed();
    assert!(status.success(), "{status:?}: {}", dev.d.log_text());
    // The app group is stopped first and killed at its grace; the root group's member then
    // has what is left until the daemon's own bound (grace + 1 s) kills it.
    assert!(
        took >= secs(2),
        "shutdown cut a handler's grace short: {took:?}"
    );
    assert!(took < Duration::from_millis(4500), "shutdown took {took:?}");
    let log = dev.d.log_text();
    let app = log
        .find("g1-app: STARTED -> STOPPING")
        .expect("app stopped");
    let root = log
        .find("g1-stays: STARTED -> STOPPING")
        .expect("root stopped");
    assert!(app < root, "the later group was not stopped first:\n{log}");
}
