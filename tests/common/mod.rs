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

pub mod device;
pub mod hub;
pub mod rootfs;
pub mod sig;

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
        if std::env::var_os("TERN_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("local addr")
        .port()
}

pub fn tern_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tern")
}

/// How to start a daemon.
#[derive(Clone, Default)]
pub struct Opts {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The daemon may exit before a client reaches it (a test that expects it to stop).
    pub may_exit: bool,
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
    pub fn may_exit(mut self) -> Opts {
        self.may_exit = true;
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
        // No test daemon talks to a real hub; the hub tests turn their client on with --set.
        cmd.env("TERN_HUB", "off");
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
            if self.answers() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                if self.opts.may_exit {
                    return;
                }
                panic!(
                    "tern exited before serving ({status}):\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("tern did not start serving in 20 s:\n{}", self.log_text());
    }

    /// A request on the socket gets an HTTP answer. A bare connect is not enough: after a
    /// kill -9, a container init cloned a moment before may still hold a copy of the dead
    /// daemon's listener for a few milliseconds, and accept nothing.
    fn answers(&self) -> bool {
        try_request(&self.socket, "GET", "/buildinfo", b"").is_some()
    }

    /// `method path` with `body` on a fresh connection, without panicking: `None` while the
    /// daemon does not answer (starting, re-executing for a reboot, killed mid-request).
    pub fn try_request(&self, method: &str, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
        try_request(&self.socket, method, path, body)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).expect("running")
    }

    pub fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(&self.socket)
            .unwrap_or_else(|e| panic!("connect to pv-ctrl: {e}\n{}", self.log_text()));
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        s
    }

    /// One request on a fresh connection.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> Reply {
        let mut s = self.connect();
        send_request(&mut s, method, path, body);
        // The answer to HEAD has a Content-Length but no body.
        read_reply_framed(&mut s, &mut Vec::new(), method == "HEAD")
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
    // A daemon that refuses the connection (503 when full) may answer and close before the
    // request is written: the answer is still there to read.
    for part in [head.as_bytes(), body] {
        match s.write_all(part) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return,
            r => r.expect("write request"),
        }
    }
}

/// Read exactly one response from `s` (bytes after it stay unread in `carry`).
pub fn read_reply_buffered(s: &mut UnixStream, carry: &mut Vec<u8>) -> Reply {
    read_reply_framed(s, carry, false)
}

pub fn read_reply_framed(s: &mut UnixStream, carry: &mut Vec<u8>, to_head: bool) -> Reply {
    let limits = Limits::default();
    let mut chunk = [0u8; 65536];
    let (head, used) = loop {
        if let Some(found) =
            parse_response_head(carry, &limits, to_head).expect("response head parses")
        {
            break found;
        }
        let n = match s.read(&mut chunk) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => r.expect("read response head"),
        };
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
            let n = match s.read(&mut chunk) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => r.expect("read response body"),
            };
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

// ---- Helpers for the endpoint, CLI and crash-safety suites (appended) ----

/// The state JSON of an empty device (what a fresh storage's revision 0 holds).
pub const EMPTY_STATE: &str = r##"{"#spec":"pantavisor-service-system@1"}"##;

/// Entry names in `dir`, sorted; empty when the directory does not exist.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Entry names in `dir` that are store temp files or directories (`.tmp-*`).
pub fn temp_names(dir: &Path) -> Vec<String> {
    dir_names(dir)
        .into_iter()
        .filter(|n| n.starts_with(".tmp-"))
        .collect()
}

/// Poll `f` every 10 ms until it is true or `timeout` passes; returns its last answer.
/// One HTTP/1.0 request on the socket: `(status, body)`, or `None` on any failure.
pub fn try_request(socket: &Path, method: &str, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut s = UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let head = format!(
        "{method} {path} HTTP/1.0\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status = std::str::from_utf8(raw.get(9..12)?).ok()?.parse().ok()?;
    Some((status, raw[at + 4..].to_vec()))
}

pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A JSON object with its members in document order (serde_json's map sorts them).
#[derive(Debug, Clone)]
pub struct OrderedObject(pub Vec<(String, serde_json::Value)>);

impl OrderedObject {
    pub fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

impl<'de> serde::Deserialize<'de> for OrderedObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<OrderedObject, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OrderedObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<OrderedObject, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = m.next_entry::<String, serde_json::Value>()? {
                    v.push(entry);
                }
                Ok(OrderedObject(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// Parse `text` as one JSON object, keeping its key order.
pub fn ordered_object(text: &str) -> OrderedObject {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not a JSON object ({e}): {text}"))
}

/// Parse `text` as a JSON array of objects, keeping each object's key order.
pub fn ordered_array(text: &str) -> Vec<OrderedObject> {
    serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("not a JSON array of objects ({e}): {text}"))
}

/// `(value, modified)` of `key` in `GET /config2`.
pub fn config2_entry(d: &Daemon, key: &str) -> (String, String) {
    let all = d.get("/config2").json();
    let e = all
        .as_array()
        .expect("config2 is an array")
        .iter()
        .find(|e| e["key"] == key)
        .unwrap_or_else(|| panic!("{key} not in /config2"))
        .clone();
    (
        e["value"].as_str().expect("string value").to_string(),
        e["modified"].as_str().expect("string modified").to_string(),
    )
}

/// Send `head` (complete, with its blank line), then `body` from a second thread ignoring
/// write errors (the daemon may answer early and close), and read the one reply. Returns the
/// reply and the stream, to check whether the daemon closed it.
pub fn send_racing(d: &Daemon, head: &str, body: Vec<u8>) -> (Reply, UnixStream) {
    let mut s = d.connect();
    s.write_all(head.as_bytes()).expect("write head");
    let mut w = s.try_clone().expect("clone stream");
    let sender = std::thread::spawn(move || {
        for piece in body.chunks(64 * 1024) {
            if w.write_all(piece).is_err() {
                return;
            }
        }
    });
    let r = read_reply(&mut s);
    let _ = sender.join();
    (r, s)
}

/// Run `tern ARGS…` to completion (stdin closed), with extra environment. Panics (after
/// killing it) if it is still running after 20 s: these runs are expected to exit by themselves.
pub fn run_tern(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(tern_bin());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn tern");
    let exited = wait_for(Duration::from_secs(20), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = child.kill();
        let out = child.wait_with_output().expect("collect output");
        panic!(
            "tern {args:?} did not exit within 20 s; stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    child.wait_with_output().expect("collect output")
}

/// True only when the daemon really closed the connection (EOF or reset) within 5 s; a read
/// that times out means the connection is still open, unlike [`is_closed`].
pub fn daemon_closed(s: &mut UnixStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}
