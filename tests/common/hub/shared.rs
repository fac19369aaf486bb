//! The state every thread of the test hub shares: the model, the fault rules, the
//! up/down and stop flags, the live sockets, the counters and the request log.

use std::collections::{BTreeMap, HashMap};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::HubOpts;
use super::faults::Faults;
use super::model::Model;

/// Totals since the hub started. Bytes are application (plaintext HTTP) bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HubStats {
    /// TCP connections accepted, including those closed at once while the hub is down.
    pub connections: u64,
    /// TLS handshakes completed.
    pub handshakes: u64,
    /// HTTP requests read in full.
    pub requests: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// The same counters for one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnStats {
    pub conn: u64,
    pub handshake: bool,
    pub requests: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Still open.
    pub open: bool,
}

/// One answered request.
#[derive(Clone, Debug)]
pub struct Logged {
    pub conn: u64,
    pub method: String,
    /// The request target: path and query, as sent.
    pub path: String,
    pub status: u16,
    pub req_headers: Vec<(String, String)>,
    /// Request body bytes (after de-chunking).
    pub body_len: usize,
    /// Response body bytes actually sent (less than the Content-Length after a cut).
    pub resp_len: usize,
    pub at: Instant,
}

impl Logged {
    /// A request header by name, case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.req_headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
pub struct Counters {
    pub total: HubStats,
    pub conns: BTreeMap<u64, ConnStats>,
}

pub struct Shared {
    pub opts: HubOpts,
    pub port: u16,
    pub model: Mutex<Model>,
    pub faults: Mutex<Faults>,
    pub down: AtomicBool,
    pub stopping: AtomicBool,
    pub counters: Mutex<Counters>,
    pub log: Mutex<Vec<Logged>>,
    /// A clone of every open connection's socket, to close them from outside.
    pub live: Mutex<HashMap<u64, TcpStream>>,
    pub threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Locks a mutex, ignoring poisoning: a panicking test thread must not wedge the hub.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn new(opts: HubOpts, port: u16) -> Shared {
        let model = Model::new(opts.owner.clone(), port);
        Shared {
            opts,
            port,
            model: Mutex::new(model),
            faults: Mutex::new(Faults::default()),
            down: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            counters: Mutex::new(Counters::default()),
            log: Mutex::new(Vec::new()),
            live: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
        }
    }

    pub fn model(&self) -> MutexGuard<'_, Model> {
        lock(&self.model)
    }

    pub fn faults(&self) -> MutexGuard<'_, Faults> {
        lock(&self.faults)
    }

    /// Down or stopping: connections must end.
    pub fn halted(&self) -> bool {
        self.down.load(Ordering::SeqCst) || self.stopping.load(Ordering::SeqCst)
    }

    /// Sleeps `d` in small steps; false if the hub went down or stopped meanwhile.
    pub fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if self.halted() {
                return false;
            }
            std::thread::sleep((end - Instant::now()).min(Duration::from_millis(10)));
        }
        !self.halted()
    }

    /// Counts an accepted connection and returns its id (from 1).
    pub fn new_conn(&self) -> u64 {
        let mut c = lock(&self.counters);
        c.total.connections += 1;
        let id = c.total.connections;
        c.conns.insert(
            id,
            ConnStats {
                conn: id,
                open: true,
                ..ConnStats::default()
            },
        );
        id
    }

    fn with_conn(&self, id: u64, f: impl FnOnce(&mut HubStats, &mut ConnStats)) {
        let mut c = lock(&self.counters);
        let Counters { total, conns } = &mut *c;
        if let Some(cs) = conns.get_mut(&id) {
            f(total, cs);
        }
    }

    pub fn count_handshake(&self, id: u64) {
        self.with_conn(id, |t, c| {
            t.handshakes += 1;
            c.handshake = true;
        });
    }

    pub fn count_request(&self, id: u64) {
        self.with_conn(id, |t, c| {
            t.requests += 1;
            c.requests += 1;
        });
    }

    pub fn count_in(&self, id: u64, n: usize) {
        self.with_conn(id, |t, c| {
            t.bytes_in += n as u64;
            c.bytes_in += n as u64;
        });
    }

    pub fn count_out(&self, id: u64, n: usize) {
        self.with_conn(id, |t, c| {
            t.bytes_out += n as u64;
            c.bytes_out += n as u64;
        });
    }

    pub fn conn_closed(&self, id: u64) {
        lock(&self.live).remove(&id);
        self.with_conn(id, |_, c| c.open = false);
    }

    /// Shuts down every open connection's socket; their threads then end.
    pub fn close_all(&self) {
        for s in lock(&self.live).values() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub fn record(&self, entry: Logged) {
        lock(&self.log).push(entry);
    }
}
