//! One TLS connection to a hub (or blob) origin: resolve, non-blocking TCP connect (each
//! address in turn), an optional proxy `CONNECT`, the TLS handshake, then plaintext reads and
//! writes — every step driven by readiness.
//!
//! Owns one socket (UDP while resolving, then TCP), registered under one token, and the rustls
//! `ClientConnection`. It must never block and never read more than one TLS record's worth of
//! ciphertext per [`TlsConn::read`] call; it knows nothing of HTTP beyond the proxy's reply head.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use log::warn;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use super::resolver::{self, Resolved, Resolver};
use super::{NetError, Proxy, Stats};
use crate::http::{Limits, parse_response_head};

/// Everything a connection needs to know besides its origin.
pub struct Dial<'a> {
    pub tls: &'a Arc<ClientConfig>,
    pub proxy: Option<&'a Proxy>,
    pub insecure: bool,
    pub user_agent: &'a str,
    pub hosts_file: &'a Path,
    pub resolv_conf: &'a Path,
}

/// Socket reads per [`TlsConn::read`] call at most.
const MAX_SOCKET_READS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Resolving,
    Connecting,
    ProxyConnect,
    Handshake,
    Open,
    Closed,
}

/// What a plaintext read gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Got {
    Data(usize),
    /// Nothing more until the next readiness.
    WouldBlock,
    /// The peer closed.
    Eof,
}

pub struct TlsConn {
    token: Token,
    stage: Stage,
    resolver: Option<Box<Resolver>>,
    addrs: VecDeque<SocketAddr>,
    dial_port: u16,
    sock: Option<TcpStream>,
    tls: ClientConnection,
    proxy_out: Vec<u8>,
    proxy_in: Vec<u8>,
    deadline: Instant,
    last_error: String,
    eof: bool,
}

impl TlsConn {
    /// Start connecting to `host:port` (through the proxy if any); done by `deadline`.
    pub fn open(
        registry: &Registry,
        token: Token,
        dial: &Dial<'_>,
        host: &str,
        port: u16,
        deadline: Instant,
        now: Instant,
    ) -> Result<TlsConn, NetError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(bare.to_string())
            .map_err(|e| NetError::Tls(format!("{host}: {e}")))?;
        let tls = ClientConnection::new(dial.tls.clone(), name)
            .map_err(|e| NetError::Tls(e.to_string()))?;
        if dial.insecure {
            warn!(
                "hub: connecting to {host}:{port} WITHOUT verifying its TLS certificate (insecure)"
            );
        }
        let (dial_host, dial_port) = match dial.proxy {
            Some(p) => (p.host.as_str(), p.port),
            None => (bare, port),
        };
        let proxy_out = match dial.proxy {
            Some(p) if p.connect => format!(
                "CONNECT {bare}:{port} HTTP/1.1\r\nHost: {bare}:{port}\r\nUser-Agent: {}\r\n\r\n",
                dial.user_agent
            )
            .into_bytes(),
            _ => Vec::new(),
        };
        let mut conn = TlsConn {
            token,
            stage: Stage::Resolving,
            resolver: None,
            addrs: VecDeque::new(),
            dial_port,
            sock: None,
            tls,
            proxy_out,
            proxy_in: Vec::new(),
            deadline,
            last_error: String::from("no address"),
            eof: false,
        };
        match resolver::start(
            registry,
            token,
            dial_host,
            dial.hosts_file,
            dial.resolv_conf,
            now,
        )? {
            Resolved::Done(ips) => conn.resolved(ips),
            Resolved::Pending(r) => conn.resolver = Some(r),
        }
        Ok(conn)
    }

    pub fn is_open(&self) -> bool {
        self.stage == Stage::Open
    }

    /// The next time [`TlsConn::advance`] must run even without readiness (setup only).
    pub fn deadline(&self) -> Option<Instant> {
        match self.stage {
            Stage::Open | Stage::Closed => None,
            _ => Some(
                self.resolver
                    .as_ref()
                    .and_then(|r| r.deadline())
                    .map_or(self.deadline, |d| d.min(self.deadline)),
            ),
        }
    }

    fn resolved(&mut self, ips: Vec<std::net::IpAddr>) {
        self.addrs = ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, self.dial_port))
            .collect();
        self.stage = Stage::Connecting;
    }

    /// Drive the set-up as far as it goes without blocking. Fails with `Timeout` once the
    /// connect deadline passed.
    pub fn advance(
        &mut self,
        registry: &Registry,
        now: Instant,
        stats: &mut Stats,
    ) -> Result<(), NetError> {
        loop {
            let before = self.stage;
            match self.stage {
                Stage::Resolving => {
                    let Some(r) = self.resolver.as_mut() else {
                        return Err(NetError::Resolve("lookup lost".into()));
                    };
                    if let Some(ips) = r.advance(registry, now)? {
                        self.resolver = None;
                        self.resolved(ips);
                    }
                }
                Stage::Connecting => self.connecting(registry, stats)?,
                Stage::ProxyConnect => self.proxy_connect(stats)?,
                Stage::Handshake => self.handshake(stats)?,
                Stage::Open => return Ok(()),
                Stage::Closed => return Err(NetError::Closed),
            }
            if self.stage == before {
                break;
            }
        }
        if self.stage != Stage::Open && now >= self.deadline {
            return Err(NetError::Timeout);
        }
        Ok(())
    }

    fn connecting(&mut self, registry: &Registry, stats: &mut Stats) -> Result<(), NetError> {
        if let Some(sock) = &self.sock {
            let failed = match sock.take_error() {
                Ok(Some(e)) | Err(e) => Some(e),
                Ok(None) => match sock.peer_addr() {
                    Ok(_) => None,
                    Err(e) if e.kind() == ErrorKind::NotConnected => return Ok(()),
                    Err(e) => Some(e),
                },
            };
            match failed {
                None => {
                    stats.connects += 1;
                    let _ = sock.set_nodelay(true);
                    self.stage = if self.proxy_out.is_empty() {
                        Stage::Handshake
                    } else {
                        Stage::ProxyConnect
                    };
                    return Ok(());
                }
                Some(e) => {
                    self.last_error = e.to_string();
                    self.drop_socket(registry);
                }
            }
        }
        while let Some(addr) = self.addrs.pop_front() {
            match TcpStream::connect(addr) {
                Ok(mut sock) => {
                    registry
                        .register(
                            &mut sock,
                            self.token,
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .map_err(|e| NetError::Io(e.to_string()))?;
                    self.sock = Some(sock);
                    return Ok(());
                }
                Err(e) => self.last_error = format!("{addr}: {e}"),
            }
        }
        Err(NetError::Connect(self.last_error.clone()))
    }

    fn proxy_connect(&mut self, stats: &mut Stats) -> Result<(), NetError> {
        let Some(sock) = self.sock.as_mut() else {
            return Err(NetError::Closed);
        };
        let mut io = Counted { sock, stats };
        while !self.proxy_out.is_empty() {
            match io.write(&self.proxy_out) {
                Ok(0) => return Err(NetError::Connect("proxy closed".into())),
                Ok(n) => {
                    self.proxy_out.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(NetError::Connect(format!("proxy: {e}"))),
            }
        }
        let limits = Limits::default();
        let mut buf = [0u8; 512];
        loop {
            match io.read(&mut buf) {
                Ok(0) => return Err(NetError::Connect("proxy closed".into())),
                Ok(n) => self.proxy_in.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(NetError::Connect(format!("proxy: {e}"))),
            }
            let parsed = parse_response_head(&self.proxy_in, &limits, true)
                .map_err(|e| NetError::Protocol(format!("proxy: {e}")))?;
            if let Some((head, used)) = parsed {
                if !(200..300).contains(&head.status) {
                    return Err(NetError::Connect(format!(
                        "proxy answered {} to CONNECT",
                        head.status
                    )));
                }
                if used != self.proxy_in.len() {
                    return Err(NetError::Protocol("proxy sent data before TLS".into()));
                }
                self.proxy_in = Vec::new();
                self.stage = Stage::Handshake;
                return Ok(());
            }
        }
    }

    fn handshake(&mut self, stats: &mut Stats) -> Result<(), NetError> {
        loop {
            self.flush(stats)?;
            if !self.tls.is_handshaking() {
                stats.handshakes += 1;
                self.stage = Stage::Open;
                return Ok(());
            }
            if !self.read_tls(stats).map_err(|e| match e {
                NetError::Closed => NetError::Tls("connection closed during the handshake".into()),
                e => e,
            })? {
                return Ok(());
            }
        }
    }

    /// Pull one read of ciphertext from the socket into rustls and process it. False when the
    /// socket had nothing. Socket EOF is remembered (see [`TlsConn::read`]).
    fn read_tls(&mut self, stats: &mut Stats) -> Result<bool, NetError> {
        let Some(sock) = self.sock.as_mut() else {
            return Err(NetError::Closed);
        };
        let mut io = Counted { sock, stats };
        let got = loop {
            match self.tls.read_tls(&mut io) {
                Ok(0) => {
                    self.eof = true;
                    break false;
                }
                Ok(_) => break true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(NetError::Io(e.to_string())),
            }
        };
        if let Err(e) = self.tls.process_new_packets() {
            // Tell the peer why (the alert), then give up.
            let _ = self.flush(stats);
            return Err(NetError::Tls(e.to_string()));
        }
        if !got && self.stage != Stage::Open {
            return Err(NetError::Closed);
        }
        Ok(got)
    }

    /// Queue plaintext; returns how much rustls took (it buffers a bounded amount).
    pub fn write(&mut self, data: &[u8], stats: &mut Stats) -> Result<usize, NetError> {
        let n = self
            .tls
            .writer()
            .write(data)
            .map_err(|e| NetError::Io(e.to_string()))?;
        self.flush(stats)?;
        Ok(n)
    }

    /// Send buffered ciphertext until the socket would block.
    pub fn flush(&mut self, stats: &mut Stats) -> Result<(), NetError> {
        let Some(sock) = self.sock.as_mut() else {
            return Err(NetError::Closed);
        };
        let mut io = Counted { sock, stats };
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut io) {
                Ok(0) => return Err(NetError::Closed),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(NetError::Io(e.to_string())),
            }
        }
        Ok(())
    }

    /// Read plaintext: what rustls holds, else socket reads until a record is complete.
    /// `Data(0)` means "progress, call again": a bound on socket reads per call was reached.
    pub fn read(&mut self, buf: &mut [u8], stats: &mut Stats) -> Result<Got, NetError> {
        for _ in 0..MAX_SOCKET_READS {
            match self.tls.reader().read(buf) {
                Ok(0) => return Ok(Got::Eof),
                Ok(n) => return Ok(Got::Data(n)),
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(Got::Eof),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(NetError::Io(e.to_string())),
            }
            if self.eof {
                return Ok(Got::Eof);
            }
            if !self.read_tls(stats)? && !self.eof {
                return Ok(Got::WouldBlock);
            }
        }
        Ok(Got::Data(0))
    }

    fn drop_socket(&mut self, registry: &Registry) {
        if let Some(mut sock) = self.sock.take() {
            let _ = registry.deregister(&mut sock);
        }
    }

    /// Deregister and drop everything (no close_notify: the socket may not be writable).
    pub fn close(&mut self, registry: &Registry) {
        if let Some(r) = self.resolver.as_mut() {
            r.close(registry);
        }
        self.resolver = None;
        self.drop_socket(registry);
        self.stage = Stage::Closed;
    }
}

/// The socket, counting bytes both ways into the stats.
struct Counted<'a> {
    sock: &'a mut TcpStream,
    stats: &'a mut Stats,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.sock.read(buf)?;
        self.stats.bytes_in += n as u64;
        Ok(n)
    }
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.sock.write(buf)?;
        self.stats.bytes_out += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}
