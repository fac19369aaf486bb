//! Log push as a pure machine: which log file to read next and from where, when a batch is
//! ready for the API lane, what the hub's answer means (advance, drop a line, back off), and
//! when each file's cursor moves.
//!
//! It never reads a file, a clock or the network: the reactor scans the log tree and reads
//! slices when asked ([`HubAction::ScanLogs`], [`HubAction::ReadLog`]) and feeds the results
//! back; the hub client hands its batches to the API lane after every other call.
//!
//! A cursor names a file by identity (inode and birth time), not by name, so it follows the
//! file when `console.log` is renamed to `console.log.1`: the rotated file is finished from
//! the cursor, then the new `console.log` is read from 0.
//!
//! A cursor moves only after the hub acknowledged the lines before it. It is written durably
//! at once, except while a backlog drains: then at most once a second ([`SAVE_EVERY`]), and as
//! soon as the drain stops or the hub fails. Two fsyncs per 200-line batch would stall the
//! loop (and the control socket) for milliseconds hundreds of times a drain; once a second
//! they do not. A kill -9 between the hub's 200 and the cursor write sends what was
//! acknowledged since the last write (that batch, or the last second's batches while
//! draining) once more on the next start: at-least-once, each line at most twice. The hub's
//! log API has no idempotency key and reading back what it stored would cost a request per
//! batch, so a rare duplicate is the price of never losing a line.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::HubAction;
use super::backoff::Backoff;
use super::log_batch::{self, MAX_BODY, MAX_LINES, Origin};

/// Read at most this much of a file per turn (one batch is at most as big).
pub const READ_SLICE: u64 = MAX_BODY as u64;
/// How often the log tree is looked at for new lines (stat calls only; no request goes out
/// unless a file grew).
pub const SCAN_EVERY: Duration = Duration::from_secs(2);
/// While a backlog drains, cursors are written at most this often.
pub const SAVE_EVERY: Duration = Duration::from_secs(1);
/// A file that was not the one the scan saw is looked at again after this.
const RESCAN_AFTER_RACE: Duration = Duration::from_millis(100);
/// A last line without its newline goes out once its file has not changed for this long.
pub const TAIL_WAIT_SECS: u64 = 5;
/// Retry delays after the hub refused or failed a batch.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// One file as the scan saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStat {
    pub ino: u64,
    /// Birth time in nanoseconds (0 where the filesystem has none): with the inode, it tells
    /// a new file from an old one whose inode number was reused.
    pub born: u64,
    pub len: u64,
    /// Modification time (unix seconds, nanoseconds).
    pub mtime: (u64, u32),
}

/// One log: its live file and the generation rotated away from it (`<live>.1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogStream {
    /// The live file's path under `logs/` (the cursor's key).
    pub path: String,
    pub origin: Origin,
    pub live: Option<FileStat>,
    pub rotated: Option<FileStat>,
}

/// How far a file was acknowledged by the hub; the storage keeps it.
pub use crate::store::log_cursor::Cursor;

/// The cursor names this file (same inode and birth time).
fn names(c: &Cursor, f: &FileStat) -> bool {
    c.ino == f.ino && c.born == f.born
}

/// Which file of a stream to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    Live,
    Rotated,
}

/// Read `max` bytes from `offset` of that file, if it still is the file with `ino`/`born`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadReq {
    pub path: String,
    pub which: Which,
    pub ino: u64,
    pub born: u64,
    pub offset: u64,
    pub max: u64,
}

/// What a read found. `bytes` is empty when the file was no longer the one asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slice {
    pub bytes: Vec<u8>,
    /// The slice reaches the end of the file.
    pub eof: bool,
    pub mtime: (u64, u32),
}

/// Where the next read stands.
fn plan(s: &LogStream, cursor: Option<Cursor>) -> Option<(Which, FileStat, u64)> {
    let pending = |which, f: FileStat, off: u64| (f.len > off).then_some((which, f, off));
    match (cursor, s.rotated, s.live) {
        // A live file shorter than its cursor was truncated: all of it is new.
        (Some(c), _, Some(l)) if names(&c, &l) => {
            pending(Which::Live, l, if c.offset > l.len { 0 } else { c.offset })
        }
        // The rotated file: finish it, then the live one from its start.
        (Some(c), Some(r), live) if names(&c, &r) => pending(Which::Rotated, r, c.offset)
            .or_else(|| live.and_then(|l| pending(Which::Live, l, 0))),
        // No cursor yet, or its file is gone (rotated out twice): everything still on disk.
        (_, r, l) => r
            .and_then(|r| pending(Which::Rotated, r, 0))
            .or_else(|| l.and_then(|l| pending(Which::Live, l, 0))),
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Phase {
    /// Nothing to do until `scan_at`.
    Rest,
    Scanning,
    Reading {
        stream: usize,
        file: FileStat,
        offset: u64,
        rotated: bool,
    },
    /// A body waits for the API lane; the cursor it leads to once acknowledged.
    Ready {
        body: Vec<u8>,
        path: String,
        after: Cursor,
        lines: usize,
    },
    Sending {
        path: String,
        after: Cursor,
        lines: usize,
    },
}

pub struct LogPush {
    cursors: BTreeMap<String, Cursor>,
    streams: Vec<LogStream>,
    phase: Phase,
    /// The next look at the log tree (`None` until enabled).
    scan_at: Option<Instant>,
    not_before: Option<Instant>,
    backoff: Backoff,
    /// Lines per batch: halved while the hub refuses batches (to find the bad line), doubled
    /// back after each success.
    line_limit: usize,
    /// Round robin: the stream after the last one read goes first, so one chatty container
    /// cannot hold the others back.
    next_stream: usize,
    /// Streams whose only unsent bytes are an unfinished last line, by (ino, len) then.
    waiting: BTreeMap<String, (u64, u64)>,
    /// Cursors moved since they were last written, and when that was.
    unsaved: BTreeSet<String>,
    saved_at: Option<Instant>,
}

impl LogPush {
    pub fn new(seed: u64) -> LogPush {
        LogPush {
            cursors: BTreeMap::new(),
            streams: Vec::new(),
            phase: Phase::Rest,
            scan_at: None,
            not_before: None,
            backoff: Backoff::new(BACKOFF_BASE, BACKOFF_CAP, seed),
            line_limit: MAX_LINES,
            next_stream: 0,
            waiting: BTreeMap::new(),
            unsaved: BTreeSet::new(),
            saved_at: None,
        }
    }

    /// Start pushing, from the cursors the storage holds.
    pub fn enable(&mut self, cursors: BTreeMap<String, Cursor>, now: Instant) {
        self.cursors = cursors;
        self.scan_at = Some(now);
    }

    pub fn cursors(&self) -> &BTreeMap<String, Cursor> {
        &self.cursors
    }

    /// Time to look at the log tree? (Called when the client may use the hub.)
    pub fn poll(&mut self, now: Instant, out: &mut Vec<HubAction>) {
        if self.phase == Phase::Rest && self.due(now) {
            self.phase = Phase::Scanning;
            out.push(HubAction::ScanLogs);
        }
    }

    fn due(&self, now: Instant) -> bool {
        self.scan_at.is_some_and(|t| t <= now) && self.not_before.is_none_or(|t| t <= now)
    }

    /// When the machine wants to be woken.
    pub fn next_wake(&self) -> Option<Instant> {
        let gate = self.not_before;
        match self.phase {
            Phase::Rest => self.scan_at.map(|s| gate.map_or(s, |g| g.max(s))),
            Phase::Ready { .. } => gate,
            _ => None,
        }
    }

    fn rest(&mut self, at: Instant) {
        self.phase = Phase::Rest;
        self.scan_at = Some(at);
    }

    /// The scan's result: pick the next file with unsent lines, or rest.
    pub fn scanned(
        &mut self,
        enabled: bool,
        streams: Vec<LogStream>,
        now: Instant,
        unix: u64,
        out: &mut Vec<HubAction>,
    ) {
        if self.phase != Phase::Scanning {
            return;
        }
        if !enabled {
            self.streams.clear();
            self.save(now, out);
            self.rest(now + SCAN_EVERY);
            return;
        }
        // Cursors of logs that are gone (a removed revision) go with them.
        let gone: Vec<String> = self
            .cursors
            .keys()
            .filter(|p| !streams.iter().any(|s| s.path == **p))
            .cloned()
            .collect();
        for log in gone {
            self.cursors.remove(&log);
            self.unsaved.remove(&log);
            out.push(HubAction::SaveLogCursor { log, cursor: None });
        }
        self.streams = streams;
        let n = self.streams.len();
        for k in 0..n {
            let i = (self.next_stream + k) % n.max(1);
            let s = &self.streams[i];
            let Some((which, file, offset)) = plan(s, self.cursors.get(&s.path).copied()) else {
                continue;
            };
            let stale = unix >= file.mtime.0.saturating_add(TAIL_WAIT_SECS);
            let rotated = which == Which::Rotated;
            if !rotated && !stale && self.waiting.get(&s.path) == Some(&(file.ino, file.len)) {
                continue;
            }
            out.push(HubAction::ReadLog(ReadReq {
                path: s.path.clone(),
                which,
                ino: file.ino,
                born: file.born,
                offset,
                max: READ_SLICE,
            }));
            self.next_stream = (i + 1) % n;
            self.phase = Phase::Reading {
                stream: i,
                file,
                offset,
                rotated,
            };
            return;
        }
        // Nothing left to send: the drain (if any) is over, its cursors go to disk now.
        self.save(now, out);
        self.rest(now + SCAN_EVERY);
    }

    /// A slice the reactor read: cut a batch from it.
    pub fn read(&mut self, slice: Slice, now: Instant, unix: u64) {
        let Phase::Reading {
            stream,
            file,
            offset,
            rotated,
        } = self.phase.clone()
        else {
            return;
        };
        let Some(s) = self.streams.get(stream) else {
            self.rest(now);
            return;
        };
        if slice.bytes.is_empty() {
            // The file changed under the scan (rotated meanwhile): look again soon, not in
            // this same turn (a file that keeps changing must not spin the loop).
            self.rest(now + RESCAN_AFTER_RACE);
            return;
        }
        let stale = unix >= slice.mtime.0.saturating_add(TAIL_WAIT_SECS);
        let origin = Origin {
            mtime: slice.mtime,
            ..s.origin.clone()
        };
        let flush = slice.eof && (rotated || stale);
        match log_batch::build(&slice.bytes, &origin, self.line_limit, MAX_BODY, flush) {
            Some(b) => {
                self.waiting.remove(&s.path);
                self.phase = Phase::Ready {
                    body: b.body,
                    path: s.path.clone(),
                    after: Cursor {
                        ino: file.ino,
                        born: file.born,
                        offset: offset + b.consumed as u64,
                    },
                    lines: b.lines,
                };
            }
            None => {
                // Only an unfinished last line: other logs may go meanwhile.
                self.waiting.insert(s.path.clone(), (file.ino, file.len));
                self.rest(now);
            }
        }
    }

    /// The body to post now, if one is ready and no backoff holds it.
    pub fn take_call(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.not_before.is_some_and(|t| t > now) || !matches!(self.phase, Phase::Ready { .. }) {
            return None;
        }
        let Phase::Ready {
            body,
            path,
            after,
            lines,
        } = std::mem::replace(&mut self.phase, Phase::Rest)
        else {
            return None;
        };
        self.not_before = None;
        self.phase = Phase::Sending { path, after, lines };
        Some(body)
    }

    /// The batch in flight was not answered or must be sent again (a re-login): it is cut
    /// again from the cursor, which has not moved.
    pub fn retry(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Sending { .. }) {
            self.rest(now);
        }
    }

    /// The hub's status for the batch in flight.
    pub fn answered(&mut self, status: u16, now: Instant, out: &mut Vec<HubAction>) {
        let Phase::Sending { path, after, lines } = self.phase.clone() else {
            return;
        };
        match status {
            200..=299 => {
                self.backoff.reset();
                self.line_limit = (self.line_limit * 2).min(MAX_LINES);
                self.advance(path, after, now, out);
                self.rest(now);
            }
            // Refused for now (auth, timeout, rate): the same lines later.
            401 | 403 | 408 | 429 | 500.. | 0..200 | 300..=399 => {
                let delay = self.backoff.next_delay();
                out.push(HubAction::Log {
                    level: log::Level::Warn,
                    msg: format!(
                        "log push: the hub answered {status}; retrying in {} ms",
                        delay.as_millis()
                    ),
                });
                self.not_before = Some(now + delay);
                self.save(now, out);
                self.rest(now);
            }
            // The hub will never take this batch: find the line it refuses, by halves.
            _ if lines > 1 => {
                self.line_limit = (lines / 2).max(1);
                self.rest(now);
            }
            _ => {
                out.push(HubAction::Log {
                    level: log::Level::Warn,
                    msg: format!("log push: the hub refused a line of {path} ({status}); dropped"),
                });
                self.line_limit = MAX_LINES;
                self.advance(path, after, now, out);
                self.rest(now);
            }
        }
    }

    fn advance(&mut self, path: String, after: Cursor, now: Instant, out: &mut Vec<HubAction>) {
        self.cursors.insert(path.clone(), after);
        self.unsaved.insert(path);
        if self.saved_at.is_none_or(|t| now >= t + SAVE_EVERY) {
            self.save(now, out);
        }
    }

    /// Write every cursor that moved since its last write.
    fn save(&mut self, now: Instant, out: &mut Vec<HubAction>) {
        if self.unsaved.is_empty() {
            return;
        }
        for log in std::mem::take(&mut self.unsaved) {
            let cursor = self.cursors.get(&log).copied();
            out.push(HubAction::SaveLogCursor { log, cursor });
        }
        self.saved_at = Some(now);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "logs_tests.rs"]
mod tests;
