//! One client connection of an HTTP listener: reads requests, feeds bodies to their sinks,
//! writes answers in order. Pipelined requests are answered one after the other; while an
//! answer is still being written no further request is started and no more is read, so a
//! client that sends but does not read cannot grow our buffers.
//!
//! One call of [`Conn::drive`] is one turn: it answers at most [`TURN_REQUESTS`] request and
//! moves at most [`TURN_BYTES`] bytes, then hands the loop back ([`Status::Yield`]) so the
//! other connections are served before this one continues. Without that bound a client on
//! another core that sends its next request as soon as it reads an answer kept the loop on
//! its connection for hundreds of requests while every other client waited.
//!
//! Error answers that leave the stream untrustworthy close the connection, but only after a
//! "lingering close": our side stops writing, and what the client still sends is read and
//! dropped (bounded in bytes and time) so its kernel does not reset the connection and destroy
//! the answer before the client reads it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use super::admission::{CallerKey, Phase, Who};
use super::stream::Stream;

use crate::api::{Api, Caller, MAX_IGNORED_BODY, Plan, Route, Sink};
use crate::http::{
    Body, BodyDecoder, BodyFraming, Limits, RequestHead, Response, Version, parse_request_head,
};

/// Bytes buffered from the socket before they are parsed or passed to a body sink.
const READ_CAP: usize = 64 * 1024;
/// Pending answer bytes above which no further pipelined request is started.
const WRITE_BACKLOG: usize = 64 * 1024;
/// Piece size when streaming a file body.
const FILE_PIECE: usize = 32 * 1024;
/// After a closing error answer: how much more input to read and drop, and for how long.
const LINGER_BYTES: u64 = 64 * 1024 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(2);
/// Requests one turn of a connection may start.
pub const TURN_REQUESTS: u32 = 1;
/// Bytes one turn of a connection may read or write (a body upload, a streamed file).
pub const TURN_BYTES: usize = 256 * 1024;

/// Time limits a connection lives by (from the config).
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Between requests on a kept-alive connection.
    pub idle: Duration,
    /// For a request to make progress (head bytes, body bytes, or the answer being read).
    pub request: Duration,
    /// For a request head to arrive whole, from its first byte; on the v1 listener also for
    /// a new connection to present the API key.
    pub head: Duration,
    /// Least body bytes per second, averaged over [`BODY_WINDOW`] (0: no minimum).
    pub body_min_rate: u64,
}

/// The window over which a body's rate is checked against [`Timeouts::body_min_rate`].
pub const BODY_WINDOW: Duration = Duration::from_secs(10);

enum ReadState {
    /// Waiting for (more of) a request head.
    Head,
    /// Receiving a body (boxed: it is large, and only a connection mid-request has one).
    Body(Box<Receiving>),
    /// No more requests on this connection.
    Done,
}

/// A request whose body is arriving. `ready` is an answer decided before the body, which is
/// then only drained.
struct Receiving {
    version: Version,
    keep_alive: bool,
    route: Option<Route>,
    ready: Option<Response>,
    sink: Sink,
    decoder: BodyDecoder,
}

pub struct Conn {
    pub stream: Stream,
    pub caller: Caller,
    /// Whom admission counts this connection against (v1: changes once the key is shown).
    pub who: Who,
    accepted: Instant,
    /// First byte of the request head now arriving.
    head_started: Option<Instant>,
    /// The arriving head was counted against its caller's cap on heads in flight.
    pub head_admitted: bool,
    /// Bytes read while receiving bodies, and where the current rate window began.
    body_read: u64,
    body_window: Option<(Instant, u64)>,
    inbuf: Vec<u8>,
    state: ReadState,
    out: Vec<u8>,
    out_pos: usize,
    streaming: Option<(File, bool)>,
    read_eof: bool,
    /// Close once `out` and `streaming` are empty.
    close_after_flush: bool,
    /// Lingering close in progress: (bytes dropped so far, give up at).
    linger: Option<(u64, Instant)>,
    pub last_activity: Instant,
    /// The deadline currently in the reactor's heap for this connection, if any.
    pub scheduled: Option<Instant>,
    /// Requests started and bytes moved in the current turn.
    turn_requests: u32,
    turn_bytes: usize,
    /// The last read filled its buffer: the socket may hold more than was reported.
    read_full: bool,
}

/// What the reactor should do with a connection after driving it.
#[derive(Debug, PartialEq, Eq)]
pub enum Status {
    Open,
    Close,
    /// Its turn is used up with work maybe left: drive it again once the others had theirs
    /// (the readiness that brought the work may not be reported again).
    Yield,
}

impl Conn {
    pub fn new(stream: Stream, caller: Caller, who: Who, now: Instant) -> Conn {
        Conn {
            stream,
            caller,
            who,
            accepted: now,
            head_started: None,
            head_admitted: false,
            body_read: 0,
            body_window: None,
            inbuf: Vec::new(),
            state: ReadState::Head,
            out: Vec::new(),
            out_pos: 0,
            streaming: None,
            read_eof: false,
            close_after_flush: false,
            linger: None,
            last_activity: now,
            scheduled: None,
            turn_requests: 0,
            turn_bytes: 0,
            read_full: false,
        }
    }

    /// The turn's bytes are used, or its request is answered and the next would be new.
    fn turn_over(&self) -> bool {
        self.turn_bytes >= TURN_BYTES
            || (self.turn_requests >= TURN_REQUESTS && matches!(self.state, ReadState::Head))
    }

    /// Work the kernel will not announce again: bytes already read but not parsed, an
    /// answer not fully written, or a socket read that stopped at the buffer's size.
    /// (Anything arriving later is a new readiness: mio is edge-triggered.)
    fn work_left(&self) -> bool {
        !self.inbuf.is_empty()
            || self.out_pending() > 0
            || self.streaming.is_some()
            || self.read_full
    }

    fn out_pending(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// What the connection is doing, for admission and eviction.
    pub fn phase(&self) -> Phase {
        if self.out_pending() > 0 || self.streaming.is_some() {
            return Phase::Busy;
        }
        match (&self.state, self.head_started) {
            (ReadState::Body(_), _) => Phase::Busy,
            (ReadState::Head, Some(t)) => Phase::Head(t),
            (ReadState::Head, None) | (ReadState::Done, _) => Phase::Idle(self.last_activity),
        }
    }

    /// A v1 client that has not shown the API key yet (it must within the head timeout).
    fn unkeyed_v1(&self) -> bool {
        self.caller.v1 && self.who.key != CallerKey::Keyed
    }

    /// When this connection must be looked at again if nothing happens.
    pub fn deadline(&self, t: &Timeouts) -> Instant {
        if let Some((_, until)) = self.linger {
            return until;
        }
        let due = match self.phase() {
            Phase::Idle(_) => self.last_activity + t.idle,
            Phase::Head(started) => (self.last_activity + t.request).min(started + t.head),
            Phase::Busy => match self.body_window {
                Some((since, _)) if t.body_min_rate > 0 => {
                    (self.last_activity + t.request).min(since + BODY_WINDOW)
                }
                _ => self.last_activity + t.request,
            },
        };
        if self.unkeyed_v1() {
            due.min(self.accepted + t.head)
        } else {
            due
        }
    }

    /// At the end of a body rate window: true (and a new window) when the body kept up.
    fn body_kept_up(&mut self, now: Instant, t: &Timeouts) -> bool {
        let Some((since, at)) = self.body_window else {
            return true;
        };
        if t.body_min_rate == 0 || now < since + BODY_WINDOW {
            return true;
        }
        let want = t.body_min_rate.saturating_mul(BODY_WINDOW.as_secs());
        if self.body_read - at < want {
            return false;
        }
        self.body_window = Some((now, self.body_read));
        true
    }

    /// The deadline passed: give up on the connection, answering 408 where a request was
    /// half-received and the answer can still be delivered.
    pub fn on_timeout(&mut self, now: Instant, t: &Timeouts) -> Status {
        if self.linger.is_none()
            && matches!(self.state, ReadState::Body(_))
            && now < self.last_activity + t.request
            && !(self.unkeyed_v1() && now >= self.accepted + t.head)
            && self.body_kept_up(now, t)
        {
            return Status::Open;
        }
        if now < self.deadline(t) {
            return Status::Open;
        }
        let mid_request = match self.state {
            ReadState::Body(_) => true,
            ReadState::Head => !self.inbuf.is_empty(),
            ReadState::Done => false,
        };
        if mid_request
            && self.out_pending() == 0
            && self.streaming.is_none()
            && self.linger.is_none()
        {
            log::info!("ctrl: request timed out ({})", self.who.key);
            self.state = ReadState::Done;
            self.queue(
                Response::error(408, "Request timeout").closing(),
                Version::Http11,
                false,
            );
            self.last_activity = now;
            return self.drive_io(None, &Limits::default(), now);
        }
        Status::Close
    }

    /// Do all the work possible now: write, parse, hand bodies over, read. Never blocks.
    pub fn drive(&mut self, api: &mut Api, limits: &Limits, now: Instant) -> Status {
        self.drive_io(Some(api), limits, now)
    }

    fn drive_io(&mut self, mut api: Option<&mut Api>, limits: &Limits, now: Instant) -> Status {
        self.turn_requests = 0;
        self.turn_bytes = 0;
        loop {
            let mut progress = match self.flush(now) {
                Ok(p) => p,
                Err(_) => return Status::Close,
            };
            if self.turn_over() {
                // Done what the turn allows; what is left after the other connections. The
                // head and body clocks follow what this turn did, as at the end of any drive.
                self.track(now);
                return match self.status() {
                    Status::Open if self.work_left() => Status::Yield,
                    other => other,
                };
            }
            if let Some(api) = api.as_deref_mut() {
                while self.process(api, limits) {
                    progress = true;
                }
            }
            if self.wants_read() && !self.turn_over() {
                match self.read_some(now) {
                    Ok(p) => progress |= p,
                    Err(_) => return Status::Close,
                }
            }
            if !progress {
                break;
            }
        }
        self.track(now);
        self.status()
    }

    /// Note when a head starts arriving and when a body's rate window starts.
    fn track(&mut self, now: Instant) {
        let arriving = matches!(self.state, ReadState::Head) && !self.inbuf.is_empty();
        if !arriving {
            self.head_started = None;
            self.head_admitted = false;
        } else if self.head_started.is_none() {
            self.head_started = Some(now);
        }
        match (&self.state, self.body_window) {
            (ReadState::Body(_), None) => self.body_window = Some((now, self.body_read)),
            (ReadState::Body(_), Some(_)) => {}
            (ReadState::Head | ReadState::Done, _) => self.body_window = None,
        }
    }

    /// Refuse the head now arriving: the caller has too many on other connections.
    pub fn refuse_head(&mut self, now: Instant) -> Status {
        self.inbuf.clear();
        self.queue(
            Response::error(503, "Too many requests in progress from this caller")
                .closing()
                .with_header("Retry-After", "1"),
            Version::Http11,
            false,
        );
        self.drive_io(None, &Limits::default(), now)
    }

    fn status(&mut self) -> Status {
        let flushed = self.out_pending() == 0 && self.streaming.is_none();
        if !flushed {
            return Status::Open;
        }
        if self.close_after_flush {
            if self.linger.is_some() && !self.read_eof {
                // Answer delivered; tell the client we are done and wait for its EOF.
                let _ = self.stream.shutdown(Shutdown::Write);
                return Status::Open;
            }
            return Status::Close;
        }
        // The client half-closed and every answer is out: nothing more can come.
        if self.read_eof && matches!(self.state, ReadState::Head | ReadState::Done) {
            return Status::Close;
        }
        Status::Open
    }

    fn wants_read(&self) -> bool {
        if self.read_eof {
            return false;
        }
        if self.linger.is_some() {
            return true;
        }
        if matches!(self.state, ReadState::Done) {
            return false;
        }
        self.inbuf.len() < READ_CAP
            && self.out_pending() < WRITE_BACKLOG
            && self.streaming.is_none()
    }

    fn read_some(&mut self, now: Instant) -> io::Result<bool> {
        let mut buf = [0u8; 64 * 1024];
        let room = if self.linger.is_some() {
            buf.len()
        } else {
            (READ_CAP - self.inbuf.len()).min(buf.len())
        };
        self.read_full = false;
        match self.stream.read(&mut buf[..room]) {
            Ok(0) => {
                self.read_eof = true;
                Ok(true)
            }
            Ok(n) => {
                self.last_activity = now;
                self.turn_bytes += n;
                self.read_full = n == room;
                if let Some((dropped, until)) = self.linger.as_mut() {
                    *dropped += n as u64;
                    if *dropped > LINGER_BYTES {
                        *until = now;
                    }
                } else {
                    if matches!(self.state, ReadState::Body(_)) {
                        self.body_read += n as u64;
                    }
                    self.inbuf.extend_from_slice(&buf[..n]);
                }
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Write what is pending; refill from a streamed file. Ok(true) when bytes moved.
    fn flush(&mut self, now: Instant) -> io::Result<bool> {
        let mut progress = false;
        loop {
            if self.out_pending() == 0 {
                self.out.clear();
                self.out_pos = 0;
                if self.out.capacity() > 4 * FILE_PIECE {
                    self.out.shrink_to(FILE_PIECE);
                }
                if !self.refill_from_file()? {
                    return Ok(progress);
                }
            }
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.out_pos += n;
                    self.last_activity = now;
                    self.turn_bytes += n;
                    progress = true;
                    if self.turn_bytes >= TURN_BYTES {
                        return Ok(progress);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(progress),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Put the next piece of a streamed file into `out` (which is empty: refills happen only
    /// once everything before was written). Ok(false) when there is none.
    fn refill_from_file(&mut self) -> io::Result<bool> {
        let Some((file, chunked)) = self.streaming.as_mut() else {
            return Ok(false);
        };
        let chunked = *chunked;
        // Room for the chunk-size line in front, so the piece is read in place, not copied.
        const SIZE_LINE: usize = 10;
        self.out.resize(SIZE_LINE + FILE_PIECE, 0);
        let n = file.read(&mut self.out[SIZE_LINE..])?;
        self.out.truncate(SIZE_LINE + n);
        if n == 0 {
            self.out.clear();
            if chunked {
                self.out.extend_from_slice(b"0\r\n\r\n");
            }
            self.streaming = None;
            return Ok(chunked);
        }
        if chunked {
            let line = format!("{n:x}\r\n");
            let start = SIZE_LINE - line.len();
            self.out[start..SIZE_LINE].copy_from_slice(line.as_bytes());
            self.out.extend_from_slice(b"\r\n");
            self.out_pos = start;
        } else {
            self.out_pos = SIZE_LINE;
        }
        Ok(true)
    }

    fn queue(&mut self, resp: Response, version: Version, keep_alive: bool) {
        let (head, keep) = resp.head_bytes(version, keep_alive);
        if resp.close {
            self.linger = Some((0, Instant::now() + LINGER_TIME));
        }
        self.out.extend_from_slice(&head);
        match resp.body {
            _ if resp.head_only => {}
            Body::Empty => {}
            Body::Bytes(b) => self.out.extend_from_slice(&b),
            Body::File(f) => self.streaming = Some((f, version == Version::Http11)),
        }
        if !keep {
            self.close_after_flush = true;
            self.state = ReadState::Done;
        }
    }

    /// Advance request processing by one step. Returns true when something changed.
    fn process(&mut self, api: &mut Api, limits: &Limits) -> bool {
        match &mut self.state {
            ReadState::Done => {
                self.inbuf.clear();
                false
            }
            ReadState::Head => {
                if self.inbuf.is_empty()
                    || self.turn_requests >= TURN_REQUESTS
                    || self.out_pending() >= WRITE_BACKLOG
                    || self.streaming.is_some()
                {
                    return false;
                }
                match parse_request_head(&self.inbuf, limits) {
                    Ok(None) => {
                        if self.read_eof && !self.inbuf.is_empty() {
                            // The client hung up in the middle of a head: nothing to answer.
                            self.inbuf.clear();
                            self.state = ReadState::Done;
                            return true;
                        }
                        false
                    }
                    Err(e) => {
                        log::info!("ctrl: bad request: {e}");
                        self.queue(
                            Response::error(e.status(), &e.to_string()).closing(),
                            Version::Http11,
                            false,
                        );
                        true
                    }
                    Ok(Some((head, used))) => {
                        self.inbuf.drain(..used);
                        self.turn_requests += 1;
                        self.start_request(api, head, limits);
                        true
                    }
                }
            }
            ReadState::Body(_) => self.feed_body(api),
        }
    }

    fn start_request(&mut self, api: &mut Api, head: RequestHead, limits: &Limits) {
        log::debug!("ctrl: {} {}", head.method, head.target);
        if self.unkeyed_v1()
            && crate::api::v1::presented_key(&head)
                .is_some_and(|k| crate::api::v1::same_key(&k, &api.v1_key))
        {
            self.who = Who {
                key: CallerKey::Keyed,
                privileged: true,
            };
        }
        let decoder = BodyDecoder::new(head.framing, limits);
        match api.begin(&head, &self.caller) {
            Plan::Receive(route, sink) => {
                if head.expect_continue && head.has_body() {
                    self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                }
                self.state = ReadState::Body(Box::new(Receiving {
                    version: head.version,
                    keep_alive: head.keep_alive,
                    route: Some(route),
                    ready: None,
                    sink,
                    decoder,
                }));
            }
            Plan::Respond(resp) => {
                let resp = if head.method == "HEAD" {
                    resp.for_head()
                } else {
                    resp
                };
                let small =
                    matches!(head.framing, BodyFraming::Length(n) if n <= MAX_IGNORED_BODY as u64);
                if !head.has_body() || (small && !head.expect_continue && !resp.close) {
                    // Drain the (small or empty) body, then answer on a kept-alive connection.
                    self.state = ReadState::Body(Box::new(Receiving {
                        version: head.version,
                        keep_alive: head.keep_alive,
                        route: None,
                        ready: Some(resp),
                        sink: Sink::Discard,
                        decoder,
                    }));
                } else {
                    self.queue(resp.closing(), head.version, false);
                }
            }
        }
    }

    /// Pass buffered body bytes to the sink; answer when the body is complete.
    fn feed_body(&mut self, api: &mut Api) -> bool {
        let ReadState::Body(rx) = &mut self.state else {
            return false;
        };
        let Receiving { decoder, sink, .. } = rx.as_mut();
        let mut pos = 0;
        let mut failure = None;
        while !decoder.is_done() {
            match decoder.decode(&self.inbuf[pos..]) {
                Ok(step) => {
                    let data = &self.inbuf[pos + step.data.start..pos + step.data.end];
                    if !data.is_empty()
                        && let Err(e) = sink.write(data)
                    {
                        failure = Some(api.body_failed(e));
                        break;
                    }
                    pos += step.consumed;
                    if step.consumed == 0 {
                        break;
                    }
                }
                Err(e) => {
                    log::info!("ctrl: bad body: {e}");
                    failure = Some(Response::error(e.status(), &e.to_string()).closing());
                    break;
                }
            }
        }
        let done = decoder.is_done();
        self.inbuf.drain(..pos);
        if let Some(resp) = failure {
            self.queue(resp, Version::Http11, false);
            return true;
        }
        if !done {
            if self.read_eof {
                // The client hung up before the body was complete: drop the request.
                log::info!("ctrl: client closed in the middle of a body");
                self.state = ReadState::Done;
                return true;
            }
            return pos > 0;
        }
        let ReadState::Body(rx) = std::mem::replace(&mut self.state, ReadState::Head) else {
            return false;
        };
        let Receiving {
            version,
            keep_alive,
            route,
            ready,
            sink,
            ..
        } = *rx;
        let resp = match (ready, route) {
            (Some(resp), _) => resp,
            (None, Some(route)) => api.complete(route, sink, &self.caller),
            (None, None) => Response::error(500, "Internal Error"),
        };
        self.queue(resp, version, keep_alive);
        if self.inbuf.capacity() > 2 * READ_CAP {
            self.inbuf.shrink_to(READ_CAP);
        }
        true
    }
}
