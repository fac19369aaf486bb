//! Log push end to end: a claimed device whose container writes lines on demand (a process-
//! mode container copying a FIFO to its console), against the test hub. What the hub stored
//! is compared with what was written: every line once, through an outage, a rotation, a
//! kill -9 between the hub's 200 and the cursor write, and a line of 1 MB.
//! Needs what the container tests need.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::device::Device;
use common::hub::{HubOpts, TestHub};
use common::rootfs::Spec;
use common::{Opts, TempDir, wait_for};
use serde_json::{Value, json};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

struct Rig {
    /// The container's name: each test its own (a container's cgroup is named after it).
    app: &'static str,
    hub: TestHub,
    dev: Device,
    fifo: PathBuf,
    _dir: TempDir,
}

/// A claimed device with one container, `app`, that copies `feed` (a FIFO) to its console.
fn rig(app: &'static str, extra_sets: &[&str]) -> Rig {
    let hub = TestHub::start_with(HubOpts {
        go_chunking: true,
        ..HubOpts::default()
    });
    let dir = TempDir::new("hublogs");
    let fifo = dir.path().join("feed");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut sets = hub.device_sets(dir.path());
    sets.extend(
        [
            "PH_UPDATER_INTERVAL=1",
            "PH_METADATA_USRMETA_INTERVAL=2",
            "PH_METADATA_DEVMETA_INTERVAL=2",
            "TERN_HUB_REQUEST_TIMEOUT=3",
            "TERN_CONTAINER_MODE=process",
            "TERN_STOP_GRACE=1",
            "PV_DEBUG_SHELL=0",
        ]
        .map(String::from),
    );
    sets.extend(extra_sets.iter().map(|s| s.to_string()));
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let script = format!("while true; do cat {}; done", fifo.display());
    let dev = Device::boot_with_opts(
        &[Spec::new(app, &script, json!({}))],
        &sets,
        &json!({}),
        Opts::default().may_exit(),
    );
    let id = hub.wait_for_device(secs(20)).expect("registers");
    assert!(hub.claim(&id));
    assert!(
        hub.wait_until(secs(30), |h| h.trail(&id).is_some()),
        "{}",
        dev.d.log_text()
    );
    Rig {
        app,
        hub,
        dev,
        fifo,
        _dir: dir,
    }
}

/// Write `text` into the container's FIFO (waiting for its reader, which restarts `cat`
/// after every writer).
fn feed(r: &Rig, text: &[u8]) {
    let fifo = &r.fifo;
    let until = Instant::now() + secs(20);
    let mut f = loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo)
        {
            Ok(f) => break f,
            Err(_) if Instant::now() < until => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("no reader on the feed: {e}\n{}", r.dev.d.log_text()),
        }
    };
    // Blocking from here: the reader is there and drains the pipe.
    nix::fcntl::fcntl(
        &f,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
    )
    .unwrap();
    f.write_all(text).unwrap();
}

/// `n` numbered lines tagged `tag`, each about 100 bytes.
fn lines(tag: &str, from: usize, to: usize) -> Vec<String> {
    (from..to)
        .map(|i| format!("{tag}-{i:05} {}", "x".repeat(88)))
        .collect()
}

fn text(lines: &[String]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect()
}

/// The messages the hub holds from the container, in order.
fn app_msgs(r: &Rig) -> Vec<String> {
    r.hub
        .logs()
        .iter()
        .filter(|e| e["plat"] == r.app)
        .map(|e| e["msg"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn tagged(r: &Rig, tag: &str) -> Vec<String> {
    app_msgs(r)
        .into_iter()
        .filter(|m| m.starts_with(&format!("{tag}-")))
        .collect()
}

fn wait_tagged(r: &Rig, tag: &str, n: usize, timeout: Duration) {
    let ok = wait_for(timeout, || tagged(r, tag).len() >= n);
    assert!(
        ok,
        "{} of {n} {tag} lines arrived\n{}",
        tagged(r, tag).len(),
        r.dev.d.log_text()
    );
}

/// `got` is `want`, in order: else say which lines are missing or repeated.
fn assert_same_lines(got: &[String], want: &[String], log: &str) {
    if got == want {
        return;
    }
    let mut count: HashMap<&str, usize> = HashMap::new();
    for g in got {
        *count.entry(g.as_str()).or_default() += 1;
    }
    let short = |l: &&String| l.get(..9).unwrap_or(l).to_string();
    let missing: Vec<String> = want
        .iter()
        .filter(|w| !count.contains_key(w.as_str()))
        .map(|l| short(&l))
        .collect();
    let twice: Vec<String> = want
        .iter()
        .filter(|w| count.get(w.as_str()).is_some_and(|n| *n > 1))
        .map(|l| short(&l))
        .collect();
    panic!(
        "{} lines for {}: missing {missing:?}, repeated {twice:?}\n{log}",
        got.len(),
        want.len()
    );
}

/// An entry as the hub stored it: platform, time and message (a line's identity).
fn entry_key(e: &Value) -> String {
    let plat = e["plat"].as_str().unwrap_or_default();
    let msg = e["msg"].as_str().unwrap_or_default();
    if plat == "pantavisor" {
        format!("{plat} {} {msg}", e["tsec"])
    } else {
        key(plat, msg)
    }
}

fn key(plat: &str, msg: &str) -> String {
    format!("{plat} {msg}")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn lines_written_before_and_during_a_hub_outage_arrive_once_with_terns_own_levels() {
    require_containers!("log push outage");
    let start = unix_now();
    let r = rig("lg-outage", &[]);
    let before = lines("pre", 0, 300);
    feed(&r, &text(&before));
    wait_tagged(&r, "pre", 300, secs(30));
    r.hub.set_down(true);
    let during = lines("out", 0, 300);
    feed(&r, &text(&during));
    r.dev.wait_console(r.app, "out-00299", secs(10));
    std::thread::sleep(secs(4));
    r.hub.set_down(false);
    wait_tagged(&r, "out", 300, secs(60));
    std::thread::sleep(secs(3));
    assert_same_lines(&tagged(&r, "pre"), &before, "");
    assert_same_lines(&tagged(&r, "out"), &during, &r.dev.d.log_text());
    let logs = r.hub.logs();
    let entry = logs.iter().find(|e| e["plat"] == r.app).unwrap();
    assert_eq!(
        (&entry["src"], &entry["rev"], &entry["lvl"]),
        (&json!("lxc/console.log"), &json!("0"), &json!("INFO"))
    );
    // Tern's own lines: platform pantavisor, with the time and level of the line.
    let own: Vec<&Value> = logs.iter().filter(|e| e["plat"] == "pantavisor").collect();
    assert!(!own.is_empty());
    assert!(own.iter().all(|e| e["src"] == "tern.log"));
    let now = unix_now();
    assert!(
        own.iter().all(|e| e["tsec"]
            .as_u64()
            .is_some_and(|t| t + 2 >= start && t <= now)),
        "{own:?}"
    );
    let warn = own
        .iter()
        .find(|e| e["msg"].as_str().unwrap_or("").contains("got no answer"))
        .expect("the outage's warning reached the hub");
    assert_eq!(warn["lvl"], "WARN");
    let disk = std::fs::read_to_string(r.dev.d.storage.join("logs/tern.log")).unwrap();
    assert!(disk.contains(&format!("WARN  {}", warn["msg"].as_str().unwrap())));
}

#[test]
fn rotation_while_batches_are_in_flight_loses_and_repeats_nothing() {
    require_containers!("log push rotation");
    let r = rig("lg-rotate", &["TERN_CONSOLE_MAXSIZE=32768"]);
    // Each answer takes a while: rotations happen while a batch is out.
    r.hub.stall("/logs/", Duration::from_millis(700));
    let all = lines("rot", 0, 1000);
    for chunk in all.chunks(100) {
        feed(&r, &text(chunk));
        std::thread::sleep(Duration::from_millis(1500));
    }
    wait_tagged(&r, "rot", 1000, secs(60));
    std::thread::sleep(secs(3));
    assert!(
        r.dev
            .d
            .storage
            .join(format!("logs/0/{}/lxc/console.log.1", r.app))
            .exists(),
        "the console log rotated"
    );
    assert_same_lines(&tagged(&r, "rot"), &all, &r.dev.d.log_text());
}

#[test]
fn a_line_of_one_megabyte_arrives_whole_when_its_pieces_are_joined() {
    require_containers!("log push long line");
    let r = rig("lg-long", &[]);
    let long: String = (0..1_048_576u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let line = format!("big-{long}");
    feed(&r, format!("{line}\nafter-00000\n").as_bytes());
    wait_tagged(&r, "after", 1, secs(30));
    let msgs = app_msgs(&r);
    let start = msgs.iter().position(|m| m.starts_with("big-")).unwrap();
    let end = msgs.iter().position(|m| m == "after-00000").unwrap();
    assert!(end - start >= 4, "split into {} pieces", end - start);
    assert_eq!(msgs[start..end].concat(), line);
    let posts = r.hub.requests_to("/logs/");
    assert!(
        posts
            .iter()
            .all(|p| p.body_len <= 256 * 1024 && p.status == 200)
    );
}

#[test]
fn a_kill_9_between_the_hubs_200_and_the_cursor_write_resends_that_batch_once() {
    require_containers!("log push kill -9");
    let mut r = rig("lg-kill", &[]);
    let first = lines("k1", 0, 50);
    feed(&r, &text(&first));
    wait_tagged(&r, "k1", 50, secs(30));
    // Lines the hub refuses for now: on disk, not acknowledged.
    r.hub.fail("/logs/", 503, None);
    let second = lines("k2", 0, 350);
    feed(&r, &text(&second));
    r.dev.wait_console(r.app, "k2-00349", secs(10));
    r.dev.d.stop();
    r.hub.clear_fail("/logs/");
    let n0 = r.hub.logs().len();
    // The next start dies at the container log's first cursor write: after the hub's 200
    // for that batch, before the cursor is on disk.
    r.dev
        .d
        .opts
        .env
        .push(("TERN_TEST_CRASH_ON".into(), "%2Flg-kill%2F".into()));
    r.dev.d.spawn();
    let died = wait_for(secs(30), || {
        r.dev
            .d
            .child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_some())
    });
    assert!(
        died,
        "no crash at the cursor write:\n{}",
        r.dev.d.log_text()
    );
    r.dev.d.kill9();
    // The container's batch is the last one the hub took before the crash.
    let batch: Vec<String> = r.hub.logs()[n0..]
        .iter()
        .map(entry_key)
        .filter(|k| k.starts_with("lg-kill "))
        .collect();
    assert!(!batch.is_empty(), "no batch before the crash");
    r.dev.d.opts.env.retain(|(k, _)| k != "TERN_TEST_CRASH_ON");
    r.dev.d.spawn();
    let count = |r: &Rig| {
        let mut c: HashMap<String, usize> = HashMap::new();
        for e in r.hub.logs() {
            *c.entry(entry_key(&e)).or_default() += 1;
        }
        c
    };
    let ok = wait_for(secs(60), || {
        let c = count(&r);
        second.iter().all(|l| c.contains_key(&key(r.app, l)))
            && batch.iter().all(|k| c.get(k).is_some_and(|n| *n >= 2))
    });
    assert!(ok, "not everything arrived:\n{}", r.dev.d.log_text());
    std::thread::sleep(secs(3));
    let c = count(&r);
    // The batch went exactly once more; every other line once. (Only the numbered lines
    // are unique: the console's "not isolated" notice is written at every start.)
    assert!(
        batch.iter().any(|k| k.starts_with("lg-kill k2-")),
        "{batch:?}"
    );
    for k in batch.iter().filter(|k| k.starts_with("lg-kill k2-")) {
        assert_eq!(c[k], 2, "{k}");
    }
    for l in &second {
        let k = key(r.app, l);
        let want = if batch.contains(&k) { 2 } else { 1 };
        assert_eq!(c[&k], want, "{k}");
    }
    assert_eq!(tagged(&r, "k1"), first);
}

#[test]
fn a_quiet_device_sends_no_log_requests() {
    require_containers!("log push idle");
    let r = rig("lg-quiet", &["PV_LOG_LEVEL=3"]);
    feed(&r, &text(&lines("q", 0, 10)));
    wait_tagged(&r, "q", 10, secs(30));
    // Let the start's own lines drain, then watch without touching the control socket.
    std::thread::sleep(secs(6));
    let before = r.hub.requests_to("/logs/").len();
    let steps_before = r.hub.requests_to("/trails/").len();
    std::thread::sleep(secs(8));
    let after = r.hub.requests_to("/logs/").len();
    assert!(r.hub.requests_to("/trails/").len() > steps_before + 4);
    assert_eq!(after, before, "log posts from a quiet device");
}

/// Latencies (µs) of `GET /steps` on fresh connections until `stop`.
fn steps_latencies(socket: &std::path::Path, stop: impl Fn() -> bool) -> Vec<f64> {
    let mut out = Vec::new();
    while !stop() {
        let t = Instant::now();
        if common::try_request(socket, "GET", "/steps", b"").is_some() {
            out.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    out
}

/// p50, p90 and p99.
fn percentiles(mut v: Vec<f64>) -> [f64; 3] {
    if v.is_empty() {
        return [0.0; 3];
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
    [at(0.5), at(0.9), at(0.99)]
}

#[test]
#[ignore = "a benchmark: make bench runs it"]
fn bench_steps_latency_while_ten_megabytes_of_logs_drain() {
    require_containers!("log push drain bench");
    // Info level: at debug every measured request would be a log line to push as well.
    let r = rig(
        "lg-bench",
        &["TERN_CONSOLE_MAXSIZE=33554432", "PV_LOG_LEVEL=3"],
    );
    // 10 MB of console lines, held on the device (the hub refuses them for now).
    r.hub.fail("/logs/", 503, None);
    let all = lines("dr", 0, 100_000);
    let bytes = text(&all);
    feed(&r, &bytes);
    let console = r
        .dev
        .d
        .storage
        .join(format!("logs/0/{}/lxc/console.log", r.app));
    assert!(wait_for(secs(60), || {
        std::fs::metadata(&console).is_ok_and(|m| m.len() >= bytes.len() as u64)
    }));
    let socket = r.dev.d.socket.clone();
    let t = Instant::now();
    let idle = steps_latencies(&socket, || t.elapsed() > secs(3));
    let posts_before = r.hub.requests_to("/logs/").len();
    r.hub.clear_fail("/logs/");
    let t0 = Instant::now();
    // Done when the hub holds as many entries again as there are lines (checked cheaply, so
    // the measuring thread does not compete with the daemon for the CPU).
    let want = r.hub.log_count() + all.len();
    let during = steps_latencies(&socket, || {
        r.hub.log_count() >= want || t0.elapsed() > secs(300)
    });
    wait_tagged(&r, "dr", all.len(), secs(120));
    let drain = t0.elapsed();
    assert_same_lines(&tagged(&r, "dr"), &all, "");
    let posts = r.hub.requests_to("/logs/")[posts_before..]
        .iter()
        .filter(|p| p.status == 200)
        .count();
    let (n_idle, n_during) = (idle.len(), during.len());
    let idle = percentiles(idle);
    let during = percentiles(during);
    println!("log push, 10 MB of console lines (100,000 lines) drained to the hub:");
    println!(
        "| drain time (includes up to one backoff delay after the hub starts taking them) | {:.1} s |",
        drain.as_secs_f64()
    );
    println!("| POST /logs/ answered 200 | {posts} |");
    for (i, name) in ["p50", "p90", "p99"].iter().enumerate() {
        println!(
            "| `GET /steps` {name}, idle ({n_idle}) → while draining ({n_during}) | {:.0} µs → {:.0} µs ({:.2}×) |",
            idle[i],
            during[i],
            during[i] / idle[i].max(1.0)
        );
    }
}

#[test]
#[ignore = "a benchmark: make bench runs it"]
fn bench_idle_hour_with_log_push_on() {
    require_containers!("log push idle bench");
    let window: u64 = std::env::var("TERN_BENCH_HUB_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    // Pantavisor's default intervals, its shipped log level (4, debug), log push on.
    let r = rig(
        "lg-idle",
        &[
            "PH_UPDATER_INTERVAL=5",
            "PH_METADATA_USRMETA_INTERVAL=5",
            "PH_METADATA_DEVMETA_INTERVAL=10",
            "PV_LOG_LEVEL=4",
        ],
    );
    feed(&r, &text(&lines("idle", 0, 10)));
    wait_tagged(&r, "idle", 10, secs(30));
    // The start's own lines drain; then nobody touches the control socket.
    std::thread::sleep(secs(8));
    let before = r.hub.stats();
    let logs_before = r.hub.requests_to("/logs/").len();
    std::thread::sleep(secs(window));
    let after = r.hub.stats();
    let logs = (r.hub.requests_to("/logs/").len() - logs_before) as u64 * 3600 / window;
    let req = (after.requests - before.requests) * 3600 / window;
    let bytes =
        (after.bytes_in + after.bytes_out - before.bytes_in - before.bytes_out) * 3600 / window;
    println!(
        "log push on, quiet device, idle hour ({window} s window, intervals 5/5/10 s, PV_LOG_LEVEL=4):"
    );
    println!("| per idle hour | Tern | Pantavisor (research §7) |");
    println!("|---|---|---|");
    println!("| POST /logs/ | {logs} | ≈ 5,000 |");
    println!("| all requests | {req} | 6,828 |");
    println!("| bytes, both ways | {bytes} (application) | ≈ 28.8 MB (on the wire) |");
}
