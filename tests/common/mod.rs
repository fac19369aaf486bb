//! Shared helpers for the end-to-end tests: start the real `tern` binary on a temporary
//! storage, talk raw HTTP to its control socket, stop or kill it.
//!
//! Responses are read with Tern's own framing code (`tern::http`), the same code the hub
//! client uses, so a framing bug shows up on both sides of these tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tern::http::{BodyDecoder, Limits, parse_response_head};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("tern-t-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn tern_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tern")
}

/// How to start a daemon.
#[derive(Clone, Default)]
pub struct Opts {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Opts {
    pub fn arg(mut self, a: impl Into<String>) -> Opts {
        self.args.push(a.into());
        self
    }
    pub fn set(self, kv: &str) -> Opts {
        self.arg("--set").arg(kv)
    }
    pub fn env(mut self, k: &str, v: &str) -> Opts {
        self.env.push((k.into(), v.into()));
        self
    }
}

pub struct Daemon {
    pub child: Option<Child>,
    pub dir: TempDir,
    pub storage: PathBuf,
    pub rundir: PathBuf,
    pub socket: PathBuf,
    pub opts: Opts,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with(Opts::default())
    }

    pub fn start_with(opts: Opts) -> Daemon {
        let dir = TempDir::new("d");
        let storage = dir.path().join("storage");
        let rundir = dir.path().join("run");
        let socket = rundir.join("pv-ctrl");
        let log = dir.path().join("daemon.log");
        let mut d = Daemon {
            child: None,
            dir,
            storage,
            rundir,
            socket,
            opts,
            log,
        };
        d.spawn();
        d
    }

    /// Start (again) on the same storage and run dir.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut cmd = Command::new(tern_bin());
        cmd.arg("daemon")
            .arg("--storage")
            .arg(&self.storage)
            .arg("--rundir")
            .arg(&self.rundir)
            .args(&self.opts.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        for (k, v) in &self.opts.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn tern");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "tern exited before serving ({status}):\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("tern did not start serving in 20 s:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).expect("running")
    }

    pub fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(&self.socket).expect("connect to pv-ctrl");
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        s
    }

    /// One request on a fresh connection.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> Reply {
        let mut s = self.connect();
        send_request(&mut s, method, path, body);
        read_reply(&mut s)
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, b"")
    }

    pub fn put(&self, path: &str, body: &[u8]) -> Reply {
        self.request("PUT", path, body)
    }

    /// Send raw bytes, half-close, and read everything until the daemon closes.
    pub fn raw(&self, bytes: &[u8]) -> Vec<u8> {
        let mut s = self.connect();
        s.write_all(bytes).expect("write");
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY-free: kill(2) through the command line keeps the tests free of unsafe code.
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// SIGTERM and wait: returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(15);
        self.wait()
    }

    pub fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = child.try_wait().expect("wait") {
                return st;
            }
            if Instant::now() > until {
                let _ = child.kill();
                panic!("tern did not exit within 20 s:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// kill -9, as a power cut would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The daemon's resident memory in kB, from /proc.
    pub fn status_kb(&self, field: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        s.lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// Status and body, the way a test usually checks them.
    pub fn sb(&self) -> (u16, String) {
        (self.status, self.text())
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.text())
    }
}

pub fn send_request(s: &mut UnixStream, method: &str, path: &str, body: &[u8]) {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("write head");
    s.write_all(body).expect("write body");
}

/// Read exactly one response from `s` (bytes after it stay unread in `carry`).
pub fn read_reply_buffered(s: &mut UnixStream, carry: &mut Vec<u8>) -> Reply {
    let limits = Limits::default();
    let mut chunk = [0u8; 65536];
    let (head, used) = loop {
        if let Some(found) =
            parse_response_head(carry, &limits, false).expect("response head parses")
        {
            break found;
        }
        let n = s.read(&mut chunk).expect("read response head");
        assert!(
            n > 0,
            "connection closed before a response head; got {:?}",
            String::from_utf8_lossy(carry)
        );
        carry.extend_from_slice(&chunk[..n]);
    };
    carry.drain(..used);
    let mut decoder = BodyDecoder::new(head.framing, &limits);
    let mut body = Vec::new();
    loop {
        if decoder.is_done() {
            break;
        }
        let step = decoder.decode(carry).expect("response body decodes");
        body.extend_from_slice(&carry[step.data.clone()]);
        carry.drain(..step.consumed);
        if step.done {
            break;
        }
        if step.consumed == 0 {
            let n = s.read(&mut chunk).expect("read response body");
            if n == 0 {
                decoder.finish_at_eof().expect("body complete at EOF");
                break;
            }
            carry.extend_from_slice(&chunk[..n]);
        }
    }
    let headers = head
        .headers
        .iter()
        .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    Reply {
        status: head.status,
        headers,
        body,
    }
}

pub fn read_reply(s: &mut UnixStream) -> Reply {
    let mut carry = Vec::new();
    read_reply_buffered(s, &mut carry)
}

/// sha256 of `data` in lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    tern::store::objects::hex(&Sha256::digest(data))
}

/// True when the connection was closed by the daemon (EOF or reset on read).
pub fn is_closed(s: &mut UnixStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}
