//! Non-blocking name resolution for the hub client: a literal address needs no lookup, then
//! `/etc/hosts`, then A and AAAA queries over UDP to each `resolv.conf` nameserver in turn.
//!
//! Owns at most one UDP socket at a time, registered under the connection's token. It must
//! never block: no libc resolver, one datagram read per readiness slot, a deadline per try
//! (the caller calls [`Resolver::advance`] at [`Resolver::deadline`]). It never retries beyond
//! its [`ROUNDS`] passes over the nameservers.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{ErrorKind, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};

use super::NetError;
use crate::net::dns::{self, DnsError, QType};
use crate::net::hosts;

/// Time to wait for answers from one nameserver.
pub const TRY_TIMEOUT: Duration = Duration::from_secs(2);
/// Passes over the nameserver list.
pub const ROUNDS: usize = 2;
/// Bytes read from `/etc/hosts` or `resolv.conf` at most.
const MAX_FILE: u64 = 64 * 1024;
/// Datagrams read per `advance` (stray ones included) before yielding.
const MAX_DATAGRAMS: usize = 8;

/// The outcome of [`start`].
pub enum Resolved {
    /// Known at once (literal or hosts file).
    Done(Vec<IpAddr>),
    /// Queries are out; drive the resolver.
    Pending(Box<Resolver>),
}

/// Resolve `host`: literal, hosts file, else start DNS queries.
pub fn start(
    registry: &Registry,
    token: Token,
    host: &str,
    hosts_file: &Path,
    resolv_conf: &Path,
    now: Instant,
) -> Result<Resolved, NetError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(Resolved::Done(vec![ip]));
    }
    let from_hosts = hosts::lookup_hosts(&read_small(hosts_file), host);
    if !from_hosts.is_empty() {
        return Ok(Resolved::Done(from_hosts));
    }
    let servers = hosts::nameservers(&read_small(resolv_conf));
    if servers.is_empty() {
        return Err(NetError::Resolve(format!(
            "{host}: not in {} and no nameserver in {}",
            hosts_file.display(),
            resolv_conf.display()
        )));
    }
    dns::build_query(0, host, QType::A).map_err(|e| NetError::Resolve(format!("{host}: {e}")))?;
    let mut r = Resolver {
        name: host.to_string(),
        servers,
        tries: 0,
        attempt: None,
        token,
        found: Vec::new(),
        last_error: String::from("no answer"),
    };
    r.next_server(registry, now)?;
    Ok(Resolved::Pending(Box::new(r)))
}

fn read_small(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(f) = std::fs::File::open(path) {
        // Local configuration files: a bounded read, as libc does on every lookup.
        let _ = f.take(MAX_FILE).read_to_string(&mut text);
    }
    text
}

struct Query {
    qtype: QType,
    id: u16,
    answer: Option<Result<Vec<IpAddr>, DnsError>>,
}

struct Attempt {
    socket: UdpSocket,
    server: SocketAddr,
    deadline: Instant,
    queries: [Query; 2],
}

/// A lookup in progress.
pub struct Resolver {
    name: String,
    servers: Vec<SocketAddr>,
    tries: usize,
    attempt: Option<Attempt>,
    token: Token,
    found: Vec<IpAddr>,
    last_error: String,
}

impl Resolver {
    /// When the current try gives up.
    pub fn deadline(&self) -> Option<Instant> {
        self.attempt.as_ref().map(|a| a.deadline)
    }

    /// Read what arrived, or move on after a timeout. `Some(addresses)` when done.
    pub fn advance(
        &mut self,
        registry: &Registry,
        now: Instant,
    ) -> Result<Option<Vec<IpAddr>>, NetError> {
        let Some(attempt) = self.attempt.as_mut() else {
            return Err(NetError::Resolve(format!("{}: lookup ended", self.name)));
        };
        let mut buf = [0u8; 1500];
        let mut failed = false;
        for _ in 0..MAX_DATAGRAMS {
            match attempt.socket.recv(&mut buf) {
                Ok(n) => {
                    for q in attempt.queries.iter_mut().filter(|q| q.answer.is_none()) {
                        match dns::parse_response(&buf[..n], q.id, &self.name, q.qtype) {
                            Err(DnsError::NotOurs) => {}
                            r => q.answer = Some(r),
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    // ICMP port unreachable and the like: this server is no good.
                    self.last_error = format!("{}: {e}", attempt.server);
                    failed = true;
                    break;
                }
            }
        }
        for q in &attempt.queries {
            match &q.answer {
                Some(Ok(ips)) => {
                    for ip in ips {
                        if !self.found.contains(ip) {
                            self.found.push(*ip);
                        }
                    }
                }
                Some(Err(DnsError::NxDomain)) => {
                    self.close(registry);
                    return Err(NetError::Resolve(format!("{}: no such host", self.name)));
                }
                Some(Err(e)) => {
                    self.last_error = format!("{}: {e}", attempt.server);
                    failed = true;
                }
                None => {}
            }
        }
        let all_answered = attempt.queries.iter().all(|q| q.answer.is_some());
        let timed_out = now >= attempt.deadline;
        if !self.found.is_empty() && (all_answered || timed_out || failed) {
            self.close(registry);
            // IPv4 first: the hub has always been reached over IPv4.
            let mut ips = std::mem::take(&mut self.found);
            ips.sort_by_key(|ip| ip.is_ipv6());
            return Ok(Some(ips));
        }
        if all_answered && !failed {
            self.close(registry);
            return Err(NetError::Resolve(format!("{}: no address", self.name)));
        }
        if timed_out && !failed {
            self.last_error = format!("{}: timed out", attempt.server);
        }
        if failed || timed_out {
            self.next_server(registry, now)?;
        }
        Ok(None)
    }

    /// Deregister and drop the socket.
    pub fn close(&mut self, registry: &Registry) {
        if let Some(mut a) = self.attempt.take() {
            let _ = registry.deregister(&mut a.socket);
        }
    }

    /// Send both queries to the next nameserver, or give up after the last round.
    fn next_server(&mut self, registry: &Registry, now: Instant) -> Result<(), NetError> {
        self.close(registry);
        while self.tries < self.servers.len() * ROUNDS {
            let server = self.servers[self.tries % self.servers.len()];
            self.tries += 1;
            match self.send_to(registry, server, now) {
                Ok(attempt) => {
                    self.attempt = Some(attempt);
                    return Ok(());
                }
                Err(e) => self.last_error = format!("{server}: {e}"),
            }
        }
        Err(NetError::Resolve(format!(
            "{}: {}",
            self.name, self.last_error
        )))
    }

    fn send_to(
        &self,
        registry: &Registry,
        server: SocketAddr,
        now: Instant,
    ) -> Result<Attempt, String> {
        let local = match server {
            SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
        };
        let mut socket = UdpSocket::bind(local).map_err(|e| e.to_string())?;
        socket.connect(server).map_err(|e| e.to_string())?;
        registry
            .register(&mut socket, self.token, Interest::READABLE)
            .map_err(|e| e.to_string())?;
        let seed = random_u32();
        let queries = [
            Query {
                qtype: QType::A,
                id: seed as u16,
                answer: None,
            },
            Query {
                qtype: QType::Aaaa,
                id: ((seed >> 16) as u16).wrapping_add(u16::from(seed >> 16 == seed & 0xffff)),
                answer: None,
            },
        ];
        for q in &queries {
            let packet = dns::build_query(q.id, &self.name, q.qtype).map_err(|e| e.to_string())?;
            if let Err(e) = socket.send(&packet) {
                let _ = registry.deregister(&mut socket);
                return Err(e.to_string());
            }
        }
        Ok(Attempt {
            socket,
            server,
            deadline: now + TRY_TIMEOUT,
            queries,
        })
    }
}

/// Query ids need only be unpredictable off-path: std's per-process random hash keys, mixed
/// with the clock, are enough (the kernel's random source port adds 16 more bits).
fn random_u32() -> u32 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u32
}
