//! `tern-flood`: the hostile-client and soak load behind `make bench` (driven by
//! `tests/bench/hostile.sh` and `tests/bench/soak.sh`). Each subcommand prints one line of
//! JSON on stdout (the soak one line per sample), diagnostics on stderr.
//!
//! - `flood (--socket P | --tcp HOST:PORT) [--uid U] [--trickle 500] [--silent 200]
//!   [--seconds 60] [--reconnect-ms 100]`: as uid U (setuid first, while single-threaded),
//!   hold `trickle` connections sending a request one byte every 2 s and `silent` ones sending
//!   nothing; whatever the daemon closes or refuses is reopened after `reconnect-ms`. One
//!   thread polls every socket (non-blocking) every 50 ms. Reports connects, 503s, 408s and
//!   closes.
//! - `mgmt (--socket P | --tcp HOST:PORT [--key K]) [--seconds 60] [--mode fresh|keepalive]
//!   [--path /steps]`: GET in a loop, on a new connection each time or on one kept-alive
//!   connection; latency p50/p99/max, refusals (any answer but 200) and errors (no answer).
//! - `soak --socket P --requests N [--sample 50000] --pid D [--container C --restarts M]`:
//!   N mixed requests (GET /steps, GET /containers, PUT and DELETE /user-meta, GET /objects;
//!   alternately 8 pipelined on one connection and one per fresh connection), and, from a
//!   second thread, M restarts of container C through `PUT /containers/C`, each waited for.
//!   Every `sample` requests: VmRSS, RssAnon, open descriptors and zombie children of D.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        eprintln!("usage: tern-flood flood|mgmt|soak --option value …");
        return ExitCode::from(2);
    };
    let opts = Opts(
        rest.chunks(2)
            .filter_map(|p| Some((p[0].trim_start_matches("--").to_string(), p.get(1)?.clone())))
            .collect(),
    );
    let result = match cmd.as_str() {
        "flood" => cmd_flood(&opts),
        "mgmt" => cmd_mgmt(&opts),
        "soak" => cmd_soak(&opts),
        _ => Err(format!("unknown subcommand {cmd}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tern-flood {cmd}: {e}");
            ExitCode::from(1)
        }
    }
}

struct Opts(Vec<(String, String)>);

impl Opts {
    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
    fn num<T: std::str::FromStr>(&self, k: &str, default: T) -> Result<T, String> {
        match self.get(k) {
            Some(v) => v.parse().map_err(|_| format!("--{k}: bad number {v}")),
            None => Ok(default),
        }
    }
    fn target(&self) -> Result<Target, String> {
        match (self.get("socket"), self.get("tcp")) {
            (Some(p), _) => Ok(Target::Unix(p.to_string())),
            (None, Some(a)) => Ok(Target::Tcp(a.to_string())),
            (None, None) => Err("--socket or --tcp is required".into()),
        }
    }
}

#[derive(Clone)]
enum Target {
    Unix(String),
    Tcp(String),
}

enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Target {
    fn connect(&self) -> io::Result<Conn> {
        Ok(match self {
            Target::Unix(p) => Conn::Unix(UnixStream::connect(p)?),
            Target::Tcp(a) => {
                let s = TcpStream::connect(a)?;
                s.set_nodelay(true)?;
                Conn::Tcp(s)
            }
        })
    }
}

impl Conn {
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.set_nonblocking(on),
            Conn::Tcp(s) => s.set_nonblocking(on),
        }
    }
    fn set_timeout(&self, d: Duration) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.set_read_timeout(Some(d)),
            Conn::Tcp(s) => s.set_read_timeout(Some(d)),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(b),
            Conn::Tcp(s) => s.read(b),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(b),
            Conn::Tcp(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// flood

const TRICKLE: &[u8] = b"GET /steps HTTP/1.1\r\nHost: localhost\r\nX-Trickle: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";

struct Slot {
    conn: Option<Conn>,
    trickle: bool,
    next_byte: Instant,
    sent: usize,
    retry_at: Instant,
}

fn cmd_flood(o: &Opts) -> Result<(), String> {
    if let Some(uid) = o.get("uid") {
        let uid: u32 = uid.parse().map_err(|_| "--uid: bad number")?;
        let id = nix::unistd::Uid::from_raw(uid);
        nix::unistd::setgid(nix::unistd::Gid::from_raw(uid)).map_err(|e| format!("setgid: {e}"))?;
        nix::unistd::setuid(id).map_err(|e| format!("setuid: {e}"))?;
    }
    let target = o.target()?;
    let trickle: usize = o.num("trickle", 500)?;
    let silent: usize = o.num("silent", 200)?;
    let seconds: f64 = o.num("seconds", 60.0)?;
    let reconnect = Duration::from_millis(o.num("reconnect-ms", 100)?);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let mut slots: Vec<Slot> = (0..trickle + silent)
        .map(|i| Slot {
            conn: None,
            trickle: i < trickle,
            next_byte: start,
            sent: 0,
            retry_at: start,
        })
        .collect();
    let (mut connects, mut connect_errors, mut refused, mut timed_out, mut closed, mut other) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut peak_open = 0usize;
    while Instant::now() < end {
        let now = Instant::now();
        let mut open = 0;
        for s in &mut slots {
            if s.conn.is_none() {
                if now < s.retry_at {
                    continue;
                }
                match target
                    .connect()
                    .and_then(|c| c.set_nonblocking(true).map(|()| c))
                {
                    Ok(c) => {
                        connects += 1;
                        s.conn = Some(c);
                        s.sent = 0;
                        s.next_byte = now;
                    }
                    Err(_) => {
                        connect_errors += 1;
                        s.retry_at = now + reconnect;
                        continue;
                    }
                }
            }
            let Some(c) = s.conn.as_mut() else { continue };
            let mut buf = [0u8; 512];
            let gone = match c.read(&mut buf) {
                Ok(0) => {
                    closed += 1;
                    true
                }
                Ok(n) => {
                    let head = &buf[..n];
                    if head.starts_with(b"HTTP/1.1 503") {
                        refused += 1;
                    } else if head.starts_with(b"HTTP/1.1 408") {
                        timed_out += 1;
                    } else {
                        other += 1;
                    }
                    true
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
                Err(_) => {
                    closed += 1;
                    true
                }
            };
            if !gone && s.trickle && now >= s.next_byte {
                let b = TRICKLE[s.sent % TRICKLE.len()];
                match c.write(&[b]) {
                    Ok(_) => {
                        s.sent += 1;
                        s.next_byte = now + Duration::from_secs(2);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => {
                        closed += 1;
                        s.conn = None;
                        s.retry_at = now + reconnect;
                        continue;
                    }
                }
            }
            if gone {
                s.conn = None;
                s.retry_at = now + reconnect;
            } else {
                open += 1;
            }
        }
        peak_open = peak_open.max(open);
        thread::sleep(Duration::from_millis(50));
    }
    println!(
        "{{\"connects\":{connects},\"connect_errors\":{connect_errors},\"refused_503\":{refused},\
         \"timed_out_408\":{timed_out},\"closed\":{closed},\"other\":{other},\"peak_open\":{peak_open}}}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// mgmt

/// Read one response; Ok(status, close). `buf` carries what was read past it (pipelining)
/// into the next call; the body is dropped.
fn read_response(c: &mut Conn, buf: &mut Vec<u8>) -> Result<(u16, bool, Vec<u8>), String> {
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = c.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed before an answer".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status: u16 = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or("bad status line")?;
    let mut len = 0usize;
    let mut close = false;
    for l in head.lines().skip(1) {
        if let Some((n, v)) = l.split_once(':') {
            if n.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().map_err(|_| "bad Content-Length")?;
            } else if n.eq_ignore_ascii_case("connection") {
                close = v.trim().eq_ignore_ascii_case("close");
            }
        }
    }
    while buf.len() < head_end + 4 + len {
        let n = c.read(&mut chunk).map_err(|e| format!("read body: {e}"))?;
        if n == 0 {
            return Err("closed inside a body".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end + 4..head_end + 4 + len].to_vec();
    buf.drain(..head_end + 4 + len);
    Ok((status, close, body))
}

fn pick(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn cmd_mgmt(o: &Opts) -> Result<(), String> {
    let target = o.target()?;
    let seconds: f64 = o.num("seconds", 60.0)?;
    let fresh = match o.get("mode").unwrap_or("keepalive") {
        "fresh" => true,
        "keepalive" => false,
        m => return Err(format!("--mode {m}: fresh or keepalive")),
    };
    let mut path = o.get("path").unwrap_or("/steps").to_string();
    if let Some(k) = o.get("key") {
        path = format!("{path}?apikey={k}");
    }
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").into_bytes();
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut lat = Vec::new();
    let (mut refused, mut errors, mut lost) = (0u64, 0u64, 0u64);
    let mut conn: Option<Conn> = None;
    let mut buf = Vec::with_capacity(16384);
    let mut messages: Vec<String> = Vec::new();
    while Instant::now() < end {
        let t0 = Instant::now();
        if conn.is_none() {
            match target.connect() {
                Ok(c) => {
                    let _ = c.set_timeout(Duration::from_secs(10));
                    conn = Some(c);
                }
                Err(e) => {
                    errors += 1;
                    if messages.len() < 8 {
                        messages.push(format!("connect: {e}"));
                    }
                    thread::sleep(Duration::from_millis(1));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        buf.clear();
        let result = c
            .write_all(&req)
            .map_err(|e| format!("write: {e}"))
            .and_then(|()| read_response(c, &mut buf));
        match result {
            Ok((200, close, _)) => {
                lat.push(t0.elapsed().as_micros() as u64);
                if close || fresh {
                    conn = None;
                }
            }
            Ok((status, _, _)) => {
                refused += 1;
                if messages.len() < 8 {
                    messages.push(format!("status {status}"));
                }
                conn = None;
            }
            Err(e) => {
                if !fresh {
                    lost += 1;
                }
                errors += 1;
                if messages.len() < 8 {
                    messages.push(e);
                }
                conn = None;
            }
        }
    }
    lat.sort_unstable();
    println!(
        "{{\"requests\":{},\"refused\":{refused},\"errors\":{errors},\"lost_connections\":{lost},\
         \"p50_us\":{},\"p99_us\":{},\"max_us\":{},\"messages\":{:?}}}",
        lat.len(),
        pick(&lat, 0.5),
        pick(&lat, 0.99),
        pick(&lat, 1.0),
        messages
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// soak

fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| l.strip_prefix(key)).and_then(|r| {
                r.trim_start_matches(':')
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Children of `pid` that are zombies.
fn zombies(pid: u32) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                return false;
            };
            let mut f = rest.split_whitespace();
            let state = f.next();
            let ppid = f.next().and_then(|p| p.parse::<u32>().ok());
            state == Some("Z") && ppid == Some(pid)
        })
        .count()
}

fn sample(pid: u32, done: u64, restarts: u64, start: Instant) {
    println!(
        "{{\"requests\":{done},\"restarts\":{restarts},\"seconds\":{:.1},\"vm_rss_kb\":{},\
         \"rss_anon_kb\":{},\"fds\":{},\"zombies\":{}}}",
        start.elapsed().as_secs_f64(),
        status_kb(pid, "VmRSS"),
        status_kb(pid, "RssAnon"),
        fd_count(pid),
        zombies(pid)
    );
    let _ = io::stdout().flush();
}

/// The i-th request of the mix.
fn soak_request(i: u64) -> String {
    let key = i % 64;
    match i % 5 {
        0 => "GET /steps HTTP/1.1\r\nHost: localhost\r\n\r\n".to_string(),
        1 => "GET /containers HTTP/1.1\r\nHost: localhost\r\n\r\n".to_string(),
        2 => format!(
            "PUT /user-meta/soak-{key} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 8\r\n\r\nv{:07}",
            i % 10_000_000
        ),
        // The key the request before wrote.
        3 => format!(
            "DELETE /user-meta/soak-{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
            (i - 1) % 64
        ),
        _ => "GET /objects HTTP/1.1\r\nHost: localhost\r\n\r\n".to_string(),
    }
}

/// Restart `name` `count` times, each time waiting until it runs again.
fn restarter(
    target: Target,
    name: String,
    count: u64,
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let body = r#"{"action":"restart"}"#;
    let req = format!(
        "PUT /containers/{name} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut buf = Vec::new();
    while done.load(Ordering::Relaxed) < count && !stop.load(Ordering::Relaxed) {
        let Ok(mut c) = target.connect() else {
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        let _ = c.set_timeout(Duration::from_secs(10));
        buf.clear();
        buf.clear();
        let ok = c.write_all(req.as_bytes()).is_ok()
            && matches!(read_response(&mut c, &mut buf), Ok((200, _, _)));
        if !ok {
            thread::sleep(Duration::from_millis(5));
            continue;
        }
        done.fetch_add(1, Ordering::Relaxed);
        // Wait until it runs again (or 10 s).
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            let Ok(mut c) = target.connect() else {
                continue;
            };
            let _ = c.set_timeout(Duration::from_secs(10));
            buf.clear();
            let answer = c
                .write_all(b"GET /containers HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .map_err(|e| e.to_string())
                .and_then(|()| read_response(&mut c, &mut buf));
            if let Ok((_, _, body)) = answer {
                let text = String::from_utf8_lossy(&body);
                let me = text.find(&format!("\"name\":\"{name}\""));
                if let Some(at) = me
                    && let Some(st) = text[at..].find("\"status\":\"")
                {
                    let s = &text[at + st + 10..];
                    if s.starts_with("STARTED") || s.starts_with("READY") {
                        break;
                    }
                }
            }
            thread::sleep(Duration::from_millis(2));
        }
    }
}

fn cmd_soak(o: &Opts) -> Result<(), String> {
    let target = o.target()?;
    let total: u64 = o.num("requests", 1_000_000)?;
    let every: u64 = o.num("sample", 50_000)?;
    let pid: u32 = o.num("pid", 0)?;
    let restarts: u64 = o.num("restarts", 0)?;
    let done_restarts = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let worker = o.get("container").filter(|_| restarts > 0).map(|name| {
        let (t, n, d, s) = (
            target.clone(),
            name.to_string(),
            Arc::clone(&done_restarts),
            Arc::clone(&stop),
        );
        thread::spawn(move || restarter(t, n, restarts, d, s))
    });
    let start = Instant::now();
    sample(pid, 0, 0, start);
    let mut i = 0u64;
    let mut failures = 0u64;
    let mut buf = Vec::with_capacity(16384);
    let mut next_sample = every;
    let mut pipelined = true;
    while i < total {
        let batch = if pipelined { 8 } else { 1 };
        pipelined = !pipelined;
        let mut c = target.connect().map_err(|e| format!("connect: {e}"))?;
        c.set_timeout(Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        let mut wire = String::new();
        for k in 0..batch {
            wire.push_str(&soak_request(i + k));
        }
        c.write_all(wire.as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        for _ in 0..batch {
            match read_response(&mut c, &mut buf) {
                Ok((s, _, _)) if s < 400 => {}
                Ok(_) | Err(_) => failures += 1,
            }
        }
        i += batch;
        if i >= next_sample {
            sample(pid, i, done_restarts.load(Ordering::Relaxed), start);
            next_sample += every;
        }
    }
    if let Some(w) = worker {
        let _ = w.join();
    }
    stop.store(true, Ordering::Relaxed);
    thread::sleep(Duration::from_secs(1));
    sample(pid, i, done_restarts.load(Ordering::Relaxed), start);
    println!("{{\"failures\":{failures}}}");
    Ok(())
}
