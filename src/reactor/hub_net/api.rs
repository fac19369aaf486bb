//! The API lane: a FIFO of calls served one at a time on one kept-alive TLS connection.
//!
//! Owns that connection, the call in flight and the queue behind it. It must never run two
//! requests at once on the connection, never keep a connection whose byte stream is in doubt
//! (any error, a cancelled half-exchange, a reply that is not keep-alive), and retries a call
//! only once and only when a reused connection failed before any response byte arrived.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::time::Instant;

use log::debug;
use mio::{Registry, Token};

use super::exchange::{Pumped, pump_reply, push_request};
use super::stream::{Dial, Got, TlsConn};
use super::{CallId, Completion, NetError, Queue, Reply, Request, Stats, TransportConfig};
use super::{blob::host_header, reply_headers};
use crate::http::{BodyMode, Limits, ResponseReader, encode_request};

/// Passes through the lane per `drive` (each pass finishes or starts at most one call).
const PASSES: usize = 4;
/// Reads of an idle connection per `drive` (only TLS housekeeping records may arrive).
const IDLE_ROUNDS: usize = 8;
/// A file body is read and sent in slices of this size…
const FILE_SLICE: usize = 16 * 1024;
/// …and at most this much of it per `drive`.
const FILE_BUDGET: usize = 256 * 1024;

struct Call {
    id: CallId,
    wire: Vec<u8>,
    sent: usize,
    /// A file body: the file, the bytes of it still to send, and the slice being sent.
    file: Option<(File, u64)>,
    file_len: u64,
    slice: Vec<u8>,
    slice_sent: usize,
    reader: ResponseReader,
    head_request: bool,
    max_body: usize,
    last_progress: Instant,
    retried: bool,
    counted: bool,
}

impl Call {
    fn new(
        id: CallId,
        req: &Request,
        cfg: &TransportConfig,
        now: Instant,
    ) -> Result<Call, NetError> {
        let file = match &req.body_file {
            Some(path) => {
                let f = File::open(path)
                    .map_err(|e| NetError::Io(format!("{}: {e}", path.display())))?;
                let len = f.metadata().map_err(|e| NetError::Io(e.to_string()))?.len();
                Some((f, len))
            }
            None => None,
        };
        let mut headers = vec![("User-Agent".to_string(), cfg.user_agent.clone())];
        if let Some((_, len)) = &file {
            headers.push(("Content-Length".into(), len.to_string()));
        }
        let has_type = req
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
        if !req.body.is_empty() && !has_type {
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        headers.extend(req.headers.iter().cloned());
        let method = req.method.to_ascii_uppercase();
        let body = (file.is_none()
            && (!req.body.is_empty() || matches!(method.as_str(), "POST" | "PUT" | "PATCH")))
        .then_some(req.body.as_slice());
        let wire = encode_request(
            &method,
            &host_header(&cfg.host, cfg.port),
            &req.path,
            &headers,
            body,
        );
        let head_request = method == "HEAD";
        let file_len = file.as_ref().map_or(0, |(_, n)| *n);
        Ok(Call {
            id,
            wire,
            sent: 0,
            file,
            file_len,
            slice: Vec::new(),
            slice_sent: 0,
            reader: ResponseReader::new(
                Limits::default(),
                head_request,
                BodyMode::Buffer { max: cfg.max_body },
            ),
            head_request,
            max_body: cfg.max_body,
            last_progress: now,
            retried: false,
            counted: false,
        })
    }

    /// Every byte of the request went out.
    fn all_sent(&self) -> bool {
        self.sent == self.wire.len()
            && self.file.as_ref().is_none_or(|(_, left)| *left == 0)
            && self.slice_sent == self.slice.len()
    }

    /// Push the file body in slices while the connection takes it, at most
    /// `FILE_BUDGET` bytes per call so one upload cannot hold the loop. Returns (wrote
    /// something, stopped by the budget with more to send).
    fn push_file(
        &mut self,
        conn: &mut TlsConn,
        stats: &mut Stats,
    ) -> Result<(bool, bool), NetError> {
        let mut wrote = false;
        let mut budget = FILE_BUDGET;
        loop {
            if self.slice_sent == self.slice.len() {
                let Some((f, left)) = self.file.as_mut() else {
                    return Ok((wrote, false));
                };
                if *left == 0 {
                    return Ok((wrote, false));
                }
                if budget == 0 {
                    return Ok((wrote, true));
                }
                let n = usize::try_from((*left).min(FILE_SLICE as u64)).unwrap_or(FILE_SLICE);
                self.slice.resize(n, 0);
                f.read_exact(&mut self.slice)
                    .map_err(|e| NetError::Io(format!("upload body: {e}")))?;
                *left -= n as u64;
                self.slice_sent = 0;
                budget = budget.saturating_sub(n);
            }
            let before = self.slice_sent;
            push_request(conn, &self.slice, &mut self.slice_sent, stats)?;
            if self.slice_sent == before {
                return Ok((wrote, false));
            }
            wrote = true;
        }
    }

    /// Start over (for the one transparent retry).
    fn restart(&mut self, now: Instant) {
        self.sent = 0;
        self.slice.clear();
        self.slice_sent = 0;
        if let Some((f, left)) = self.file.as_mut() {
            // A failed rewind leaves `left` short: the server then sees a cut body and fails it.
            if f.seek(SeekFrom::Start(0)).is_ok() {
                *left = self.file_len;
            }
        }
        self.reader = ResponseReader::new(
            Limits::default(),
            self.head_request,
            BodyMode::Buffer { max: self.max_body },
        );
        self.last_progress = now;
        self.retried = true;
        self.counted = false;
    }
}

enum Step {
    Waiting,
    Budget,
    Finished { reply: Reply, reusable: bool },
}

#[derive(Default)]
pub struct ApiLane {
    pub queue: Queue,
    conn: Option<TlsConn>,
    /// Replies completed on the current connection.
    served: u64,
    idle_since: Option<Instant>,
    current: Option<Call>,
    /// Work is left over (read budget, a cancelled call's successor): due at once.
    more: bool,
}

impl ApiLane {
    #[allow(clippy::too_many_arguments)]
    pub fn drive(
        &mut self,
        registry: &Registry,
        token: Token,
        dial: &Dial<'_>,
        cfg: &TransportConfig,
        now: Instant,
        stats: &mut Stats,
        out: &mut Vec<Completion>,
    ) {
        self.more = false;
        for _ in 0..PASSES {
            if self.current.is_none() {
                match self.queue.pop_front() {
                    Some((id, req)) => match Call::new(id, &req, cfg, now) {
                        Ok(call) => self.current = Some(call),
                        Err(e) => {
                            out.push(Completion::Reply { id, result: Err(e) });
                            continue;
                        }
                    },
                    None => return self.drive_idle(registry, cfg, now, stats),
                }
            }
            if self.conn.is_none() {
                let deadline = now + cfg.connect_timeout;
                match TlsConn::open(registry, token, dial, &cfg.host, cfg.port, deadline, now) {
                    Ok(c) => {
                        self.conn = Some(c);
                        self.served = 0;
                    }
                    Err(e) => {
                        self.fail(out, e);
                        continue;
                    }
                }
            }
            match self.step(registry, cfg, now, stats) {
                Ok(Step::Waiting) => return,
                Ok(Step::Budget) => {
                    self.more = true;
                    return;
                }
                Ok(Step::Finished { reply, reusable }) => {
                    if let Some(call) = self.current.take() {
                        out.push(Completion::Reply {
                            id: call.id,
                            result: Ok(reply),
                        });
                    }
                    self.served += 1;
                    self.idle_since = Some(now);
                    if !reusable {
                        self.close(registry);
                    }
                }
                Err(e) => {
                    let reused = self.served > 0;
                    self.close(registry);
                    let retry = e != NetError::Timeout
                        && self
                            .current
                            .as_ref()
                            .is_some_and(|c| reused && !c.retried && c.reader.bytes_seen() == 0);
                    match self.current.as_mut() {
                        Some(call) if retry => {
                            debug!("hub: kept-alive connection failed ({e}); retrying once");
                            call.restart(now);
                        }
                        _ => self.fail(out, e),
                    }
                }
            }
        }
        self.more = true;
    }

    fn fail(&mut self, out: &mut Vec<Completion>, e: NetError) {
        if let Some(call) = self.current.take() {
            out.push(Completion::Reply {
                id: call.id,
                result: Err(e),
            });
        }
    }

    fn step(
        &mut self,
        registry: &Registry,
        cfg: &TransportConfig,
        now: Instant,
        stats: &mut Stats,
    ) -> Result<Step, NetError> {
        let (Some(conn), Some(call)) = (self.conn.as_mut(), self.current.as_mut()) else {
            return Ok(Step::Waiting);
        };
        let was_open = conn.is_open();
        conn.advance(registry, now, stats)?;
        if !conn.is_open() {
            return Ok(Step::Waiting);
        }
        if !was_open {
            call.last_progress = now;
        }
        let mut wrote = push_request(conn, &call.wire, &mut call.sent, stats)?;
        let mut file_budget_spent = false;
        if call.sent == call.wire.len() {
            let (w, more) = call.push_file(conn, stats)?;
            wrote |= w;
            file_budget_spent = more;
        }
        if call.all_sent() && !call.counted {
            call.counted = true;
            stats.requests += 1;
        }
        let mut got = false;
        let pumped = pump_reply(conn, &mut call.reader, stats, &mut got, |_, _, _| Ok(()))?;
        if wrote || got {
            call.last_progress = now;
        }
        match pumped {
            Pumped::Done { reusable } => {
                let Some(head) = call.reader.head() else {
                    return Err(NetError::Protocol("reply without a head".into()));
                };
                let reusable = reusable && head.keep_alive && call.all_sent();
                let reply = Reply {
                    status: head.status,
                    headers: reply_headers(head),
                    body: call.reader.take_body(),
                };
                Ok(Step::Finished { reply, reusable })
            }
            Pumped::Budget => Ok(Step::Budget),
            // More of a file body to send and the socket still takes it: come back soon.
            Pumped::Blocked if file_budget_spent => {
                call.last_progress = now;
                Ok(Step::Budget)
            }
            Pumped::Blocked if now >= call.last_progress + cfg.request_timeout => {
                Err(NetError::Timeout)
            }
            Pumped::Blocked => Ok(Step::Waiting),
        }
    }

    /// No call in flight: notice the server closing, and close after the idle time.
    fn drive_idle(
        &mut self,
        registry: &Registry,
        cfg: &TransportConfig,
        now: Instant,
        stats: &mut Stats,
    ) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let idle_over = self
            .idle_since
            .is_none_or(|since| now >= since + cfg.idle_close);
        let mut keep = conn.is_open() && !idle_over;
        let mut buf = [0u8; 512];
        let mut rounds = 0;
        while keep {
            rounds += 1;
            match conn.read(&mut buf, stats) {
                Ok(Got::WouldBlock) => break,
                // Records without application data (session tickets): bounded, then yield.
                Ok(Got::Data(0)) if rounds >= IDLE_ROUNDS => {
                    self.more = true;
                    break;
                }
                Ok(Got::Data(0)) => {}
                // Bytes nobody asked for, a close, an error: the connection is done.
                Ok(Got::Data(_) | Got::Eof) | Err(_) => keep = false,
            }
        }
        if !keep {
            self.close(registry);
        }
    }

    fn close(&mut self, registry: &Registry) {
        if let Some(mut conn) = self.conn.take() {
            conn.close(registry);
        }
        self.served = 0;
        self.idle_since = None;
    }

    pub fn cancel(&mut self, registry: &Registry, id: CallId) {
        self.queue.retain(|(i, _)| *i != id);
        if self.current.as_ref().is_some_and(|c| c.id == id) {
            if let Some(call) = self.current.take()
                && (call.sent > 0 || call.reader.bytes_seen() > 0)
            {
                self.close(registry);
            }
            self.more = true;
        }
    }

    pub fn reset(&mut self, registry: &Registry) {
        self.close(registry);
        self.current = None;
        self.queue.clear();
        self.more = false;
    }

    pub fn deadline(&self, cfg: &TransportConfig, now: Option<Instant>) -> Option<Instant> {
        if self.more {
            return now;
        }
        match (&self.conn, &self.current) {
            (Some(c), Some(call)) if c.is_open() => Some(call.last_progress + cfg.request_timeout),
            (Some(c), Some(_)) => c.deadline(),
            // Open but never used (its call was cancelled): close it at once.
            (Some(c), None) if c.is_open() => {
                self.idle_since.map_or(now, |s| Some(s + cfg.idle_close))
            }
            (Some(_), None) => now,
            (None, Some(_)) => now,
            (None, None) if !self.queue.is_empty() => now,
            (None, None) => None,
        }
    }
}
