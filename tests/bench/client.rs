//! `tern-bench`: the load generator behind `make bench` (driven by `tests/bench/run.sh`).
//!
//! It talks plain HTTP/1.1 to the daemon's pv-ctrl unix socket with its own minimal response
//! reader (deliberately not Tern's `http` module, so a framing bug in the daemon cannot hide
//! behind the same bug in the client). Every response is checked: status line, a
//! `Content-Length`, exactly that many body bytes, no stray bytes after it.
//!
//! Subcommands, each printing one line of JSON on stdout (diagnostics go to stderr):
//!
//! - `wait --socket P [--timeout S]`: retry until `GET /steps` answers 200.
//! - `requests --socket P --clients N [--seconds S] [--warmup S] [--path /steps] [--rate R]`:
//!   N keep-alive connections, one thread each, sending GET requests back to back (or, with
//!   `--rate`, each client at most R requests per second on a fixed schedule, so the latency
//!   is measured below saturation). Requests started during the warm-up are not counted.
//!   Prints requests/s and p50/p99/max latency in microseconds; exits 1 if any request
//!   failed.
//! - `objects --socket P --sha HEX`: `GET /objects`, and report whether that object is
//!   listed and with which size.
//! - `gen --file F --bytes N`: write N bytes of pseudo-random data (xorshift; much faster
//!   than `/dev/urandom`, and incompressible enough for hashing and disk tests).
//! - `upload --socket P --file F --sha HEX [--expect CODE] [--watch-pid PID]`: PUT the file
//!   to `/objects/<sha>` with a `Content-Length` (the body goes out with `sendfile(2)`
//!   through `std::io::copy`). Prints the status and the seconds from the first byte sent to
//!   the whole response read; with `--watch-pid`, also the peak RssAnon/VmRSS of that process
//!   sampled every 10 ms during the upload. Exits 1 unless the status is the expected one.
//! - `running --socket P --count N [--since-ns T] [--timeout S]`: poll `GET /containers` until
//!   N containers are STARTED or READY; prints the milliseconds since T (CLOCK_REALTIME ns,
//!   default: when polling began).
//! - `status --socket P --name N --status S [--timeout S]`: poll `GET /containers` until
//!   container N has status S.
//! - `progress --socket P --rev R --status S [--since-ns T] [--timeout S]`: poll
//!   `GET /steps/R/progress` until its status is S; prints the milliseconds since T.
//! - `respawn --pids-from P --stamps F --rounds N [--settle S]`: N times, read the one pid
//!   the supervisor lists in file P (a container's `cgroup.procs`, runsv's `supervise/pid`:
//!   only processes the bench's own supervisors started), SIGKILL it, and wait for a new
//!   stamp in F: the supervised
//!   command appends its start time (busybox `adjtimex`) there, so the latency is kill → new
//!   command running, measured the same way for any supervisor. Waits S seconds (default
//!   1.2: runsv delays restarts of a service that ran under a second) between rounds.
//!   Prints p50/p99/max in microseconds.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

const USAGE: &str = "usage:
  tern-bench wait     --socket P [--timeout SECS]
  tern-bench requests --socket P --clients N [--seconds S] [--warmup S] [--path /steps] [--rate R]
  tern-bench objects  --socket P --sha HEX
  tern-bench gen      --file F --bytes N
  tern-bench upload   --socket P --file F --sha HEX [--expect CODE] [--watch-pid PID]
  tern-bench running  --socket P --count N [--since-ns T] [--timeout SECS]
  tern-bench status   --socket P --name N --status S [--timeout SECS]
  tern-bench progress --socket P --rev R --status S [--since-ns T] [--timeout SECS]
  tern-bench respawn  --pids-from P --stamps F --rounds N [--settle SECS]";

/// How long any single read or write on the socket may block before it counts as a hang.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let opts = match Opts::parse(rest) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tern-bench: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match cmd.as_str() {
        "wait" => cmd_wait(&opts),
        "requests" => cmd_requests(&opts),
        "objects" => cmd_objects(&opts),
        "gen" => cmd_gen(&opts),
        "upload" => cmd_upload(&opts),
        "running" => cmd_running(&opts),
        "status" => cmd_status(&opts),
        "progress" => cmd_progress(&opts),
        "respawn" => cmd_respawn(&opts),
        _ => Err(format!("unknown subcommand '{cmd}'")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tern-bench {cmd}: {e}");
            ExitCode::from(1)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Options

struct Opts {
    pairs: Vec<(String, String)>,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts, String> {
        let mut pairs = Vec::new();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let Some(name) = flag.strip_prefix("--") else {
                return Err(format!("unexpected argument '{flag}'"));
            };
            let value = it
                .next()
                .ok_or_else(|| format!("option --{name} needs a value"))?;
            pairs.push((name.to_string(), value.clone()));
        }
        Ok(Opts { pairs })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn req(&self, name: &str) -> Result<&str, String> {
        self.get(name)
            .ok_or_else(|| format!("missing required option --{name}"))
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: Option<T>) -> Result<T, String> {
        match (self.get(name), default) {
            (Some(v), _) => v
                .parse()
                .map_err(|_| format!("--{name}: '{v}' is not a valid number")),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(format!("missing required option --{name}")),
        }
    }

    fn socket(&self) -> Result<PathBuf, String> {
        self.req("socket").map(PathBuf::from)
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

fn connect(socket: &Path) -> io::Result<UnixStream> {
    let s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

/// A response as far as this tool cares.
struct Reply {
    status: u16,
    /// The daemon said `Connection: close`.
    close: bool,
}

/// A keep-alive connection with a reusable receive buffer.
struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(socket: &Path) -> Result<Conn, String> {
        let stream = connect(socket).map_err(|e| format!("connect {}: {e}", socket.display()))?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(16 * 1024),
        })
    }

    /// Read one whole response. The body is left in `self.buf[body]`. Fails on anything but
    /// a well-framed `Content-Length` response with nothing after it.
    fn read_reply(&mut self) -> Result<(Reply, std::ops::Range<usize>), String> {
        self.buf.clear();
        let mut chunk = [0u8; 16 * 1024];
        // Head.
        let head_end = loop {
            if let Some(i) = find_head_end(&self.buf) {
                break i;
            }
            if self.buf.len() > 64 * 1024 {
                return Err("response head larger than 64 KiB".into());
            }
            let n = read_some(&mut self.stream, &mut chunk)?;
            if n == 0 {
                return Err(if self.buf.is_empty() {
                    "connection closed by the daemon before any response byte".into()
                } else {
                    format!(
                        "connection closed inside the response head ({} bytes read)",
                        self.buf.len()
                    )
                });
            }
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = std::str::from_utf8(&self.buf[..head_end])
            .map_err(|_| "response head is not UTF-8".to_string())?;
        let (reply, length) = parse_head(head)?;
        let body_start = head_end + 4;
        let want = body_start + length;
        while self.buf.len() < want {
            let n = read_some(&mut self.stream, &mut chunk)?;
            if n == 0 {
                return Err(format!(
                    "connection closed after {} of {length} body bytes",
                    self.buf.len() - body_start
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        if self.buf.len() > want {
            return Err(format!(
                "{} unexpected bytes after a {length}-byte body (Content-Length wrong?)",
                self.buf.len() - want
            ));
        }
        Ok((reply, body_start..want))
    }
}

fn read_some(s: &mut UnixStream, buf: &mut [u8]) -> Result<usize, String> {
    loop {
        match s.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                let secs = s
                    .read_timeout()
                    .ok()
                    .flatten()
                    .unwrap_or_default()
                    .as_secs();
                return Err(format!("nothing received for {secs} s (daemon hung?)"));
            }
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// Status line and the headers we need. The body must be `Content-Length` framed.
fn parse_head(head: &str) -> Result<(Reply, usize), String> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if version != "HTTP/1.1" {
        return Err(format!("bad status line '{status_line}'"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| (s.len() == 3).then_some(s))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line '{status_line}'"))?;
    let mut length = None;
    let mut close = false;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("malformed header line '{line}'"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            if length.is_some() {
                return Err("two Content-Length headers".into());
            }
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| format!("bad Content-Length '{value}'"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(format!(
                "status {status}: Transfer-Encoding '{value}' where a Content-Length was expected"
            ));
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let length =
        length.ok_or_else(|| format!("status {status}: response has no Content-Length"))?;
    Ok((Reply { status, close }, length))
}

// ---------------------------------------------------------------------------------------------
// wait

fn cmd_wait(o: &Opts) -> Result<(), String> {
    let socket = o.socket()?;
    let timeout = Duration::from_secs_f64(o.num("timeout", Some(20.0))?);
    let start = Instant::now();
    let mut last = String::from("not tried");
    while start.elapsed() < timeout {
        match probe(&socket) {
            Ok(()) => {
                println!("{{\"ready_after_ms\":{}}}", start.elapsed().as_millis());
                return Ok(());
            }
            Err(e) => last = e,
        }
        thread::sleep(Duration::from_millis(20));
    }
    Err(format!(
        "the daemon did not answer GET /steps within {} s (last error: {last})",
        timeout.as_secs_f64()
    ))
}

fn probe(socket: &Path) -> Result<(), String> {
    let mut c = Conn::open(socket)?;
    c.stream
        .write_all(b"GET /steps HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let (reply, _) = c.read_reply()?;
    if reply.status != 200 {
        return Err(format!("GET /steps answered {}", reply.status));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// requests

/// What one connection thread brings back.
#[derive(Default)]
struct Tally {
    /// Latencies (ns) of requests started after the warm-up.
    lat_ns: Vec<u64>,
    /// Requests that failed (warm-up included).
    errors: u64,
    /// Attempts to reconnect after a failure that themselves failed.
    reconnect_failures: u64,
    reconnects: u64,
    /// Distinct error messages with how often each occurred (a bounded set).
    messages: BTreeMap<String, u64>,
}

impl Tally {
    fn note(&mut self, msg: String) {
        if let Some(n) = self.messages.get_mut(&msg) {
            *n += 1;
        } else if self.messages.len() < 16 {
            self.messages.insert(msg, 1);
        }
    }
    fn error(&mut self, msg: String) {
        self.errors += 1;
        self.note(msg);
    }
}

fn cmd_requests(o: &Opts) -> Result<(), String> {
    let socket = o.socket()?;
    let clients: usize = o.num("clients", None)?;
    let seconds: f64 = o.num("seconds", Some(3.0))?;
    let warmup: f64 = o.num("warmup", Some(0.5))?;
    let path = o.get("path").unwrap_or("/steps").to_string();
    let rate: f64 = o.num("rate", Some(0.0))?;
    let period = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
    if clients == 0 || seconds <= 0.0 || warmup < 0.0 {
        return Err("--clients must be >= 1, --seconds > 0, --warmup >= 0".into());
    }
    let request = Arc::new(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").into_bytes());

    // Connect everyone first, so the timed window measures requests, not connection set-up.
    let mut conns = Vec::with_capacity(clients);
    for i in 0..clients {
        conns.push(Conn::open(&socket).map_err(|e| format!("client {i}: {e}"))?);
    }
    let barrier = Arc::new(Barrier::new(clients + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::with_capacity(clients);
    for (id, conn) in conns.into_iter().enumerate() {
        let barrier = Arc::clone(&barrier);
        let stop = Arc::clone(&stop);
        let request = Arc::clone(&request);
        let socket = socket.clone();
        let h = thread::Builder::new()
            .name(format!("client-{id}"))
            .stack_size(256 * 1024)
            .spawn(move || {
                barrier.wait();
                let t0 = Instant::now();
                let warm_end = t0 + Duration::from_secs_f64(warmup);
                // Paced clients start spread over one period, not all at once.
                let offset = period.map(|p| p.mul_f64(id as f64 / clients as f64));
                client_loop(conn, &socket, &request, &stop, warm_end, period, offset)
            })
            .map_err(|e| format!("spawn client thread: {e}"))?;
        handles.push(h);
    }
    barrier.wait();
    thread::sleep(Duration::from_secs_f64(warmup));
    let measure_start = Instant::now();
    thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let window = measure_start.elapsed().as_secs_f64();
    let mut all = Vec::new();
    let mut errors = 0;
    let mut reconnects = 0;
    let mut reconnect_failures = 0;
    // Message -> (occurrences, clients that saw it).
    let mut messages: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for h in handles {
        let t = h
            .join()
            .map_err(|_| "a client thread panicked".to_string())?;
        all.extend_from_slice(&t.lat_ns);
        errors += t.errors;
        reconnects += t.reconnects;
        reconnect_failures += t.reconnect_failures;
        for (m, n) in t.messages {
            let e = messages.entry(m).or_default();
            e.0 += n;
            e.1 += 1;
        }
    }
    // The window runs from the end of the warm-up to the stop flag. Requests in flight at
    // the stop are counted (they started inside the window): at most one per client, small
    // against the total.
    all.sort_unstable();
    let n = all.len();
    let pct = |p: f64| -> f64 {
        if n == 0 {
            return 0.0;
        }
        let idx = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
        all[idx] as f64 / 1000.0
    };
    let mean = if n == 0 {
        0.0
    } else {
        all.iter().sum::<u64>() as f64 / n as f64 / 1000.0
    };
    println!(
        "{{\"clients\":{clients},\"path\":{},\"seconds\":{window:.3},\"requests\":{n},\"rps\":{:.0},\
         \"p50_us\":{:.1},\"p99_us\":{:.1},\"max_us\":{:.1},\"mean_us\":{mean:.1},\
         \"errors\":{errors},\"reconnects\":{reconnects},\"reconnect_failures\":{reconnect_failures}}}",
        serde_json::Value::String(path.clone()),
        n as f64 / window,
        pct(0.50),
        pct(0.99),
        pct(1.0),
    );
    for (m, (count, seen_by)) in &messages {
        eprintln!("tern-bench requests: {count} x ({seen_by} of {clients} clients): {m}");
    }
    if errors > 0 || reconnect_failures > 0 {
        return Err(format!(
            "{errors} requests failed with {clients} clients ({n} good ones counted after the \
             warm-up; {reconnects} reconnects, {reconnect_failures} failed reconnects)"
        ));
    }
    if n == 0 {
        return Err("no request completed in the measured window".into());
    }
    Ok(())
}

fn client_loop(
    mut conn: Conn,
    socket: &Path,
    request: &[u8],
    stop: &AtomicBool,
    warm_end: Instant,
    period: Option<Duration>,
    offset: Option<Duration>,
) -> Tally {
    let mut next = Instant::now() + offset.unwrap_or_default();
    let mut t = Tally {
        lat_ns: Vec::with_capacity(1 << 16),
        ..Tally::default()
    };
    // The first good body, parsed once as JSON; later bodies are compared byte for byte
    // and only re-parsed when they differ.
    let mut reference: Option<Vec<u8>> = None;
    let mut broken = false;
    while !stop.load(Ordering::Relaxed) {
        if broken {
            // Reconnect after a failure so one bad response does not end the run; back off
            // a little so a dead daemon does not turn into a connect storm.
            thread::sleep(Duration::from_millis(50));
            match Conn::open(socket) {
                Ok(c) => {
                    conn = c;
                    broken = false;
                    t.reconnects += 1;
                }
                Err(e) => {
                    t.reconnect_failures += 1;
                    t.note(format!("reconnect after an error: {e}"));
                    continue;
                }
            }
        }
        if let Some(p) = period {
            let now = Instant::now();
            if next > now {
                thread::sleep(next - now);
            }
            next += p;
        }
        let start = Instant::now();
        if let Err(e) = conn.stream.write_all(request) {
            t.error(format!("write request: {e}"));
            broken = true;
            continue;
        }
        let (reply, body) = match conn.read_reply() {
            Ok(r) => r,
            Err(e) => {
                t.error(e);
                broken = true;
                continue;
            }
        };
        let elapsed = start.elapsed();
        if reply.status != 200 {
            let text = String::from_utf8_lossy(&conn.buf[body.clone()]).into_owned();
            t.error(format!("status {} (body: {text})", reply.status));
            broken |= reply.close;
            continue;
        }
        let body = &conn.buf[body];
        if reference.as_deref() != Some(body) {
            if let Err(e) = serde_json::from_slice::<serde_json::Value>(body) {
                t.error(format!("200 with a body that is not JSON: {e}"));
                broken |= reply.close;
                continue;
            }
            reference = Some(body.to_vec());
        }
        if reply.close {
            // Legal HTTP, but a keep-alive benchmark should not see it: count it and go on.
            t.error("daemon closed a keep-alive connection after a 200".into());
            broken = true;
        }
        if start >= warm_end {
            t.lat_ns.push(elapsed.as_nanos() as u64);
        }
    }
    t
}

// ---------------------------------------------------------------------------------------------
// objects

fn cmd_objects(o: &Opts) -> Result<(), String> {
    let socket = o.socket()?;
    let sha = o.req("sha")?.to_ascii_lowercase();
    let mut c = Conn::open(&socket)?;
    c.stream
        .write_all(b"GET /objects HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let (reply, body) = c.read_reply()?;
    let text = String::from_utf8_lossy(&c.buf[body]).into_owned();
    if reply.status != 200 {
        return Err(format!("GET /objects answered {}: {text}", reply.status));
    }
    let list: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("GET /objects: body is not JSON ({e}): {text}"))?;
    let list = list
        .as_array()
        .ok_or_else(|| format!("GET /objects: body is not a JSON array: {text}"))?;
    let entry = list
        .iter()
        .find(|e| e.get("sha256").and_then(|s| s.as_str()) == Some(sha.as_str()));
    match entry {
        None => println!("{{\"count\":{},\"listed\":false}}", list.len()),
        Some(e) => {
            // Pantavisor reports the size as a decimal string; accept a number too.
            let size = match e.get("size") {
                Some(serde_json::Value::String(s)) => s.parse::<u64>().ok(),
                Some(v) => v.as_u64(),
                None => None,
            }
            .ok_or_else(|| format!("GET /objects: entry without a valid size: {e}"))?;
            println!(
                "{{\"count\":{},\"listed\":true,\"size\":{size}}}",
                list.len()
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// gen

fn cmd_gen(o: &Opts) -> Result<(), String> {
    let file = o.req("file")?;
    let bytes: u64 = o.num("bytes", None)?;
    let start = Instant::now();
    let f = File::create(file).map_err(|e| format!("create {file}: {e}"))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    // xorshift64*, seeded from the clock: different data every run, no dependency needed.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
    let mut block = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            word.copy_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        w.write_all(&block[..n])
            .map_err(|e| format!("write {file}: {e}"))?;
        left -= n as u64;
    }
    w.flush().map_err(|e| format!("write {file}: {e}"))?;
    println!(
        "{{\"bytes\":{bytes},\"seconds\":{:.3}}}",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// upload

/// Peak memory of a process, sampled from `/proc/<pid>/status`.
#[derive(Default, Clone, Copy)]
struct Peak {
    rss_anon_kb: u64,
    vm_rss_kb: u64,
    samples: u64,
}

fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| {
            rest.trim_start_matches(':')
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
}

fn cmd_upload(o: &Opts) -> Result<(), String> {
    let socket = o.socket()?;
    let path = o.req("file")?;
    let sha = o.req("sha")?;
    let expect: u16 = o.num("expect", Some(200))?;
    let watch: Option<u32> = match o.get("watch-pid") {
        Some(_) => Some(o.num("watch-pid", None)?),
        None => None,
    };

    let file = File::open(path).map_err(|e| format!("open {path}: {e}"))?;
    let len = file
        .metadata()
        .map_err(|e| format!("stat {path}: {e}"))?
        .len();
    let mut conn = Conn::open(&socket)?;
    // The answer comes only after the body is written and fsynced: allow a slow disk that
    // long once the last byte is out, but not forever.
    conn.stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(|e| format!("set timeout: {e}"))?;
    conn.stream
        .set_write_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| format!("set timeout: {e}"))?;

    // Sampler thread: peak RssAnon/VmRSS of the daemon while the upload runs.
    let done = Arc::new(AtomicBool::new(false));
    let sampler = watch.map(|pid| {
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let mut p = Peak::default();
            loop {
                if let Some(a) = status_kb(pid, "RssAnon") {
                    p.rss_anon_kb = p.rss_anon_kb.max(a);
                    p.samples += 1;
                }
                if let Some(r) = status_kb(pid, "VmRSS") {
                    p.vm_rss_kb = p.vm_rss_kb.max(r);
                }
                if done.load(Ordering::Relaxed) {
                    return p;
                }
                thread::sleep(Duration::from_millis(10));
            }
        })
    });

    let start = Instant::now();
    let head =
        format!("PUT /objects/{sha} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len}\r\n\r\n");
    let sent = conn
        .stream
        .write_all(head.as_bytes())
        .map_err(|e| format!("write request head: {e}"))
        .and_then(|()| {
            // On Linux std::io::copy from a File to a socket is sendfile(2): no copy through
            // this process, so the client costs the daemon as little CPU as possible.
            let mut body = (&file).take(len);
            io::copy(&mut body, &mut conn.stream).map_err(|e| format!("send body: {e}"))
        });
    let sent_s = start.elapsed().as_secs_f64();
    // Read the answer even when sending failed: the daemon may have refused early (507, 4xx).
    let reply = conn.read_reply();
    let seconds = start.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let peak = sampler
        .map(|h| h.join().expect("memory sampler thread panicked"))
        .unwrap_or_default();

    let (reply, body) = match (reply, &sent) {
        (Ok(r), _) => r,
        (Err(e), Err(se)) => return Err(format!("{se}; then reading the response: {e}")),
        (Err(e), Ok(_)) => return Err(format!("after sending {len} bytes: {e}")),
    };
    let text = String::from_utf8_lossy(&conn.buf[body]).into_owned();
    let bytes_sent = sent.as_ref().copied().unwrap_or(0);
    println!(
        "{{\"status\":{},\"bytes\":{len},\"bytes_sent\":{bytes_sent},\"seconds\":{seconds:.3},\
         \"send_seconds\":{sent_s:.3},\"mb_per_s\":{:.1},\"peak_rss_anon_kb\":{},\
         \"peak_vm_rss_kb\":{},\"samples\":{},\"body\":{}}}",
        reply.status,
        len as f64 / seconds / 1e6,
        peak.rss_anon_kb,
        peak.vm_rss_kb,
        peak.samples,
        serde_json::Value::String(text.clone()),
    );
    if reply.status != expect {
        return Err(format!(
            "PUT /objects/{sha} answered {} (expected {expect}): {text}",
            reply.status
        ));
    }
    if let Err(e) = sent {
        return Err(format!(
            "the daemon answered {} but the body did not go out: {e}",
            reply.status
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Containers

fn realtime_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// GET `path` on a fresh connection: the body when the answer is 200.
fn get_body(socket: &Path, path: &str) -> Option<String> {
    let mut c = Conn::open(socket).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    c.stream.write_all(req.as_bytes()).ok()?;
    let (reply, body) = c.read_reply().ok()?;
    (reply.status == 200).then(|| String::from_utf8_lossy(&c.buf[body]).into_owned())
}

fn cmd_progress(o: &Opts) -> Result<(), String> {
    let socket = o.socket()?;
    let rev = o.req("rev")?;
    let want = format!("\"status\":\"{}\"", o.req("status")?);
    let since: u128 = o.num("since-ns", Some(realtime_ns()))?;
    let timeout = Duration::from_secs_f64(o.num("timeout", Some(120.0))?);
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < timeout {
        if let Some(body) = get_body(&socket, &format!("/steps/{rev}/progress")) {
            if body.contains(&want) {
                let ms = (realtime_ns().saturating_sub(since)) as f64 / 1e6;
                println!("{{\"reached_after_ms\":{ms:.1}}}");
                return Ok(());
            }
            last = body;
        }
        thread::sleep(Duration::from_millis(2));
    }
    Err(format!("{rev} did not reach {want} in {timeout:?}: {last}"))
}

fn cmd_status(o: &Opts) -> Result<(), String> {
    let socket = o.socket()?;
    let name = o.req("name")?;
    let want = o.req("status")?;
    let timeout = Duration::from_secs_f64(o.num("timeout", Some(60.0))?);
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < timeout {
        if let Some(body) = get_body(&socket, "/containers") {
            let list: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let now = list.as_array().and_then(|a| {
                a.iter()
                    .find(|c| c["name"] == name)
                    .and_then(|c| c["status"].as_str().map(str::to_string))
            });
            if now.as_deref() == Some(want) {
                println!("{{\"status\":\"{want}\"}}");
                return Ok(());
            }
            last = body;
        }
        thread::sleep(Duration::from_millis(2));
    }
    Err(format!("{name} not {want} after {timeout:?}: {last}"))
}

fn cmd_running(o: &Opts) -> Result<(), String> {
    let socket = o.socket()?;
    let want: usize = o.num("count", None)?;
    let since: u128 = o.num("since-ns", Some(realtime_ns()))?;
    let timeout = Duration::from_secs_f64(o.num("timeout", Some(60.0))?);
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < timeout {
        if let Ok(mut c) = Conn::open(&socket) {
            c.stream
                .write_all(b"GET /containers HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .map_err(|e| format!("write: {e}"))?;
            if let Ok((reply, body)) = c.read_reply()
                && reply.status == 200
            {
                last = String::from_utf8_lossy(&c.buf[body]).into_owned();
                let up = last.matches("\"status\":\"STARTED\"").count()
                    + last.matches("\"status\":\"READY\"").count();
                if up >= want {
                    let ms = (realtime_ns().saturating_sub(since)) as f64 / 1e6;
                    println!("{{\"running_after_ms\":{ms:.1}}}");
                    return Ok(());
                }
            }
        }
        thread::sleep(Duration::from_millis(2));
    }
    Err(format!(
        "{want} containers not running after {timeout:?}: {last}"
    ))
}

/// The pids listed in `path`, one per line (`cgroup.procs`, a pid file).
fn pids_in(path: &Path) -> Vec<i32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// Start times in ns, one per run of the command: a `time.tv_sec:` line (what busybox
/// `adjtimex` prints; its `date` has no `%N`) followed by a `time.tv_usec:` one.
fn stamps(path: &Path) -> Vec<u128> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let value =
        |l: &str, key: &str| -> Option<u128> { l.trim().strip_prefix(key)?.trim().parse().ok() };
    let mut out = Vec::new();
    let mut sec = None;
    for l in text.lines() {
        if let Some(s) = value(l, "time.tv_sec:") {
            sec = Some(s);
        } else if let (Some(s), Some(us)) = (sec, value(l, "time.tv_usec:")) {
            out.push(s * 1_000_000_000 + us * 1_000);
            sec = None;
        }
    }
    out
}

fn cmd_respawn(o: &Opts) -> Result<(), String> {
    let pids_from = PathBuf::from(o.req("pids-from")?);
    let file = PathBuf::from(o.req("stamps")?);
    let rounds: usize = o.num("rounds", None)?;
    let settle = Duration::from_secs_f64(o.num("settle", Some(1.2))?);
    let mut lat_us = Vec::with_capacity(rounds);
    for round in 0..rounds {
        thread::sleep(settle);
        let pids = pids_in(&pids_from);
        let [pid] = pids[..] else {
            return Err(format!(
                "round {round}: {} lists {} processes, not one",
                pids_from.display(),
                pids.len()
            ));
        };
        let seen = stamps(&file).len();
        let killed_at = realtime_ns();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL)
            .map_err(|e| format!("kill {pid}: {e}"))?;
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let s = stamps(&file);
            if s.len() > seen {
                let started = s[s.len() - 1];
                lat_us.push(started.saturating_sub(killed_at) as f64 / 1e3);
                break;
            }
            if Instant::now() > until {
                return Err(format!("round {round}: no restart within 10 s"));
            }
            thread::sleep(Duration::from_micros(200));
        }
    }
    lat_us.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| lat_us[((lat_us.len() - 1) as f64 * q).round() as usize];
    println!(
        "{{\"rounds\":{rounds},\"p50_us\":{:.0},\"p99_us\":{:.0},\"max_us\":{:.0}}}",
        pick(0.5),
        pick(0.99),
        pick(1.0)
    );
    Ok(())
}
