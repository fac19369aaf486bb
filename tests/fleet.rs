//! A fleet of Tern daemons against one test hub: what each device costs the hub.
//!
//! Both tests run the same scenario ([`run_fleet`]): boot N daemons in process mode (each with
//! its own storage and run dir, a two-container revision), claim them all, power-cycle the
//! whole fleet at once (stop all, start all: a site whose power comes back), watch the hub
//! while the fleet idles, post one update to every device at the same moment and wait until
//! each is final. `fleet_smoke` (10 devices, about a minute, part of `make test`) checks
//! what a user would: all claimed, all DONE, nothing failed, the steps polls jittered.
//! `fleet_figures` (ignored; `make fleet`) runs 200 devices, with and without jitter, and
//! prints the figures the README's "Fleet" section quotes.
//!
//! Intervals are Pantavisor's defaults (steps 5 s, user meta 5 s, device meta 10 s), so the
//! traffic compares with research §7's 1,800 requests per device-hour.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::device::Device;
use common::hub::{HubStats, TestHub};
use common::rootfs::Spec;
use common::{TempDir, wait_for};
use serde_json::{Value, json};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// One run of the scenario.
struct Plan {
    devices: usize,
    /// How long the idle window after the power cycle lasts.
    idle: Duration,
    /// `TERN_HUB_JITTER` of every daemon (0: Pantavisor's lockstep).
    jitter: u8,
    /// Size of the object every device downloads in the rollout.
    payload: usize,
}

struct Member {
    dev: Device,
    id: String,
    _dir: TempDir,
}

/// What the hub saw in a span of time.
struct Window {
    span: Duration,
    requests: u64,
    handshakes: u64,
    bytes: u64,
    /// The most requests in one second of the span.
    peak_rps: u64,
    /// CPU time of the test process (the hub's threads, and this test idly waiting).
    cpu: Duration,
}

struct Outcome {
    idle: Window,
    rollout: Window,
    /// Time from the step posted to each device's DONE, sorted.
    done: Vec<Duration>,
    /// Devices that did not reach DONE: (device id, status, message).
    failed: Vec<(String, String, String)>,
    rss_kb: u64,
    /// Per device: the gaps between its steps polls in the idle window.
    steps_gaps: Vec<Vec<Duration>>,
}

/// Device `n`'s two containers. Names differ between devices: a container's cgroup is
/// `tern/<name>` on the host, which every daemon on this machine shares.
fn containers(n: usize, version: u32) -> Vec<Spec> {
    vec![
        Spec::new(
            &format!("f{n}-app"),
            &format!("exec sleep 71{version:02}"),
            json!({}),
        ),
        Spec::new(&format!("f{n}-aux"), "exec sleep 7299", json!({})),
    ]
}

/// CPU time (user + system) of this process so far, from `/proc/self/stat` (clock ticks of
/// 1/100 s, Linux's USER_HZ).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at state, field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn boot_member(hub: &TestHub, n: usize, jitter: u8) -> (Device, TempDir) {
    let dir = TempDir::new("fleet");
    let mut sets = hub.device_sets(dir.path());
    sets.extend([
        "PH_UPDATER_INTERVAL=5".to_string(),
        "PH_METADATA_USRMETA_INTERVAL=5".into(),
        "PH_METADATA_DEVMETA_INTERVAL=10".into(),
        format!("TERN_HUB_JITTER={jitter}"),
        "TERN_CONTAINER_MODE=process".into(),
        "TERN_DEV_REBOOT=reexec".into(),
        "PV_UPDATER_COMMIT_DELAY=1".into(),
        "TERN_STOP_GRACE=1".into(),
        "PV_DEBUG_SHELL=0".into(),
        "PV_LOG_LEVEL=3".into(),
        // Two hundred daemons cannot share the v1 API's default port; none needs it.
        "TERN_V1_ADDRESS=off".into(),
    ]);
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let dev = Device::boot_with_opts(
        &containers(n, 1),
        &sets,
        &json!({}),
        common::Opts::default(),
    );
    (dev, dir)
}

/// Boots the fleet, a batch of daemons at a time, and waits for each to register.
fn boot_fleet(hub: &TestHub, plan: &Plan) -> Vec<Member> {
    let mut members = Vec::new();
    let batch = 10;
    while members.len() < plan.devices {
        let first = members.len();
        let n = batch.min(plan.devices - first);
        let booted: Vec<(Device, TempDir)> = std::thread::scope(|s| {
            let handles: Vec<_> = (first..first + n)
                .map(|i| s.spawn(move || boot_member(hub, i, plan.jitter)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (dev, dir) in booted {
            let hint = dev.d.rundir.join("device-id");
            assert!(
                wait_for(secs(60), || std::fs::read_to_string(&hint)
                    .is_ok_and(|s| !s.trim().is_empty())),
                "device never registered:\n{}",
                dev.d.log_text()
            );
            let id = std::fs::read_to_string(&hint).unwrap().trim().to_string();
            members.push(Member { dev, id, _dir: dir });
        }
    }
    members
}

fn hub_state(hub: &TestHub, id: &str) -> String {
    hub.device_meta(id)["pantahub.state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Claims every device and waits until each has synced its factory revision and idles.
fn claim_fleet(hub: &TestHub, members: &[Member]) {
    for m in members {
        assert!(
            wait_for(secs(60), || hub.claim(&m.id)),
            "{} could not be claimed",
            m.id
        );
    }
    let all_idle = hub.wait_until(secs(120 + members.len() as u64), |h| {
        members
            .iter()
            .all(|m| h.trail(&m.id).is_some() && hub_state(h, &m.id) == "idle")
    });
    let stuck: Vec<String> = members
        .iter()
        .filter(|m| hub_state(hub, &m.id) != "idle")
        .map(|m| format!("{} ({})", m.id, hub_state(hub, &m.id)))
        .collect();
    assert!(all_idle, "not idle after the claim: {stuck:?}");
}

/// Stops every daemon, then starts them all at the same moment.
fn power_cycle(members: &mut [Member]) {
    std::thread::scope(|s| {
        for m in members.iter_mut() {
            s.spawn(move || m.dev.d.stop());
        }
    });
    std::thread::scope(|s| {
        for m in members.iter_mut() {
            s.spawn(move || m.dev.d.spawn());
        }
    });
}

/// The hub's counters and CPU now, to measure a window from.
struct Mark {
    at: Instant,
    stats: HubStats,
    logged: usize,
    cpu: Duration,
}

fn mark(hub: &TestHub) -> Mark {
    Mark {
        at: Instant::now(),
        stats: hub.stats(),
        logged: hub.requests().len(),
        cpu: process_cpu(),
    }
}

fn window(hub: &TestHub, from: &Mark) -> Window {
    let now = mark(hub);
    let mut per_second = std::collections::HashMap::new();
    for r in &hub.requests()[from.logged..] {
        *per_second
            .entry(r.at.saturating_duration_since(from.at).as_secs())
            .or_insert(0u64) += 1;
    }
    Window {
        span: now.at - from.at,
        requests: now.stats.requests - from.stats.requests,
        handshakes: now.stats.handshakes - from.stats.handshakes,
        bytes: now.stats.bytes_in + now.stats.bytes_out
            - from.stats.bytes_in
            - from.stats.bytes_out,
        peak_rps: per_second.values().copied().max().unwrap_or(0),
        cpu: now.cpu - from.cpu,
    }
}

/// The gaps between each device's steps polls logged since `from`.
fn steps_gaps(hub: &TestHub, members: &[Member], from: &Mark) -> Vec<Vec<Duration>> {
    let log = hub.requests();
    members
        .iter()
        .map(|m| {
            let prefix = format!("/trails/{}/steps?", m.id);
            let at: Vec<Instant> = log[from.logged..]
                .iter()
                .filter(|r| r.path.starts_with(&prefix))
                .map(|r| r.at)
                .collect();
            at.windows(2).map(|w| w[1] - w[0]).collect()
        })
        .collect()
}

/// Posts revision 1 (one container changed, and a payload object) to every device at once,
/// and waits until each is final on the hub.
fn rollout(
    hub: &TestHub,
    members: &[Member],
    payload: usize,
) -> (Vec<Duration>, Vec<(String, String, String)>) {
    let mut blob = Vec::with_capacity(payload);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while blob.len() < payload {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        blob.extend_from_slice(&x.to_le_bytes());
    }
    let payload_sha = hub.add_object(&blob);
    let mut added = HashSet::new();
    let mut states = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let (state, objects) = m.dev.revision_of(&containers(i, 2));
        for (sha, bytes) in objects {
            if added.insert(sha) {
                hub.add_object(&bytes);
            }
        }
        let mut state: Value = serde_json::from_slice(&state).unwrap();
        state[format!("f{i}-app/payload.bin")] = json!(payload_sha);
        states.push(state);
    }
    let t0 = Instant::now();
    for (m, state) in members.iter().zip(states) {
        hub.post_step(&m.id, 1, state, "fleet rollout");
    }
    let status = |id: &str| {
        hub.progress(id, 1)
            .map(|p| {
                (
                    p["status"].as_str().unwrap_or_default().to_string(),
                    p["status-msg"].as_str().unwrap_or_default().to_string(),
                )
            })
            .unwrap_or_default()
    };
    let mut done: Vec<Option<Duration>> = vec![None; members.len()];
    let deadline = t0 + secs(120 + members.len() as u64);
    // Looked at every 100 ms, not the 20 ms of `wait_until`: this process's CPU time is
    // counted as the hub's, and 200 lookups every 20 ms would weigh in it.
    while Instant::now() < deadline {
        for (i, m) in members.iter().enumerate() {
            if done[i].is_none() && status(&m.id).0 == "DONE" {
                done[i] = Some(t0.elapsed());
            }
        }
        let all_final = members
            .iter()
            .all(|m| matches!(status(&m.id).0.as_str(), "DONE" | "ERROR" | "WONTGO"));
        if all_final {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let failed = members
        .iter()
        .filter(|m| status(&m.id).0 != "DONE")
        .map(|m| {
            let (s, msg) = status(&m.id);
            (m.id.clone(), s, msg)
        })
        .collect();
    let mut done: Vec<Duration> = done.into_iter().flatten().collect();
    done.sort();
    (done, failed)
}

fn run_fleet(plan: &Plan) -> Outcome {
    let hub = TestHub::start();
    let mut members = boot_fleet(&hub, plan);
    claim_fleet(&hub, &members);
    let before = mark(&hub);
    power_cycle(&mut members);
    // Logins and the trail check after the power cycle: back when each device polls steps.
    let back = hub.wait_until(secs(60 + members.len() as u64 / 2), |h| {
        let log = h.requests();
        members.iter().all(|m| {
            let prefix = format!("/trails/{}/steps?", m.id);
            log[before.logged..]
                .iter()
                .any(|r| r.path.starts_with(&prefix))
        })
    });
    assert!(
        back,
        "the fleet did not come back to idle after the power cycle"
    );
    let from = mark(&hub);
    std::thread::sleep(plan.idle);
    let idle = window(&hub, &from);
    let gaps = steps_gaps(&hub, &members, &from);
    let from = mark(&hub);
    let (done, failed) = rollout(&hub, &members, plan.payload);
    let rollout = window(&hub, &from);
    let rss_kb = members.iter().map(|m| m.dev.d.status_kb("VmRSS:")).sum();
    for m in &members {
        if failed.iter().any(|(id, _, _)| *id == m.id) {
            println!(
                "--- log of failed device {} ---\n{}",
                m.id,
                m.dev.d.log_text()
            );
        }
    }
    Outcome {
        idle,
        rollout,
        done,
        failed,
        rss_kb,
        steps_gaps: gaps,
    }
}

fn per_1000(n: u64, w: &Window, devices: usize) -> f64 {
    n as f64 / w.span.as_secs_f64() * 1000.0 / devices as f64
}

fn print_outcome(plan: &Plan, o: &Outcome) {
    let n = plan.devices;
    let quantile = |q: f64| {
        o.done
            .get(((n as f64 * q).ceil() as usize).saturating_sub(1))
            .map_or("never".to_string(), |d| format!("{:.1} s", d.as_secs_f64()))
    };
    let row = |name: &str, w: &Window| {
        println!(
            "| {name} | {:.0} s | {:.1} | {:.0} | {:.1} | {:.0} | {} | {:.2} s ({:.1} % of a core) |",
            w.span.as_secs_f64(),
            per_1000(w.requests, w, n),
            per_1000(w.bytes, w, n),
            w.peak_rps as f64 * 1000.0 / n as f64,
            w.requests as f64 * 3600.0 / w.span.as_secs_f64() / n as f64,
            w.handshakes,
            w.cpu.as_secs_f64(),
            w.cpu.as_secs_f64() * 100.0 / w.span.as_secs_f64(),
        );
    };
    println!(
        "fleet of {n}, TERN_HUB_JITTER={}, intervals 5/5/10 s, payload {} KiB:",
        plan.jitter,
        plan.payload / 1024
    );
    println!(
        "| window | span | requests/s per 1,000 devices | bytes/s per 1,000 devices | peak requests in one second per 1,000 devices | requests per device-hour | TLS handshakes | test-process CPU (hub threads) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    row("idle after a power cycle", &o.idle);
    row("rollout (post → all final)", &o.rollout);
    println!(
        "| DONE: 50 % after {}, 100 % after {}; {} of {n} DONE; daemons' VmRSS sum {} MB ({} kB each) |",
        quantile(0.5),
        quantile(1.0),
        o.done.len(),
        o.rss_kb / 1024,
        o.rss_kb / n as u64
    );
    for (id, status, msg) in &o.failed {
        println!("| FAILED {id}: {status} {msg} |");
    }
}

#[test]
fn fleet_smoke() {
    require_containers!("fleet smoke");
    let plan = Plan {
        devices: 10,
        idle: secs(20),
        jitter: 10,
        payload: 64 * 1024,
    };
    let o = run_fleet(&plan);
    print_outcome(&plan, &o);
    assert!(o.failed.is_empty(), "failed: {:?}", o.failed);
    assert_eq!(o.done.len(), plan.devices);
    // Idle, a device costs the hub its steps and user-meta polls (≈ 1,440/h at 5 s), far
    // from Pantavisor's 1,800, and no new TLS session.
    let per_hour = o.idle.requests as f64 * 3600.0 / o.idle.span.as_secs_f64() / 10.0;
    assert!(per_hour < 1620.0, "{per_hour:.0} requests per device-hour");
    assert_eq!(o.idle.handshakes, 0, "idle devices opened new connections");
    // The hub sees jittered polls: the gaps between a device's steps polls move around the
    // 5 s interval (±10 %), never beyond it by more than the spread and some scheduling.
    let gaps: Vec<Duration> = o.steps_gaps.iter().flatten().copied().collect();
    assert!(gaps.len() >= 20, "too few polls: {gaps:?}");
    assert!(
        gaps.iter().all(|g| *g >= secs(4) && *g <= secs(8)),
        "{gaps:?}"
    );
    let off_beat = gaps
        .iter()
        .filter(|g| g.as_millis().abs_diff(5000) > 100)
        .count();
    assert!(off_beat * 2 > gaps.len(), "polls not jittered: {gaps:?}");
}

#[test]
#[ignore = "a fleet of 200 daemons: make fleet runs it"]
fn fleet_figures() {
    require_containers!("fleet figures");
    let devices = env_u64("TERN_FLEET_DEVICES", 200) as usize;
    let idle = secs(env_u64("TERN_FLEET_IDLE_SECS", 60));
    let payload = env_u64("TERN_FLEET_PAYLOAD_KB", 256) as usize * 1024;
    let jitters = std::env::var("TERN_FLEET_JITTER").unwrap_or_else(|_| "10,0".into());
    for jitter in jitters.split(',').filter_map(|j| j.trim().parse().ok()) {
        let plan = Plan {
            devices,
            idle,
            jitter,
            payload,
        };
        let o = run_fleet(&plan);
        print_outcome(&plan, &o);
    }
}
