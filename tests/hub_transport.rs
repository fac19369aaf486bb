//! The hub transport against a small TLS server on a thread (rcgen CA, rustls), driven by a
//! test-side mio loop exactly as the reactor drives it: `ready` on events, `expire` at
//! `next_deadline`.

#![cfg(feature = "hub")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::{Events, Poll};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use tern::reactor::hub_net::{
    Blob, Completion, NetError, Proxy, Reply, Request, Transport, TransportConfig,
};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("tern-ht-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------- certificates

struct Pki {
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
}

fn pki(names: &[&str]) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    Pki {
        ca_pem: ca.pem(),
        chain: vec![cert.der().clone()],
        key: key.serialize_der(),
    }
}

// ---------------------------------------------------------------- the test hub

#[derive(Default)]
struct Seen {
    connections: u64,
    handshakes: u64,
    targets: Vec<String>,
    ranges: Vec<Option<String>>,
    cut_done: bool,
}

struct Hub {
    port: u16,
    ca_pem: String,
    seen: Arc<Mutex<Seen>>,
}

const BLOB_LEN: usize = 300_000;

fn blob_bytes() -> Vec<u8> {
    (0..BLOB_LEN).map(|i| (i * 7 % 251) as u8).collect()
}

fn sha_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Hub {
    fn start() -> Hub {
        let pki = pki(&["localhost", "127.0.0.1", "hub.test"]);
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.key.clone()));
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                #[allow(deprecated)]
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(pki.chain.clone(), key)
            .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        std::thread::spawn(move || {
            for sock in listener.incoming() {
                let Ok(sock) = sock else { return };
                s.lock().unwrap().connections += 1;
                let (config, s) = (config.clone(), s.clone());
                std::thread::spawn(move || serve(sock, config, s));
            }
        });
        Hub {
            port,
            ca_pem: pki.ca_pem,
            seen,
        }
    }

    fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap())
    }
}

fn serve(sock: TcpStream, config: Arc<rustls::ServerConfig>, seen: Arc<Mutex<Seen>>) {
    let _ = sock.set_read_timeout(Some(Duration::from_secs(20)));
    let Ok(mut conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut sock = sock;
    while conn.is_handshaking() {
        if conn.complete_io(&mut sock).is_err() {
            return;
        }
    }
    seen.lock().unwrap().handshakes += 1;
    let mut tls = BufReader::new(rustls::StreamOwned::new(conn, sock));
    loop {
        // Request head.
        let mut line = String::new();
        if tls.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut length = 0usize;
        let mut range = None;
        loop {
            let mut h = String::new();
            if tls.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (name, value) = h.split_once(':').unwrap_or((h, ""));
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "range" => range = Some(value.trim().to_string()),
                _ => {}
            }
        }
        let mut body = vec![0u8; length];
        if tls.read_exact(&mut body).is_err() {
            return;
        }
        {
            let mut s = seen.lock().unwrap();
            s.targets.push(target.clone());
            s.ranges.push(range.clone());
        }
        let out = tls.get_mut();
        let ok = if let Some(n) = target.strip_prefix("/json/") {
            let n: usize = n.parse().unwrap_or(0);
            let body = format!("\"{}\"", "x".repeat(n.saturating_sub(2)));
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .is_ok()
        } else if target == "/chunked" {
            out.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n")
                .is_ok()
        } else if target == "/echo" {
            write!(
                out,
                "HTTP/1.1 201 Created\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .is_ok()
                && out.write_all(&body).is_ok()
        } else if target == "/stall" {
            std::thread::sleep(Duration::from_secs(5));
            return;
        } else if target == "/bye" {
            // Answer keep-alive, then close the idle connection as a server's idle timer would.
            let _ = out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            let _ = out.flush();
            std::thread::sleep(Duration::from_millis(50));
            return;
        } else if target.starts_with("/blob") {
            let data = blob_bytes();
            let start = range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|r| r.parse::<usize>().ok())
                .filter(|_| !target.starts_with("/blob-norange"));
            let cut = target.starts_with("/blob-cut") && {
                let mut s = seen.lock().unwrap();
                !std::mem::replace(&mut s.cut_done, true)
            };
            let r = match start {
                Some(st) => write!(
                    out,
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {st}-{}/{}\r\nContent-Length: {}\r\n\r\n",
                    BLOB_LEN - 1,
                    BLOB_LEN,
                    BLOB_LEN - st
                )
                .and_then(|()| out.write_all(&data[st..])),
                None if cut => write!(out, "HTTP/1.1 200 OK\r\nContent-Length: {BLOB_LEN}\r\n\r\n")
                    .and_then(|()| out.write_all(&data[..BLOB_LEN / 2]))
                    .and_then(|()| out.flush())
                    .and_then(|()| Err(std::io::Error::other("cut"))),
                None => write!(out, "HTTP/1.1 200 OK\r\nContent-Length: {BLOB_LEN}\r\n\r\n")
                    .and_then(|()| out.write_all(&data)),
            };
            r.is_ok()
        } else {
            out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .is_ok()
        };
        if !ok || out.flush().is_err() {
            // Shut the TCP side so the client sees the cut.
            let _ = out.sock.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

// ---------------------------------------------------------------- the client side

struct Env {
    dir: TempDir,
    hub: Hub,
}

impl Env {
    fn new(tag: &str) -> Env {
        let dir = TempDir::new(tag);
        let hub = Hub::start();
        std::fs::create_dir_all(dir.path().join("certs")).unwrap();
        std::fs::write(dir.path().join("certs/hub-ca.pem"), &hub.ca_pem).unwrap();
        std::fs::write(dir.path().join("certs/README"), "not a certificate\n").unwrap();
        std::fs::write(dir.path().join("hosts"), "127.0.0.1 localhost wronghost\n").unwrap();
        std::fs::write(dir.path().join("resolv.conf"), "").unwrap();
        Env { dir, hub }
    }

    fn config(&self, host: &str) -> TransportConfig {
        TransportConfig {
            host: host.into(),
            port: self.hub.port,
            proxy: None,
            certs_dir: self.dir.path().join("certs"),
            extra_ca: None,
            insecure: false,
            user_agent: "Tern-test/1".into(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            idle_close: Duration::from_secs(30),
            max_body: 2 << 20,
            hosts_file: self.dir.path().join("hosts"),
            resolv_conf: self.dir.path().join("resolv.conf"),
        }
    }

    fn blob_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.hub.port)
    }
}

struct Driver {
    poll: Poll,
    t: Transport,
}

impl Driver {
    fn new(cfg: TransportConfig) -> Driver {
        Driver {
            poll: Poll::new().unwrap(),
            t: Transport::new(cfg, 100).unwrap(),
        }
    }

    fn call(&mut self, id: u64, method: &str, path: &str, body: &[u8]) {
        let req = Request {
            method: method.into(),
            path: path.into(),
            headers: vec![("Authorization".into(), "Bearer t".into())],
            body: body.to_vec(),
            body_file: None,
        };
        self.t.call(self.poll.registry(), Instant::now(), id, req);
    }

    fn fetch(&mut self, id: u64, url: String, dest: &Path, expected: Option<u64>) {
        let blob = Blob {
            url,
            dest: dest.to_path_buf(),
            expected_size: expected,
        };
        self.t.fetch(self.poll.registry(), Instant::now(), id, blob);
    }

    /// Run the loop until `n` final completions arrived (or 15 s passed).
    fn run(&mut self, n: usize) -> Vec<Completion> {
        self.run_for(n, Duration::from_secs(15))
    }

    fn run_for(&mut self, n: usize, max: Duration) -> Vec<Completion> {
        let mut events = Events::with_capacity(64);
        let mut out = Vec::new();
        let end = Instant::now() + max;
        let finals = |out: &[Completion]| {
            out.iter()
                .filter(|c| !matches!(c, Completion::BlobProgress { .. }))
                .count()
        };
        while finals(&out) < n && Instant::now() < end {
            let now = Instant::now();
            let timeout = self
                .t
                .next_deadline()
                .map_or(Duration::from_millis(200), |d| {
                    d.saturating_duration_since(now)
                })
                .min(Duration::from_millis(200));
            self.poll.poll(&mut events, Some(timeout)).unwrap();
            let now = Instant::now();
            for ev in events.iter() {
                assert!(self.t.owns(ev.token()));
                self.t.ready(self.poll.registry(), ev, now, &mut out);
            }
            if self.t.next_deadline().is_some_and(|d| d <= now) {
                self.t.expire(self.poll.registry(), now, &mut out);
            }
        }
        out
    }

    fn replies(&mut self, n: usize) -> Vec<(u64, Result<Reply, NetError>)> {
        self.run(n)
            .into_iter()
            .filter_map(|c| match c {
                Completion::Reply { id, result } => Some((id, result)),
                _ => None,
            })
            .collect()
    }
}

fn status(r: &Result<Reply, NetError>) -> Result<u16, NetError> {
    r.as_ref().map(|r| r.status).map_err(Clone::clone)
}

// ---------------------------------------------------------------- API calls

#[test]
fn calls_share_one_kept_alive_connection() {
    let env = Env::new("keepalive");
    let mut d = Driver::new(env.config("127.0.0.1"));
    d.call(1, "GET", "/json/10", b"");
    d.call(2, "POST", "/echo", b"{\"k\":1}");
    d.call(3, "GET", "/chunked", b"");
    let r = d.replies(3);
    assert_eq!(r.len(), 3, "{r:?}");
    assert_eq!(r.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [1, 2, 3]);
    let bodies: Vec<Vec<u8>> = r
        .iter()
        .map(|(_, r)| r.as_ref().unwrap().body.clone())
        .collect();
    assert_eq!(bodies[0], b"\"xxxxxxxx\"");
    assert_eq!(bodies[1], b"{\"k\":1}");
    assert_eq!(bodies[2], b"{\"a\":1}");
    assert_eq!(status(&r[1].1), Ok(201));
    // Later calls reuse the same connection.
    d.call(4, "GET", "/json/5", b"");
    assert_eq!(status(&d.replies(1)[0].1), Ok(200));
    assert_eq!(env.hub.seen(|s| (s.connections, s.handshakes)), (1, 1));
    let st = d.t.stats();
    assert_eq!((st.connects, st.handshakes, st.requests), (1, 1, 4));
    assert!(st.bytes_in > 0 && st.bytes_out > 0);
}

#[test]
fn a_reply_over_the_cap_is_too_large() {
    let env = Env::new("cap");
    let mut cfg = env.config("127.0.0.1");
    cfg.max_body = 1000;
    let mut d = Driver::new(cfg);
    d.call(1, "GET", "/json/5000", b"");
    d.call(2, "GET", "/json/900", b"");
    let r = d.replies(2);
    assert_eq!(status(&r[0].1), Err(NetError::TooLarge));
    assert_eq!(status(&r[1].1), Ok(200));
}

#[test]
fn a_stalled_server_times_out() {
    let env = Env::new("stall");
    let mut cfg = env.config("127.0.0.1");
    cfg.request_timeout = Duration::from_millis(400);
    let mut d = Driver::new(cfg);
    let start = Instant::now();
    d.call(1, "GET", "/stall", b"");
    let r = d.replies(1);
    let took = start.elapsed();
    assert_eq!(status(&r[0].1), Err(NetError::Timeout));
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[test]
fn an_unknown_ca_is_refused() {
    let env = Env::new("unknownca");
    let other = pki(&["localhost"]);
    std::fs::write(env.dir.path().join("certs/hub-ca.pem"), other.ca_pem).unwrap();
    let mut d = Driver::new(env.config("127.0.0.1"));
    d.call(1, "GET", "/json/10", b"");
    let r = d.replies(1);
    assert!(matches!(&r[0].1, Err(NetError::Tls(_))), "{:?}", r[0].1);
}

#[test]
fn a_wrong_host_name_is_refused() {
    let env = Env::new("wrongname");
    let mut d = Driver::new(env.config("wronghost"));
    d.call(1, "GET", "/json/10", b"");
    let r = d.replies(1);
    assert!(
        matches!(&r[0].1, Err(NetError::Tls(e)) if e.contains("not valid for name") || e.contains("NotValidForName")),
        "{:?}",
        r[0].1
    );
}

#[test]
fn insecure_mode_accepts_unknown_ca_and_wrong_name() {
    let env = Env::new("insecure");
    std::fs::remove_file(env.dir.path().join("certs/hub-ca.pem")).unwrap();
    let mut cfg = env.config("wronghost");
    cfg.insecure = true;
    let mut d = Driver::new(cfg);
    d.call(1, "GET", "/json/10", b"");
    assert_eq!(status(&d.replies(1)[0].1), Ok(200));
}

#[test]
fn extra_ca_file_is_trusted() {
    let env = Env::new("extraca");
    let ca = env.dir.path().join("extra.pem");
    std::fs::rename(env.dir.path().join("certs/hub-ca.pem"), &ca).unwrap();
    let mut cfg = env.config("127.0.0.1");
    cfg.extra_ca = Some(ca);
    let mut d = Driver::new(cfg);
    d.call(1, "GET", "/json/10", b"");
    assert_eq!(status(&d.replies(1)[0].1), Ok(200));
}

#[test]
fn a_server_closed_idle_connection_is_retried_once() {
    let env = Env::new("idleclose");
    let mut d = Driver::new(env.config("127.0.0.1"));
    d.call(1, "GET", "/bye", b"");
    assert_eq!(status(&d.replies(1)[0].1), Ok(200));
    std::thread::sleep(Duration::from_millis(200));
    // The server has closed; the transport must not report that to the caller.
    d.call(2, "GET", "/json/10", b"");
    assert_eq!(status(&d.replies(1)[0].1), Ok(200));
    assert_eq!(env.hub.seen(|s| s.connections), 2);
}

#[test]
fn cancelled_calls_complete_nothing_and_the_queue_moves_on() {
    let env = Env::new("cancel");
    let mut d = Driver::new(env.config("127.0.0.1"));
    d.call(1, "GET", "/json/10", b"");
    d.call(2, "GET", "/json/20", b"");
    d.call(3, "GET", "/json/30", b"");
    d.t.cancel(d.poll.registry(), 1);
    d.t.cancel(d.poll.registry(), 2);
    let r = d.replies(1);
    assert_eq!(r.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [3]);
    assert!(d.run_for(1, Duration::from_millis(300)).is_empty());
}

// ---------------------------------------------------------------- name resolution

#[test]
fn localhost_resolves_through_the_hosts_file() {
    let env = Env::new("hosts");
    let mut d = Driver::new(env.config("localhost"));
    d.call(1, "GET", "/json/10", b"");
    assert_eq!(status(&d.replies(1)[0].1), Ok(200));
    let mut cfg = env.config("nowhere.test");
    cfg.connect_timeout = Duration::from_secs(1);
    let mut d = Driver::new(cfg);
    d.call(1, "GET", "/json/10", b"");
    assert!(matches!(&d.replies(1)[0].1, Err(NetError::Resolve(_))));
}

/// A DNS server on UDP that answers `hub.test` A with 127.0.0.1, AAAA with nothing, and
/// anything else with NXDOMAIN. Returns its address and a query counter.
fn fake_dns() -> (SocketAddr, Arc<AtomicUsize>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            c.fetch_add(1, Ordering::Relaxed);
            let q = &buf[..n];
            // The question: from 12 to the end (name, type, class).
            let name_end = 12 + q[12..].iter().position(|&b| b == 0).unwrap();
            let qtype = u16::from_be_bytes([q[name_end + 1], q[name_end + 2]]);
            let is_hub = &q[12..name_end] == b"\x03hub\x04test";
            let mut r = q.to_vec();
            r[2] = 0x81;
            r[3] = if is_hub { 0x80 } else { 0x83 };
            if is_hub && qtype == 1 {
                r[7] = 1;
                r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
            }
            let _ = sock.send_to(&r, from);
        }
    });
    (addr, count)
}

#[test]
fn names_resolve_through_a_nameserver_after_a_dead_one() {
    let env = Env::new("dns");
    let (dns, count) = fake_dns();
    // A port nobody listens on: the first server is refused, the second answers.
    let dead = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    std::fs::write(
        env.dir.path().join("resolv.conf"),
        format!("nameserver {dead}\nnameserver {dns}\n"),
    )
    .unwrap();
    let mut d = Driver::new(env.config("hub.test"));
    d.call(1, "GET", "/json/10", b"");
    assert_eq!(status(&d.replies(1)[0].1), Ok(200));
    assert_eq!(count.load(Ordering::Relaxed), 2, "one A and one AAAA query");
    let mut d = Driver::new(env.config("missing.test"));
    d.call(1, "GET", "/json/10", b"");
    let r = d.replies(1);
    assert!(
        matches!(&r[0].1, Err(NetError::Resolve(e)) if e.contains("no such host")),
        "{r:?}"
    );
}

#[test]
fn a_silent_nameserver_times_out_after_two_rounds() {
    let env = Env::new("dnssilent");
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    std::fs::write(
        env.dir.path().join("resolv.conf"),
        format!("nameserver {}\n", silent.local_addr().unwrap()),
    )
    .unwrap();
    let mut cfg = env.config("hub.test");
    cfg.connect_timeout = Duration::from_secs(10);
    let mut d = Driver::new(cfg);
    let start = Instant::now();
    d.call(1, "GET", "/json/10", b"");
    let r = d.replies(1);
    let took = start.elapsed();
    assert!(matches!(&r[0].1, Err(NetError::Resolve(_))), "{r:?}");
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(6),
        "{took:?}"
    );
}

// ---------------------------------------------------------------- blobs

fn blob_done(out: &[Completion]) -> &Result<tern::reactor::hub_net::BlobDone, NetError> {
    out.iter()
        .find_map(|c| match c {
            Completion::BlobDone { result, .. } => Some(result),
            _ => None,
        })
        .unwrap()
}

#[test]
fn a_blob_streams_to_disk_with_its_sha() {
    let env = Env::new("blob");
    let dest = env.dir.path().join("obj.partial");
    let mut d = Driver::new(env.config("127.0.0.1"));
    d.fetch(
        7,
        env.blob_url("/blob/abc?sig=1&x=2"),
        &dest,
        Some(BLOB_LEN as u64),
    );
    // An API call is not held up by the blob.
    d.call(8, "GET", "/json/10", b"");
    let out = d.run(2);
    let done = blob_done(&out).as_ref().unwrap();
    assert_eq!(done.bytes, BLOB_LEN as u64);
    assert_eq!(done.resumed_from, 0);
    assert_eq!(done.sha256_hex, sha_hex(&blob_bytes()));
    assert_eq!(std::fs::read(&dest).unwrap(), blob_bytes());
    let progress: Vec<u64> = out
        .iter()
        .filter_map(|c| match c {
            Completion::BlobProgress { bytes, .. } => Some(*bytes),
            _ => None,
        })
        .collect();
    assert!(
        progress.len() >= 3 && progress.windows(2).all(|w| w[1] - w[0] >= 64 * 1024),
        "{progress:?}"
    );
    assert!(
        env.hub
            .seen(|s| s.targets.contains(&"/blob/abc?sig=1&x=2".to_string()))
    );
}

#[test]
fn a_cut_blob_resumes_with_range() {
    let env = Env::new("cut");
    let dest = env.dir.path().join("obj.partial");
    let mut d = Driver::new(env.config("127.0.0.1"));
    d.fetch(1, env.blob_url("/blob-cut"), &dest, Some(BLOB_LEN as u64));
    let out = d.run(1);
    assert_eq!(blob_done(&out).as_ref().err(), Some(&NetError::Closed));
    let cut = std::fs::metadata(&dest).unwrap().len();
    assert_eq!(cut, (BLOB_LEN / 2) as u64);
    d.fetch(2, env.blob_url("/blob-cut"), &dest, Some(BLOB_LEN as u64));
    let out = d.run(1);
    let done = blob_done(&out).as_ref().unwrap();
    assert_eq!(done.resumed_from, cut);
    assert_eq!(done.bytes, BLOB_LEN as u64);
    assert_eq!(done.sha256_hex, sha_hex(&blob_bytes()));
    let ranges = env.hub.seen(|s| s.ranges.clone());
    assert_eq!(ranges, [None, Some(format!("bytes={cut}-"))]);
}

#[test]
fn a_server_ignoring_range_restarts_cleanly() {
    let env = Env::new("norange");
    let dest = env.dir.path().join("obj.partial");
    std::fs::write(&dest, b"stale bytes from some other download").unwrap();
    let mut d = Driver::new(env.config("127.0.0.1"));
    d.fetch(1, env.blob_url("/blob-norange"), &dest, None);
    let out = d.run(1);
    let done = blob_done(&out).as_ref().unwrap();
    assert_eq!(done.resumed_from, 0);
    assert_eq!(done.sha256_hex, sha_hex(&blob_bytes()));
    assert_eq!(std::fs::read(&dest).unwrap(), blob_bytes());
    assert_eq!(
        env.hub.seen(|s| s.ranges.clone()),
        [Some("bytes=36-".to_string())]
    );
}

#[test]
fn a_plain_http_blob_url_is_refused() {
    let env = Env::new("http");
    let mut d = Driver::new(env.config("127.0.0.1"));
    d.fetch(
        1,
        "http://127.0.0.1/x".into(),
        &env.dir.path().join("o"),
        None,
    );
    let out = d.run(1);
    assert!(matches!(blob_done(&out), Err(NetError::Protocol(_))));
}

// ---------------------------------------------------------------- proxy

/// A CONNECT proxy on a thread: answers 200 and splices bytes both ways. Counts CONNECTs.
fn connect_proxy() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(mut client) = sock else { return };
            let s = s.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut b).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let line = String::from_utf8_lossy(&head)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                s.lock().unwrap().push(line.clone());
                let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let port = target.rsplit(':').next().unwrap_or("0");
                let Ok(mut upstream) = TcpStream::connect(format!("127.0.0.1:{port}")) else {
                    return;
                };
                client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .unwrap();
                let (mut c2, mut u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut u2, &mut c2);
                });
                let _ = std::io::copy(&mut client, &mut upstream);
            });
        }
    });
    (port, seen)
}

#[test]
fn calls_go_through_a_connect_proxy() {
    let env = Env::new("proxy");
    let (port, seen) = connect_proxy();
    let mut cfg = env.config("localhost");
    cfg.proxy = Some(Proxy {
        host: "127.0.0.1".into(),
        port,
        connect: true,
    });
    let mut d = Driver::new(cfg);
    d.call(1, "GET", "/json/10", b"");
    d.call(2, "GET", "/json/10", b"");
    assert_eq!(d.replies(2).len(), 2);
    let lines = seen.lock().unwrap().clone();
    assert_eq!(
        lines,
        [format!("CONNECT localhost:{} HTTP/1.1", env.hub.port)]
    );
}

#[test]
fn noproxyconnect_speaks_tls_to_the_proxy_with_the_hub_name() {
    let env = Env::new("noproxyconnect");
    // The "proxy" is the hub itself: its certificate is checked against the hub's name.
    let mut cfg = env.config("hub.test");
    cfg.port = 1;
    cfg.proxy = Some(Proxy {
        host: "127.0.0.1".into(),
        port: env.hub.port,
        connect: false,
    });
    let mut d = Driver::new(cfg);
    d.call(1, "GET", "/json/10", b"");
    assert_eq!(status(&d.replies(1)[0].1), Ok(200));
}

#[test]
fn an_idle_connection_is_closed_after_idle_close() {
    let env = Env::new("idle");
    let mut cfg = env.config("127.0.0.1");
    cfg.idle_close = Duration::from_millis(200);
    let mut d = Driver::new(cfg);
    d.call(1, "GET", "/json/10", b"");
    assert_eq!(status(&d.replies(1)[0].1), Ok(200));
    let deadline = d.t.next_deadline().unwrap();
    assert!(deadline > Instant::now() && deadline < Instant::now() + Duration::from_millis(250));
    assert!(d.run_for(1, Duration::from_millis(400)).is_empty());
    assert_eq!(d.t.next_deadline(), None, "nothing left to do once closed");
    d.call(2, "GET", "/json/10", b"");
    assert_eq!(status(&d.replies(1)[0].1), Ok(200));
    assert_eq!(env.hub.seen(|s| s.connections), 2);
    assert_eq!(d.t.stats().connects, 2);
}

#[test]
fn a_large_request_body_is_sent_whole() {
    let env = Env::new("bigbody");
    let mut d = Driver::new(env.config("127.0.0.1"));
    let body: Vec<u8> = (0..700_000).map(|i| b'a' + (i % 26) as u8).collect();
    d.call(1, "POST", "/echo", &body);
    let r = d.replies(1);
    assert_eq!(r[0].1.as_ref().map(|r| r.body == body), Ok(true));
}

#[test]
fn a_file_body_is_streamed_whole_and_a_missing_file_fails_the_call() {
    let env = Env::new("filebody");
    let mut d = Driver::new(env.config("127.0.0.1"));
    let body: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
    let path = env.dir.path().join("upload.bin");
    std::fs::write(&path, &body).unwrap();
    for (id, file) in [(1, path.clone()), (2, env.dir.path().join("missing"))] {
        let req = Request {
            method: "PUT".into(),
            path: "/echo".into(),
            headers: Vec::new(),
            body: Vec::new(),
            body_file: Some(file),
        };
        d.t.call(d.poll.registry(), Instant::now(), id, req);
        let r = d.replies(1);
        assert_eq!(r[0].0, id);
        if id == 1 {
            assert_eq!(r[0].1.as_ref().map(|r| r.body == body), Ok(true));
        } else {
            assert!(matches!(r[0].1, Err(NetError::Io(_))), "{:?}", r[0].1);
        }
    }
}

#[test]
fn reset_drops_everything_silently() {
    let env = Env::new("reset");
    let mut d = Driver::new(env.config("127.0.0.1"));
    d.call(1, "GET", "/stall", b"");
    d.call(2, "GET", "/json/10", b"");
    d.fetch(3, env.blob_url("/stall"), &env.dir.path().join("o"), None);
    assert!(d.run_for(1, Duration::from_millis(200)).is_empty());
    d.t.reset(d.poll.registry());
    assert_eq!(d.t.next_deadline(), None);
    assert!(d.run_for(1, Duration::from_millis(200)).is_empty());
    d.call(4, "GET", "/json/10", b"");
    assert_eq!(d.replies(1)[0].0, 4);
}

#[test]
fn a_refused_connection_is_a_connect_error() {
    let env = Env::new("refused");
    let mut cfg = env.config("127.0.0.1");
    // A TCP port bound but never listened on: reserved for this test (no other test's server
    // can take it meanwhile, as one did with a port only probed free), and refused.
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, bind, getsockname, socket,
    };
    let held = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .unwrap();
    bind(held.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).unwrap();
    cfg.port = getsockname::<SockaddrIn>(held.as_raw_fd()).unwrap().port();
    let mut d = Driver::new(cfg);
    d.call(1, "GET", "/json/10", b"");
    let r = d.replies(1);
    assert!(matches!(&r[0].1, Err(NetError::Connect(_))), "{:?}", r[0].1);
    drop(held);
}

#[test]
fn a_hub_that_never_handshakes_times_out_within_connect_timeout() {
    let env = Env::new("nohandshake");
    let mute = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = env.config("127.0.0.1");
    cfg.port = mute.local_addr().unwrap().port();
    cfg.connect_timeout = Duration::from_millis(500);
    let mut d = Driver::new(cfg);
    let start = Instant::now();
    d.call(1, "GET", "/json/10", b"");
    d.fetch(
        2,
        format!(
            "https://127.0.0.1:{}/blob",
            mute.local_addr().unwrap().port()
        ),
        &env.dir.path().join("o"),
        None,
    );
    let out = d.run(2);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert!(
        matches!(
            &out[..],
            [
                Completion::Reply {
                    result: Err(NetError::Timeout),
                    ..
                },
                Completion::BlobDone {
                    result: Err(NetError::Timeout),
                    ..
                }
            ] | [
                Completion::BlobDone {
                    result: Err(NetError::Timeout),
                    ..
                },
                Completion::Reply {
                    result: Err(NetError::Timeout),
                    ..
                }
            ]
        ),
        "{out:?}"
    );
    assert_eq!(d.t.stats().connects, 2);
    assert_eq!(d.t.stats().handshakes, 0);
}
