//! The hub client's network transport: one kept-alive TLS connection for API calls and one
//! connection per blob download, all non-blocking under the reactor's mio `Poll`.
//!
//! Owns every socket of the hub client (tokens `token_base..token_base + 1024`) and their
//! deadlines. It turns a [`Request`] into exactly one [`Completion`] (unless cancelled) and
//! never retries or backs off — the hub state machine does — except for one transparent retry
//! of a request whose reused, idle connection turned out closed. It must never block: no
//! blocking DNS, connect or handshake, reads bounded per readiness round.
//!
//! How the reactor drives it:
//! - every event whose token [`Transport::owns`] goes to [`Transport::ready`];
//! - the poll timeout includes [`Transport::next_deadline`], and [`Transport::expire`] runs once
//!   it passed. The deadline may equal the last `now` given: a completion decided inside
//!   `call`/`fetch` (bad URL, no nameserver configured, a complete partial blob, ...)
//!   or reads left over by the per-round budget are handed out by the next `expire`.
//! - completions are only ever appended to the `out` of `ready`/`expire`.
//!
//! Errors: `Resolve` (name unknown or no nameserver answer), `Connect` (refused/unreachable,
//! proxy refused CONNECT), `Tls` (certificate, name, handshake), `Timeout` (connect_timeout for
//! resolve+TCP+TLS, request_timeout without progress afterwards), `Closed` (peer closed before
//! the reply was complete), `Protocol` (bad framing, unexpected status for a blob, size
//! mismatch), `TooLarge` (reply over max_body), `Io` (local file or socket error).

mod api;
mod blob;
mod exchange;
mod fetch;
mod resolver;
mod stream;
pub mod tls;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Registry, Token};
use rustls::ClientConfig;

use api::ApiLane;
use fetch::BlobJob;
use stream::Dial;

/// Tokens owned by a transport.
pub const TOKENS: usize = 1024;

#[derive(Clone, Debug)]
pub struct Proxy {
    pub host: String,
    pub port: u16,
    /// True: `CONNECT host:port` through it. False (`noproxyconnect`): TLS straight to it.
    pub connect: bool,
}

#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// The hub (a name or a literal IP).
    pub host: String,
    pub port: u16,
    pub proxy: Option<Proxy>,
    /// Every PEM file in it is a trusted CA (a missing directory trusts none).
    pub certs_dir: PathBuf,
    pub extra_ca: Option<PathBuf>,
    pub insecure: bool,
    pub user_agent: String,
    /// Resolve + TCP + TLS handshake.
    pub connect_timeout: Duration,
    /// No progress on a request for this long = Timeout.
    pub request_timeout: Duration,
    /// Close the kept-alive API connection after this idle time.
    pub idle_close: Duration,
    /// Cap of buffered replies.
    pub max_body: usize,
    pub hosts_file: PathBuf,
    pub resolv_conf: PathBuf,
}

pub type CallId = u64;

#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send this file as the body instead of `body`, read in slices as the connection takes
    /// it (an object upload never sits in memory whole).
    pub body_file: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NetError {
    Resolve(String),
    Connect(String),
    Tls(String),
    Timeout,
    Closed,
    Protocol(String),
    TooLarge,
    Io(String),
}

impl std::fmt::Display for NetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetError::Resolve(s) => write!(f, "resolve: {s}"),
            NetError::Connect(s) => write!(f, "connect: {s}"),
            NetError::Tls(s) => write!(f, "TLS: {s}"),
            NetError::Timeout => f.write_str("timed out"),
            NetError::Closed => f.write_str("connection closed"),
            NetError::Protocol(s) => write!(f, "protocol: {s}"),
            NetError::TooLarge => f.write_str("reply too large"),
            NetError::Io(s) => write!(f, "I/O: {s}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Blob {
    /// `https://host[:port]/path[?query]`: path and query are sent, host and port dialled.
    pub url: String,
    /// The partial file: its bytes are kept and the rest asked for with `Range`.
    pub dest: PathBuf,
    pub expected_size: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobDone {
    pub bytes: u64,
    pub sha256_hex: String,
    pub resumed_from: u64,
}

#[derive(Debug)]
pub enum Completion {
    Reply {
        id: CallId,
        result: Result<Reply, NetError>,
    },
    /// Bytes in the file so far; at most every [`PROGRESS_STEP`] bytes.
    BlobProgress { id: CallId, bytes: u64 },
    BlobDone {
        id: CallId,
        result: Result<BlobDone, NetError>,
    },
}

impl Completion {
    pub fn id(&self) -> CallId {
        match self {
            Completion::Reply { id, .. }
            | Completion::BlobProgress { id, .. }
            | Completion::BlobDone { id, .. } => *id,
        }
    }
}

/// Bytes between two `BlobProgress` reports.
pub const PROGRESS_STEP: u64 = 64 * 1024;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// TCP connections established.
    pub connects: u64,
    /// TLS handshakes completed.
    pub handshakes: u64,
    /// Requests (calls and blob GETs) fully sent.
    pub requests: u64,
    /// Bytes written to / read from sockets (TLS records, proxy exchange).
    pub bytes_out: u64,
    pub bytes_in: u64,
}

pub struct Transport {
    cfg: TransportConfig,
    tls: Arc<ClientConfig>,
    token_base: usize,
    api: ApiLane,
    /// One slot per blob token; boxed, so the idle table costs a pointer per slot (a TLS
    /// connection inline would make it 1.6 MB).
    blobs: Vec<Option<Box<BlobJob>>>,
    next_slot: usize,
    /// Completions decided outside `ready`/`expire` (e.g. a bad URL), delivered at the next.
    early: Vec<Completion>,
    /// The latest `now` seen; "due now" deadlines use it.
    last_now: Option<Instant>,
    stats: Stats,
}

impl Transport {
    /// Load the TLS trust (reads the CA files once). Tokens used: `token_base..token_base+1023`.
    pub fn new(cfg: TransportConfig, token_base: usize) -> Result<Transport, String> {
        let tls = tls::client_config(&cfg.certs_dir, cfg.extra_ca.as_deref(), cfg.insecure)?;
        let mut blobs = Vec::new();
        blobs.resize_with(TOKENS - 1, || None);
        Ok(Transport {
            cfg,
            tls,
            token_base,
            api: ApiLane::default(),
            blobs,
            next_slot: 0,
            early: Vec::new(),
            last_now: None,
            stats: Stats::default(),
        })
    }

    pub fn owns(&self, token: Token) -> bool {
        token.0 >= self.token_base && token.0 < self.token_base + TOKENS
    }

    fn dial(&self) -> Dial<'_> {
        dial(&self.cfg, &self.tls)
    }

    /// Queue a call on the one kept-alive API connection (opened on demand, reused; one in
    /// flight, the rest FIFO; never behind a blob).
    pub fn call(&mut self, registry: &Registry, now: Instant, id: CallId, req: Request) {
        self.last_now = Some(now);
        self.api.queue.push_back((id, req));
        let mut out = std::mem::take(&mut self.early);
        self.drive_api(registry, now, &mut out);
        self.early = out;
    }

    /// Fetch a blob on a connection of its own (several may run at once).
    pub fn fetch(&mut self, registry: &Registry, now: Instant, id: CallId, blob: Blob) {
        self.last_now = Some(now);
        let Some(slot) = self.free_slot() else {
            self.early.push(Completion::BlobDone {
                id,
                result: Err(NetError::Io("too many blob downloads".into())),
            });
            return;
        };
        let token = Token(self.token_base + 1 + slot);
        let dial = self.dial();
        match BlobJob::start(registry, token, &dial, &self.cfg, now, id, blob) {
            Ok(fetch::Started::Running(job)) => self.blobs[slot] = Some(job),
            Ok(fetch::Started::Finished(done)) => self.early.push(Completion::BlobDone {
                id,
                result: Ok(done),
            }),
            Err(e) => self.early.push(Completion::BlobDone { id, result: Err(e) }),
        }
        let mut out = std::mem::take(&mut self.early);
        if let Some(job) = self.blobs[slot].as_mut()
            && job.drive(registry, now, &self.cfg, &mut self.stats, &mut out)
        {
            self.blobs[slot] = None;
        }
        self.early = out;
    }

    fn free_slot(&mut self) -> Option<usize> {
        let n = self.blobs.len();
        for i in 0..n {
            let slot = (self.next_slot + i) % n;
            if self.blobs[slot].is_none() {
                self.next_slot = (slot + 1) % n;
                return Some(slot);
            }
        }
        None
    }

    /// Forget a call or fetch: no completion for it afterwards. A fetch's partial file stays.
    pub fn cancel(&mut self, registry: &Registry, id: CallId) {
        self.early.retain(|c| c.id() != id);
        self.api.cancel(registry, id);
        for slot in self.blobs.iter_mut() {
            if slot.as_ref().is_some_and(|j| j.id == id)
                && let Some(mut job) = slot.take()
            {
                job.close(registry);
            }
        }
    }

    pub fn ready(
        &mut self,
        registry: &Registry,
        event: &mio::event::Event,
        now: Instant,
        out: &mut Vec<Completion>,
    ) {
        self.last_now = Some(now);
        out.append(&mut self.early);
        let Some(index) = event.token().0.checked_sub(self.token_base) else {
            return;
        };
        match index {
            0 => self.drive_api(registry, now, out),
            i if i < TOKENS => self.drive_blob(registry, i - 1, now, out),
            _ => {}
        }
    }

    fn drive_api(&mut self, registry: &Registry, now: Instant, out: &mut Vec<Completion>) {
        // Built from the fields (not `self.dial()`): the API lane is borrowed mutably beside it.
        let dial = dial(&self.cfg, &self.tls);
        self.api.drive(
            registry,
            Token(self.token_base),
            &dial,
            &self.cfg,
            now,
            &mut self.stats,
            out,
        );
    }

    fn drive_blob(
        &mut self,
        registry: &Registry,
        slot: usize,
        now: Instant,
        out: &mut Vec<Completion>,
    ) {
        let Some(job) = self.blobs.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if job.drive(registry, now, &self.cfg, &mut self.stats, out) {
            self.blobs[slot] = None;
        }
    }

    /// The earliest time `expire` must run.
    pub fn next_deadline(&self) -> Option<Instant> {
        let due_now = if self.early.is_empty() {
            None
        } else {
            self.last_now
        };
        let blobs = self
            .blobs
            .iter()
            .flatten()
            .filter_map(|j| j.deadline(&self.cfg, self.last_now));
        [due_now, self.api.deadline(&self.cfg, self.last_now)]
            .into_iter()
            .flatten()
            .chain(blobs)
            .min()
    }

    /// Run what is due: timeouts, idle closes, reads left over by the budget.
    pub fn expire(&mut self, registry: &Registry, now: Instant, out: &mut Vec<Completion>) {
        self.last_now = Some(now);
        out.append(&mut self.early);
        if self
            .api
            .deadline(&self.cfg, Some(now))
            .is_some_and(|d| d <= now)
        {
            self.drive_api(registry, now, out);
        }
        for slot in 0..self.blobs.len() {
            let due = self.blobs[slot]
                .as_ref()
                .and_then(|j| j.deadline(&self.cfg, Some(now)))
                .is_some_and(|d| d <= now);
            if due {
                self.drive_blob(registry, slot, now, out);
            }
        }
    }

    /// Drop every connection and forget every queued call and fetch, completing nothing
    /// (as if each were cancelled).
    pub fn reset(&mut self, registry: &Registry) {
        self.api.reset(registry);
        for slot in self.blobs.iter_mut() {
            if let Some(mut job) = slot.take() {
                job.close(registry);
            }
        }
        self.early.clear();
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }
}

/// Header list for `Reply`: names lowercased (as parsed), values as text.
fn reply_headers(head: &crate::http::ResponseHead) -> Vec<(String, String)> {
    head.headers
        .iter()
        .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect()
}

/// A `VecDeque` of queued calls, for `api`.
type Queue = VecDeque<(CallId, Request)>;

/// What a new connection needs to know: trust, proxy, names, identity.
fn dial<'a>(cfg: &'a TransportConfig, tls: &'a Arc<ClientConfig>) -> Dial<'a> {
    Dial {
        tls,
        proxy: cfg.proxy.as_ref(),
        insecure: cfg.insecure,
        user_agent: &cfg.user_agent,
        hosts_file: &cfg.hosts_file,
        resolv_conf: &cfg.resolv_conf,
    }
}
