//! Hub client figures for `make bench` (ignored in `make test`): an idle claimed device's
//! requests, TLS handshakes and bytes per hour against the test hub, next to Pantavisor's
//! schedule for the same hour; time from a step posted to DONE for a 10 MB revision; download
//! speed beside `curl` fetching the same blob from the same hub.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::device::Device;
use common::hub::{HubOpts, TestHub};
use common::rootfs::Spec;
use common::{Opts, TempDir, wait_for};
use serde_json::{Value, json};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn boot(hub: &TestHub, dir: &TempDir, containers: &[Spec], intervals: [u64; 3]) -> Device {
    let mut sets = hub.device_sets(dir.path());
    sets.extend([
        format!("PH_UPDATER_INTERVAL={}", intervals[0]),
        format!("PH_METADATA_USRMETA_INTERVAL={}", intervals[1]),
        format!("PH_METADATA_DEVMETA_INTERVAL={}", intervals[2]),
        "TERN_DEV_REBOOT=reexec".into(),
        "PV_UPDATER_COMMIT_DELAY=1".into(),
        "TERN_STOP_GRACE=1".into(),
        "PV_DEBUG_SHELL=0".into(),
        "PV_LOG_LEVEL=3".into(),
    ]);
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    Device::boot_with_opts(containers, &sets, &json!({}), Opts::default())
}

fn claim_and_idle(hub: &TestHub, dev: &Device) -> String {
    let id = hub.wait_for_device(secs(20)).expect("registers");
    assert!(hub.claim(&id));
    let synced = hub.wait_until(secs(30), |h| h.trail(&id).is_some());
    let calls: Vec<String> = hub
        .requests()
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {}",
                r.method,
                &r.path[..r.path.len().min(40)],
                r.status,
                r.body_len
            )
        })
        .collect();
    assert!(synced, "{}\n{calls:#?}", dev.d.log_text());
    assert!(wait_for(secs(20), || {
        dev.d.get("/device-meta").json()["pantahub.state"] == "idle"
    }));
    id
}

#[test]
#[ignore = "a benchmark: make bench runs it"]
fn idle_hour_against_pantavisors_schedule() {
    require_containers!("hub idle bench");
    let window: u64 = std::env::var("TERN_BENCH_HUB_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    // Pantavisor (research §7, measured): 720 steps + 720 user-meta + 360 device-meta
    // requests an idle hour, each on its own connection and TLS 1.2 handshake, ≈ 7 MB.
    let (pv_req, pv_hs, pv_bytes) = (1800u64, 1800u64, 7_080_000u64);
    println!("hub idle hour ({window} s window, intervals 5/5/10 s, 1 KiB of user meta):");
    println!(
        "| per idle hour | requests (steps / user-meta / device-meta) | TLS handshakes | bytes, both ways | requests ÷ Pantavisor |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| Pantavisor (research §7) | {pv_req} (720 / 720 / 360) | {pv_hs} | {pv_bytes} (on the wire) | 1 |"
    );
    for etag in [false, true] {
        let hub = TestHub::start_with(HubOpts {
            etag_user_meta: etag,
            ..HubOpts::default()
        });
        let dir = TempDir::new("hubbench");
        // Pantavisor's default intervals: steps 5 s, user meta 5 s, device meta 10 s.
        let dev = boot(
            &hub,
            &dir,
            &[Spec::new("hb1-app", "exec sleep 5101", json!({}))],
            [5, 5, 10],
        );
        let id = claim_and_idle(&hub, &dev);
        // What a device typically carries: an authorized key and a few settings.
        hub.set_user_meta(
            &id,
            json!({
                "pvr-sdk.authorized_keys": format!("ssh-ed25519 {} user@host", "A".repeat(900)),
                "pantahub.log.push": "0",
                "app.mode": "normal",
            }),
        );
        std::thread::sleep(secs(6));
        let before = hub.stats();
        let seen = hub.requests().len();
        std::thread::sleep(secs(window));
        let after = hub.stats();
        let per_hour = |n: u64| n * 3600 / window;
        let calls = hub.requests();
        let count = |part: &str| {
            per_hour(
                calls[seen..]
                    .iter()
                    .filter(|r| r.path.contains(part))
                    .count() as u64,
            )
        };
        let req = per_hour(after.requests - before.requests);
        let hs = per_hour(after.handshakes - before.handshakes);
        let bytes = per_hour(after.bytes_in + after.bytes_out - before.bytes_in - before.bytes_out);
        println!(
            "| Tern, hub {} ETag | {req} ({} / {} / {}) | {hs} | {bytes} (application) | {:.3} |",
            if etag { "with" } else { "without" },
            count("/steps?"),
            count("/user-meta"),
            count("/device-meta"),
            req as f64 / pv_req as f64
        );
        if etag {
            println!(
                "daemon with a live hub connection: VmRSS {} kB, RssAnon {} kB",
                dev.d.status_kb("VmRSS:"),
                dev.d.status_kb("RssAnon:")
            );
        }
    }
}

#[test]
#[ignore = "a benchmark: make bench runs it"]
fn ten_megabyte_step_to_done_and_download_speed_beside_curl() {
    require_containers!("hub update bench");
    let hub = TestHub::start();
    let dir = TempDir::new("hubbench");
    let dev = boot(
        &hub,
        &dir,
        &[Spec::new("hb2-app", "exec sleep 5201", json!({}))],
        [1, 5, 10],
    );
    let id = claim_and_idle(&hub, &dev);
    let (state, objects) = dev.revision_of(&[Spec::new("hb2-app", "exec sleep 5202", json!({}))]);
    let mut state: Value = serde_json::from_slice(&state).unwrap();
    // 10 MB that does not compress: a counter hashed in blocks.
    let mut blob = Vec::with_capacity(10 << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while blob.len() < 10 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        blob.extend_from_slice(&x.to_le_bytes());
    }
    let sha = hub.add_object(&blob);
    state["hb2-app/payload.bin"] = json!(sha);
    for (_, bytes) in objects {
        hub.add_object(&bytes);
    }
    // pv-ctrl latency while nothing happens, then during the download.
    let socket = dev.d.socket.clone();
    let idle = latencies(&socket, Duration::from_secs(2));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let during = {
        let (socket, stop) = (socket.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut all = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                all.extend(latencies(&socket, Duration::from_millis(100)));
            }
            all
        })
    };
    let partial = dev.d.storage.join("cache/downloads").join(&sha);
    let object = dev.d.storage.join("objects").join(&sha);
    let t0 = Instant::now();
    hub.post_step(&id, 1, state, "10 MB");
    let mut started = None;
    let mut stored = None;
    let done = hub.wait_until(secs(120), |h| {
        if started.is_none() && partial.exists() {
            started = Some(Instant::now());
        }
        if stored.is_none() && object.exists() {
            stored = Some(Instant::now());
        }
        h.progress(&id, 1).is_some_and(|p| p["status"] == "DONE")
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let during = during.join().unwrap();
    assert!(done, "{}", dev.d.log_text());
    let total = t0.elapsed();
    let (Some(a), Some(b)) = (started, stored) else {
        panic!("download not observed");
    };
    let tern_mbs = 10.0 / (b - a).as_secs_f64();
    // curl fetches the same blob from the same hub with the URL the device used.
    let url = hub
        .requests()
        .iter()
        .rev()
        .find(|r| r.method == "GET" && r.path.starts_with("/local-s3/") && r.resp_len >= 10 << 20)
        .map(|r| format!("https://localhost:{}{}", hub.port(), r.path))
        .expect("the device's blob request");
    let t = Instant::now();
    let out = Command::new("curl")
        .args(["-sf", "-o", "/dev/null", "--cacert"])
        .arg(hub.ca_path())
        .arg(&url)
        .status();
    let curl = match out {
        Ok(s) if s.success() => format!("{:.1} MB/s", 10.0 / t.elapsed().as_secs_f64()),
        _ => "curl failed or missing".into(),
    };
    println!("hub update, 10 MB revision (steps poll 1 s):");
    println!("| step posted → DONE | {:.2} s |", total.as_secs_f64());
    println!("| download, Tern | {tern_mbs:.1} MB/s |");
    println!("| download, curl, same blob and hub | {curl} |");
    let (p50i, p99i) = percentiles(idle);
    let (p50d, p99d) = percentiles(during);
    println!(
        "| `GET /steps` p50 / p99, idle → during the update | {p50i:.0} / {p99i:.0} µs → {p50d:.0} / {p99d:.0} µs |"
    );
}

/// Latencies (µs) of `GET /steps` on fresh connections for `span`.
fn latencies(socket: &std::path::Path, span: Duration) -> Vec<f64> {
    let until = Instant::now() + span;
    let mut out = Vec::new();
    while Instant::now() < until {
        let t = Instant::now();
        if common::try_request(socket, "GET", "/steps", b"").is_some() {
            out.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    out
}

fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.99))
}
