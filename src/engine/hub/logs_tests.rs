//! The log pusher fed event by event: fake log files (with inodes and rotation), fake time,
//! and a fake hub that records what it acknowledged.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;

/// A fake log: live and rotated contents with their inodes.
struct FakeLog {
    path: String,
    live: (u64, Vec<u8>),
    rotated: Option<(u64, Vec<u8>)>,
    mtime: u64,
}

struct Rig {
    p: LogPush,
    now: Instant,
    unix: u64,
    logs: Vec<FakeLog>,
    next_ino: u64,
    enabled: bool,
    /// Everything the machine did, and the cursors it last asked to save.
    out: Vec<HubAction>,
    saved: Option<BTreeMap<String, Cursor>>,
    /// Messages the hub acknowledged, in order.
    hub: Vec<String>,
    /// Bodies posted (acknowledged or not).
    posts: usize,
    /// Actions of `out` already looked at for saves.
    noted: usize,
}

fn stat(ino: u64, data: &[u8], mtime: u64) -> FileStat {
    FileStat {
        ino,
        born: ino * 7,
        len: data.len() as u64,
        mtime: (mtime, 0),
    }
}

impl Rig {
    fn new(names: &[&str]) -> Rig {
        let now = Instant::now();
        let mut r = Rig {
            p: LogPush::new(1),
            now,
            unix: 1_000_000,
            logs: Vec::new(),
            next_ino: 10,
            enabled: true,
            out: Vec::new(),
            saved: None,
            hub: Vec::new(),
            posts: 0,
            noted: 0,
        };
        for n in names {
            let ino = r.ino();
            r.logs.push(FakeLog {
                path: n.to_string(),
                live: (ino, Vec::new()),
                rotated: None,
                mtime: r.unix,
            });
        }
        r.p.enable(BTreeMap::new(), now);
        r
    }
    fn ino(&mut self) -> u64 {
        self.next_ino += 1;
        self.next_ino
    }
    fn log(&mut self, name: &str) -> &mut FakeLog {
        self.logs.iter_mut().find(|l| l.path == name).unwrap()
    }
    fn write(&mut self, name: &str, text: &str) {
        let unix = self.unix;
        let l = self.log(name);
        l.live.1.extend_from_slice(text.as_bytes());
        l.mtime = unix;
    }
    fn lines(&mut self, name: &str, from: usize, to: usize) {
        let text: String = (from..to).map(|i| format!("{name} line {i}\n")).collect();
        self.write(name, &text);
    }
    /// `console.log` → `console.log.1`, a new empty `console.log`.
    fn rotate(&mut self, name: &str) {
        let ino = self.ino();
        let l = self.log(name);
        let old = std::mem::replace(&mut l.live, (ino, Vec::new()));
        l.rotated = Some(old);
    }
    fn streams(&self) -> Vec<LogStream> {
        self.logs
            .iter()
            .map(|l| LogStream {
                path: l.path.clone(),
                origin: Origin {
                    rev: "0".into(),
                    plat: l.path.clone(),
                    src: "lxc/console.log".into(),
                    own: false,
                    mtime: (0, 0),
                },
                live: Some(stat(l.live.0, &l.live.1, l.mtime)),
                rotated: l.rotated.as_ref().map(|(i, d)| stat(*i, d, l.mtime)),
            })
            .collect()
    }
    fn slice(&self, req: &ReadReq) -> Slice {
        let l = self.logs.iter().find(|l| l.path == req.path).unwrap();
        let file = match req.which {
            Which::Live => Some(&l.live),
            Which::Rotated => l.rotated.as_ref(),
        };
        let Some((ino, data)) = file.filter(|(i, _)| *i == req.ino) else {
            return Slice {
                bytes: Vec::new(),
                eof: true,
                mtime: (l.mtime, 0),
            };
        };
        let _ = ino;
        let start = (req.offset as usize).min(data.len());
        let end = (start + req.max as usize).min(data.len());
        Slice {
            bytes: data[start..end].to_vec(),
            eof: end == data.len(),
            mtime: (l.mtime, 0),
        }
    }
    /// Let the machine scan and read until it has a body or rests; the body it offers.
    fn next_body(&mut self) -> Option<Vec<u8>> {
        for _ in 0..20 {
            let mut out = Vec::new();
            self.p.poll(self.now, &mut out);
            if out.is_empty() {
                return self.p.take_call(self.now);
            }
            assert_eq!(out, [HubAction::ScanLogs]);
            let mut out = Vec::new();
            let streams = self.streams();
            self.p
                .scanned(self.enabled, streams, self.now, self.unix, &mut out);
            self.out.extend(out.iter().cloned());
            let read = out.iter().find_map(|a| match a {
                HubAction::ReadLog(r) => Some(r.clone()),
                _ => None,
            });
            let Some(req) = read else {
                return self.p.take_call(self.now);
            };
            let slice = self.slice(&req);
            self.p.read(slice, self.now, self.unix);
            if let Some(b) = self.p.take_call(self.now) {
                return Some(b);
            }
        }
        panic!("the machine keeps scanning without a body or a rest");
    }
    /// Post the next body; the hub answers `status` (200: it keeps the lines).
    fn post(&mut self, status: u16) -> Option<Vec<String>> {
        let body = self.next_body()?;
        self.posts += 1;
        let msgs = msgs(&body);
        if status == 200 {
            self.hub.extend(msgs.iter().cloned());
        }
        let mut out = Vec::new();
        self.p.answered(status, self.now, &mut out);
        self.out.extend(out);
        self.note_saves();
        Some(msgs)
    }
    /// The cursors as the storage would hold them after every save so far.
    fn note_saves(&mut self) {
        for a in std::mem::take(&mut self.out_pending()) {
            if let HubAction::SaveLogCursor { log, cursor } = a {
                let saved = self.saved.get_or_insert_with(BTreeMap::new);
                match cursor {
                    Some(c) => saved.insert(log.clone(), c),
                    None => saved.remove(&log),
                };
            }
        }
    }
    fn out_pending(&mut self) -> Vec<HubAction> {
        let new = self.out[self.noted..].to_vec();
        self.noted = self.out.len();
        new
    }
    /// Post with a hub that refuses (400) any batch holding `bad`, until nothing is left.
    fn drain(&mut self, bad: Option<&str>) {
        for _ in 0..1000 {
            let Some(body) = self.next_body() else {
                self.note_saves();
                return;
            };
            self.posts += 1;
            let msgs = msgs(&body);
            let refuse = bad.is_some_and(|b| msgs.iter().any(|m| m.contains(b)));
            if !refuse {
                self.hub.extend(msgs);
            }
            let mut out = Vec::new();
            self.p
                .answered(if refuse { 400 } else { 200 }, self.now, &mut out);
            self.out.extend(out);
            self.note_saves();
        }
        panic!("never drained");
    }
    fn advance(&mut self, secs: u64) {
        self.now += Duration::from_secs(secs);
        self.unix += secs;
    }
}

fn msgs(body: &[u8]) -> Vec<String> {
    let v: Vec<Value> = serde_json::from_slice(body).unwrap();
    v.iter()
        .map(|e| e["msg"].as_str().unwrap().to_string())
        .collect()
}

fn expected(name: &str, from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!("{name} line {i}")).collect()
}

#[test]
fn every_line_goes_once_in_batches_of_at_most_200() {
    let mut r = Rig::new(&["app"]);
    r.lines("app", 0, 450);
    let sizes: Vec<usize> = std::iter::from_fn(|| r.post(200).map(|m| m.len())).collect();
    assert_eq!(sizes, [200, 200, 50]);
    assert_eq!(r.hub, expected("app", 0, 450));
}

#[test]
fn a_quiet_log_sends_nothing_and_only_looks_again_later() {
    let mut r = Rig::new(&["app"]);
    r.lines("app", 0, 3);
    r.post(200).unwrap();
    assert_eq!(r.post(200), None, "no new line, no request");
    assert_eq!(r.p.next_wake(), Some(r.now + SCAN_EVERY));
    r.advance(1);
    assert_eq!(r.post(200), None);
    r.advance(1);
    r.lines("app", 3, 4);
    assert_eq!(r.post(200).unwrap(), expected("app", 3, 4));
}

#[test]
fn the_cursor_moves_only_after_the_hubs_200() {
    let mut r = Rig::new(&["app"]);
    r.lines("app", 0, 5);
    let body = r.next_body().unwrap();
    assert_eq!(msgs(&body).len(), 5);
    assert!(r.p.cursors().is_empty(), "nothing acknowledged yet");
    let mut out = Vec::new();
    r.p.answered(200, r.now, &mut out);
    let len = r.logs[0].live.1.len() as u64;
    let want = Cursor {
        ino: r.logs[0].live.0,
        born: r.logs[0].live.0 * 7,
        offset: len,
    };
    assert_eq!(
        out,
        [HubAction::SaveLogCursor {
            log: "app".into(),
            cursor: Some(want)
        }]
    );
}

#[test]
fn server_errors_back_off_exponentially_and_resend_the_same_lines() {
    let mut r = Rig::new(&["app"]);
    r.lines("app", 0, 3);
    let mut gaps = Vec::new();
    for _ in 0..4 {
        assert_eq!(r.post(503).unwrap(), expected("app", 0, 3));
        assert!(r.saved.is_none());
        let wake = r.p.next_wake().unwrap();
        gaps.push(wake - r.now);
        assert_eq!(r.next_body(), None, "held back by the backoff");
        r.now = wake;
        r.unix += 60;
    }
    assert!(gaps.windows(2).all(|w| w[1] > w[0]), "{gaps:?}");
    assert_eq!(r.post(200).unwrap(), expected("app", 0, 3));
    assert_eq!(r.hub, expected("app", 0, 3));
    assert!(
        r.out
            .iter()
            .any(|a| matches!(a, HubAction::Log { msg, .. } if msg.contains("503")))
    );
}

#[test]
fn rate_limits_and_timeouts_are_retried_not_dropped() {
    for status in [403, 408, 429] {
        let mut r = Rig::new(&["app"]);
        r.lines("app", 0, 2);
        r.post(status).unwrap();
        r.advance(120);
        r.post(200).unwrap();
        assert_eq!(r.hub, expected("app", 0, 2), "{status}");
    }
}

#[test]
fn a_line_the_hub_refuses_is_found_by_halves_and_dropped_alone() {
    let mut r = Rig::new(&["app"]);
    r.lines("app", 0, 100);
    r.write("app", "BAD line\n");
    r.lines("app", 100, 180);
    r.drain(Some("BAD"));
    let mut want = expected("app", 0, 180);
    assert_eq!(r.hub, std::mem::take(&mut want));
    let dropped: Vec<_> = r
        .out
        .iter()
        .filter(|a| matches!(a, HubAction::Log { msg, .. } if msg.contains("dropped")))
        .collect();
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    // Line by line after the first refusal would be 181 posts.
    assert!(r.posts < 30, "bisection, not line by line: {}", r.posts);
}

#[test]
fn rotation_mid_batch_finishes_the_old_file_then_reads_the_new_one() {
    let mut r = Rig::new(&["app"]);
    r.lines("app", 0, 300);
    assert_eq!(r.post(200).unwrap().len(), 200);
    // The next batch is cut, then the file rotates before the hub answers.
    let body = r.next_body().unwrap();
    r.rotate("app");
    r.lines("app", 300, 350);
    r.hub.extend(msgs(&body));
    let mut out = Vec::new();
    r.p.answered(200, r.now, &mut out);
    r.drain(None);
    assert_eq!(r.hub, expected("app", 0, 350));
}

#[test]
fn a_cursor_whose_file_is_gone_starts_at_the_oldest_file_left() {
    let mut r = Rig::new(&["app"]);
    r.lines("app", 0, 10);
    r.drain(None);
    r.advance(2);
    r.lines("app", 10, 20);
    // Two rotations while nothing was pushed: lines 10..20 are gone with the old file.
    r.rotate("app");
    r.lines("app", 20, 30);
    r.rotate("app");
    r.lines("app", 30, 40);
    r.drain(None);
    let mut want = expected("app", 0, 10);
    want.extend(expected("app", 20, 40));
    assert_eq!(r.hub, want);
}

#[test]
fn restarting_from_the_saved_cursors_sends_nothing_twice() {
    let mut r = Rig::new(&["app", "web"]);
    r.lines("app", 0, 250);
    r.lines("web", 0, 10);
    r.drain(None);
    let saved = r.saved.clone().unwrap();
    r.p = LogPush::new(2);
    r.p.enable(saved, r.now);
    r.lines("web", 10, 12);
    r.drain(None);
    let mut got = r.hub.clone();
    got.sort();
    let mut want = expected("app", 0, 250);
    want.extend(expected("web", 0, 12));
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn a_crash_before_the_cursor_write_resends_that_batch_once() {
    let mut r = Rig::new(&["app"]);
    r.lines("app", 0, 300);
    r.post(200).unwrap();
    let before = r.saved.clone().unwrap();
    // The hub keeps the second batch, the device dies before writing its cursor.
    r.post(200).unwrap();
    r.p = LogPush::new(3);
    r.p.enable(before, r.now);
    r.drain(None);
    let mut want = expected("app", 0, 300);
    want.extend(expected("app", 200, 300));
    want[300..].sort();
    let mut got = r.hub.clone();
    got[300..].sort();
    assert_eq!(got.len(), 400);
    assert_eq!(got[..200], want[..200]);
    let mut twice = got.clone();
    twice.sort();
    twice.dedup();
    assert_eq!(
        twice.len(),
        300,
        "every line there, the batch at most twice"
    );
}

#[test]
fn streams_take_turns() {
    let mut r = Rig::new(&["a", "b"]);
    r.lines("a", 0, 1000);
    r.lines("b", 0, 1);
    r.post(200).unwrap();
    assert_eq!(r.post(200).unwrap(), expected("b", 0, 1));
}

#[test]
fn an_unfinished_last_line_waits_for_its_newline_or_for_quiet() {
    let mut r = Rig::new(&["app"]);
    r.write("app", "prompt> ");
    assert_eq!(r.post(200), None);
    r.advance(2);
    r.write("app", "ls\nhalf");
    assert_eq!(r.post(200).unwrap(), ["prompt> ls"]);
    r.advance(TAIL_WAIT_SECS);
    assert_eq!(r.post(200).unwrap(), ["half"]);
}

#[test]
fn a_megabyte_line_arrives_in_pieces_that_join_back() {
    let mut r = Rig::new(&["app"]);
    let line: String = (0..1_048_576u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    r.write("app", &format!("{line}\nnext\n"));
    r.drain(None);
    assert!(r.posts >= 5, "{}", r.posts);
    assert_eq!(r.hub.last().unwrap(), "next");
    assert_eq!(r.hub[..r.hub.len() - 1].concat(), line);
}

#[test]
fn switched_off_reads_nothing() {
    let mut r = Rig::new(&["app"]);
    r.enabled = false;
    r.lines("app", 0, 5);
    assert_eq!(r.post(200), None);
    r.enabled = true;
    r.advance(2);
    assert_eq!(r.post(200).unwrap().len(), 5);
}

#[test]
fn asking_for_a_body_while_scanning_or_reading_changes_nothing() {
    let mut r = Rig::new(&["app"]);
    r.lines("app", 0, 2);
    let mut out = Vec::new();
    r.p.poll(r.now, &mut out);
    assert_eq!(out, [HubAction::ScanLogs]);
    assert_eq!(r.p.take_call(r.now), None);
    let mut out = Vec::new();
    let streams = r.streams();
    r.p.scanned(true, streams, r.now, r.unix, &mut out);
    let Some(HubAction::ReadLog(req)) = out.first().cloned() else {
        panic!("no read: {out:?}");
    };
    assert_eq!(r.p.take_call(r.now), None);
    let slice = r.slice(&req);
    r.p.read(slice, r.now, r.unix);
    assert_eq!(msgs(&r.p.take_call(r.now).unwrap()).len(), 2);
}

#[test]
fn a_file_rotated_between_the_scan_and_the_read_is_looked_at_again_shortly() {
    let mut r = Rig::new(&["app"]);
    r.lines("app", 0, 3);
    let mut out = Vec::new();
    r.p.poll(r.now, &mut out);
    let streams = r.streams();
    let mut out = Vec::new();
    r.p.scanned(true, streams, r.now, r.unix, &mut out);
    assert!(matches!(out.first(), Some(HubAction::ReadLog(_))));
    r.rotate("app");
    let empty = Slice {
        bytes: Vec::new(),
        eof: true,
        mtime: (r.unix, 0),
    };
    r.p.read(empty, r.now, r.unix);
    let mut out = Vec::new();
    r.p.poll(r.now, &mut out);
    assert!(out.is_empty(), "not again in the same turn");
    r.now += Duration::from_millis(100);
    assert_eq!(r.post(200).unwrap(), expected("app", 0, 3));
}

#[test]
fn while_a_backlog_drains_cursors_are_written_once_a_second_and_at_its_end() {
    let mut r = Rig::new(&["app"]);
    r.lines("app", 0, 1000);
    let saves = |r: &Rig| {
        r.out
            .iter()
            .filter(|a| matches!(a, HubAction::SaveLogCursor { .. }))
            .count()
    };
    r.post(200).unwrap();
    assert_eq!(saves(&r), 1, "the first acknowledgement is written at once");
    r.post(200).unwrap();
    r.post(200).unwrap();
    assert_eq!(saves(&r), 1, "within the second: not yet");
    r.now += SAVE_EVERY;
    r.post(200).unwrap();
    assert_eq!(saves(&r), 2);
    r.drain(None);
    assert_eq!(saves(&r), 3, "the end of the drain");
    let end = r.logs[0].live.1.len() as u64;
    assert_eq!(r.saved.as_ref().unwrap()["app"].offset, end);
    assert_eq!(r.hub, expected("app", 0, 1000));
}
