//! Slow and hostile clients against the real daemon: per-caller quotas, the head deadline,
//! reserved slots for privileged callers, and the v1 listener's key deadline and own pool.
//!
//! An unprivileged caller is a process running as another uid: this test binary re-executed
//! (its `flood_helper` test, which does nothing unless `TERN_FLOOD` is set) with `setuid` by
//! `Command::uid`. It opens its connections, reports how many the daemon refused with 503 and
//! holds the others open. Needs root (skipped otherwise).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, Opts, free_port, read_reply, send_request};

const NOBODY: u32 = 65534;
const OTHER: u32 = 65533;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root to act as another uid");
            return;
        }
    };
}

/// Let other uids connect to the control socket (its mode follows the daemon's umask).
fn open_socket(d: &Daemon) {
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o777)).unwrap();
}

/// A flood from another uid, holding its connections until dropped.
struct Flood {
    child: Child,
    /// Still open after the flood.
    admitted: usize,
    /// Answered 503.
    refused: usize,
    /// Closed without an answer (replaced by the caller's own newer connection).
    closed: usize,
}

impl Drop for Flood {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `count` connections as `uid`: `silent` (nothing sent) or `head` (a head never finished).
fn flood(d: &Daemon, uid: u32, count: usize, mode: &str) -> Flood {
    flood_to(&d.socket.display().to_string(), uid, count, mode)
}

/// The same to any listener: `v1-byte` connects to the TCP address `to` and sends one byte.
fn flood_to(to: &str, uid: u32, count: usize, mode: &str) -> Flood {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "flood_helper", "--nocapture", "--test-threads=1"])
        .env("TERN_FLOOD", format!("{to}|{count}|{mode}"))
        .uid(uid)
        .gid(uid)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut line = None;
    for l in BufReader::new(out).lines() {
        let Ok(l) = l else { break };
        // libtest prints `test flood_helper ... ` in front of it.
        if let Some(at) = l.find("FLOOD ") {
            line = Some(l[at..].to_string());
            break;
        }
        seen.push(l);
    }
    let line = line.unwrap_or_else(|| panic!("the flood helper did not report: {seen:?}"));
    let num = |k: &str| -> usize {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    Flood {
        admitted: num("admitted="),
        refused: num("refused="),
        closed: num("closed="),
        child,
    }
}

/// A connection of the flood helper, on either listener.
trait ReadWrite: Read + Write {
    fn nonblocking(&self);
}
impl ReadWrite for UnixStream {
    fn nonblocking(&self) {
        self.set_nonblocking(true).unwrap();
    }
}
impl ReadWrite for TcpStream {
    fn nonblocking(&self) {
        self.set_nonblocking(true).unwrap();
    }
}

/// The helper side of [`flood`] (a no-op in a normal test run).
#[test]
fn flood_helper() {
    let Ok(spec) = std::env::var("TERN_FLOOD") else {
        return;
    };
    let mut parts = spec.split('|');
    let socket = parts.next().unwrap().to_string();
    let count: usize = parts.next().unwrap().parse().unwrap();
    let mode = parts.next().unwrap().to_string();
    let mut conns: Vec<Box<dyn ReadWrite>> = Vec::new();
    for _ in 0..count {
        let mut s: Box<dyn ReadWrite> = if mode == "v1-byte" {
            Box::new(TcpStream::connect(&socket).unwrap())
        } else {
            Box::new(UnixStream::connect(&socket).unwrap())
        };
        // A connection the daemon already refused (503, then closed) fails this write with
        // EPIPE; it is still counted below by the 503 it left to read.
        let _ = match mode.as_str() {
            "head" => s.write_all(b"GET /steps HTTP/1.1\r\n"),
            "v1-byte" => s.write_all(b"G"),
            _ => Ok(()),
        };
        conns.push(s);
        // One at a time, as the daemon sees them: the heads-in-flight count is by arrival.
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(300));
    let (mut refused, mut closed) = (0, 0);
    for s in &mut conns {
        s.nonblocking();
        let mut b = [0u8; 64];
        match s.read(&mut b) {
            Ok(n) if n > 0 && b[..n].starts_with(b"HTTP/1.1 503") => refused += 1,
            Ok(_) => closed += 1,
            Err(_) => {}
        }
    }
    let open = count - refused - closed;
    println!("FLOOD admitted={open} refused={refused} closed={closed}");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

fn get_ok(d: &Daemon) -> bool {
    d.get("/steps").status == 200
}

#[test]
fn a_flooding_caller_is_refused_while_another_is_served() {
    require_root!();
    let d = Daemon::start();
    open_socket(&d);
    // Silent connections are idle: past its cap the caller's newest replaces its oldest.
    let f = flood(&d, NOBODY, 40, "silent");
    assert_eq!(
        (f.admitted, f.refused + f.closed),
        (16, 24),
        "TERN_CTRL_MAX_PER_CALLER is 16"
    );
    // Heads take the place of its idle connections, four at most (its heads in flight).
    let heads = flood(&d, NOBODY, 8, "head");
    assert_eq!((heads.admitted, heads.refused), (4, 4));
    // Root and another uid are served while the flood holds its connections.
    for _ in 0..20 {
        assert!(get_ok(&d), "{}", d.log_text());
    }
    let other = flood(&d, OTHER, 1, "silent");
    assert_eq!((other.admitted, other.refused), (1, 0));
    drop(heads);
    // The flood is logged once, with a count to come, not once per refusal.
    let log = d.log_text();
    let lines = log
        .lines()
        .filter(|l| l.contains("flood: uid 65534"))
        .count();
    assert_eq!(lines, 1, "{log}");
}

#[test]
fn a_caller_gets_only_its_share_of_heads_in_flight() {
    require_root!();
    let d = Daemon::start();
    open_socket(&d);
    let f = flood(&d, NOBODY, 10, "head");
    assert_eq!(
        (f.admitted, f.refused),
        (4, 6),
        "TERN_CTRL_MAX_HEADS_PER_CALLER is 4"
    );
    assert!(get_ok(&d));
}

#[test]
fn a_mgmt_caller_gets_a_reserved_slot_when_the_table_is_full_of_unprivileged_ones() {
    require_root!();
    let d = Daemon::start_with(
        Opts::default()
            .set("TERN_CTRL_MAX_CONNECTIONS=8")
            .set("TERN_CTRL_RESERVED_CONNECTIONS=2")
            .set("TERN_CTRL_MAX_HEADS_PER_CALLER=16"),
    );
    open_socket(&d);
    // Unprivileged heads fill the unreserved share (8 - 2) and are refused past it.
    let f = flood(&d, NOBODY, 8, "head");
    assert_eq!((f.admitted, f.refused), (6, 2));
    // Another unprivileged caller gets in at the expense of the caller holding the most.
    let other = flood(&d, OTHER, 1, "silent");
    assert_eq!((other.admitted, other.refused), (1, 0));
    // Root (the host's management) still gets in, twice at once.
    let mut a = d.connect();
    let mut b = d.connect();
    for s in [&mut a, &mut b] {
        send_request(s, "GET", "/steps", b"");
        assert_eq!(read_reply(s).status, 200);
    }
}

#[test]
fn a_slow_head_is_closed_after_its_deadline() {
    let d = Daemon::start_with(Opts::default().set("TERN_CTRL_HEAD_TIMEOUT=1"));
    let mut s = d.connect();
    let start = Instant::now();
    s.write_all(b"GET /steps HTTP/1.1\r\n").unwrap();
    // Trickle a header byte every 200 ms: progress enough for the request timeout (30 s),
    // not for the head deadline.
    let mut w = s.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for b in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaa".iter() {
            if w.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let r = read_reply(&mut s);
    let took = start.elapsed();
    assert_eq!(r.sb(), (408, r#"{"Error":"Request timeout"}"#.to_string()));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
    assert!(common::daemon_closed(&mut s));
    let _ = trickle.join();
    assert!(get_ok(&d));
}

fn v1_daemon(extra: &[&str]) -> (Daemon, u16, String) {
    let port = free_port();
    let mut opts = Opts::default().set(&format!("TERN_V1_ADDRESS=127.0.0.1:{port}"));
    for kv in extra {
        opts = opts.set(kv);
    }
    let d = Daemon::start_with(opts);
    let key = std::fs::read_to_string(d.storage.join("cache/v1-api-key")).unwrap();
    (d, port, key)
}

fn v1_connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// One keyed request on `s`: the status.
fn v1_get(s: &mut TcpStream, path: &str, key: &str) -> u16 {
    write!(
        s,
        "GET {path}?apikey={key} HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        let n = s.read(&mut b).unwrap();
        assert!(n > 0, "closed before an answer");
        buf.extend_from_slice(&b[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(at) = text.find("\r\n\r\n") {
            let len: usize = text[..at]
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= at + 4 + len {
                return text[9..12].parse().unwrap();
            }
        }
    }
}

fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut b = [0u8; 256];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

#[test]
fn a_v1_client_without_a_key_is_dropped_at_the_deadline() {
    let (_d, port, key) = v1_daemon(&["TERN_CTRL_HEAD_TIMEOUT=1"]);
    let start = Instant::now();
    let mut silent = v1_connect(port);
    let mut one_byte = v1_connect(port);
    one_byte.write_all(b"G").unwrap();
    let mut keyed = v1_connect(port);
    assert_eq!(v1_get(&mut keyed, "/v1/device", &key), 200);
    assert!(closed_within(&mut silent, Duration::from_secs(3)));
    assert!(closed_within(&mut one_byte, Duration::from_secs(3)));
    assert!(start.elapsed() >= Duration::from_millis(900));
    // The connection that showed the key is kept alive past the deadline.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(v1_get(&mut keyed, "/v1/device", &key), 200);
}

#[test]
fn keyless_v1_connections_of_another_user_do_not_lock_out_a_key_holder() {
    require_root!();
    if !tern::api::tcp_peer::available() {
        eprintln!("skipped: no NETLINK_SOCK_DIAG here to tell local users apart");
        return;
    }
    let (d, port, key) = v1_daemon(&[]);
    // Every local client is 127.0.0.1: the flood is told apart by its uid, and capped.
    let f = flood_to(&format!("127.0.0.1:{port}"), NOBODY, 64, "v1-byte");
    assert_eq!(
        (f.admitted, f.refused),
        (8, 56),
        "TERN_V1_MAX_PER_CALLER is 8"
    );
    for _ in 0..20 {
        let mut s = v1_connect(port);
        assert_eq!(v1_get(&mut s, "/v1/device", &key), 200);
    }
    let mut kept = v1_connect(port);
    for _ in 0..5 {
        assert_eq!(v1_get(&mut kept, "/v1/device", &key), 200);
    }
    // pv-ctrl has its own pool and is untouched.
    assert!(get_ok(&d));
}
