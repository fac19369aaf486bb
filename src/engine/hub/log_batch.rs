//! One `POST /logs/` body cut from a slice of a log file: whole lines, at most a line count
//! and a body size, a line longer than the body cap split into pieces (never dropped), and a
//! last line without its newline held back until the file is known to be finished with it.
//!
//! Pure: bytes in, a JSON body and how many bytes of the slice it covers out. It never reads
//! a file or a clock; the times it stamps come in with the slice.

/// The hub's batch caps (as Pantavisor's pusher: research §6).
pub const MAX_LINES: usize = 200;
pub const MAX_BODY: usize = 256 * 1024;

/// JSON of one entry without its strings: keys, quotes, braces, the comma, the longest
/// numbers and level (`{"tsec":…,"tnano":…,"lvl":"…","src":"","plat":"","rev":"","msg":""},`).
const ENTRY_FRAME: usize = 100;

/// Where the lines come from and how to stamp them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub rev: String,
    pub plat: String,
    pub src: String,
    /// Lines in Tern's own format (`<UTC time> <LEVEL> <message>`): their time and level are
    /// taken from the line. Other lines (a container's console) carry no time of their own.
    pub own: bool,
    /// The file's modification time (unix seconds, nanoseconds) when the slice was read:
    /// the latest moment any of its lines can have been written. Console lines get it.
    pub mtime: (u64, u32),
}

/// A body ready to post.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub body: Vec<u8>,
    /// Bytes of the slice the body covers (the cursor moves by this much once it is
    /// acknowledged).
    pub consumed: usize,
    pub lines: usize,
}

/// The most a byte can grow to in a JSON string (an upper bound: invalid UTF-8 becomes a
/// three-byte U+FFFD).
fn escaped(b: u8) -> usize {
    match b {
        b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
        0..0x20 => 6,
        0x20..0x80 => 1,
        _ => 3,
    }
}

fn escaped_len(s: &[u8]) -> usize {
    s.iter().map(|&b| escaped(b)).sum()
}

/// The longest prefix of `line` whose escaped size fits `room`, ending on a UTF-8 character
/// boundary so the pieces join back into the same text; at least one byte.
fn prefix_fitting(line: &[u8], room: usize) -> usize {
    let mut used = 0;
    let mut take = 0;
    for &b in line {
        if used + escaped(b) > room {
            break;
        }
        used += escaped(b);
        take += 1;
    }
    let mut cut = take;
    // Back off over continuation bytes (10xxxxxx) to the start of their character.
    while cut > 0 && cut < line.len() && line[cut] & 0xC0 == 0x80 && take - cut < 3 {
        cut -= 1;
    }
    if cut == 0 { take.max(1) } else { cut }
}

/// Cut the next body from `slice`. `flush_tail`: the slice reaches the end of a file nobody
/// will append to (rotated away) or whose last line has waited long enough, so a last line
/// without a newline goes too. `None`: nothing to send yet (empty, or only a short unfinished
/// last line).
pub fn build(
    slice: &[u8],
    origin: &Origin,
    max_lines: usize,
    max_body: usize,
    flush_tail: bool,
) -> Option<Batch> {
    let frame = ENTRY_FRAME
        + escaped_len(origin.rev.as_bytes())
        + escaped_len(origin.plat.as_bytes())
        + escaped_len(origin.src.as_bytes());
    // Two brackets; the rest is for entries.
    let mut room = max_body.saturating_sub(2);
    // The JSON is written directly (a tree of values per line cost more than the rest of a
    // batch's work in the loop); the fields common to every entry are escaped once.
    let tail = origin_fields(origin);
    let mut body = Vec::with_capacity(slice.len().min(max_body) + 1024);
    body.push(b'[');
    let mut lines = 0;
    let mut pos = 0;
    while lines < max_lines.max(1) && pos < slice.len() {
        let rest = &slice[pos..];
        let (line, step, complete) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], i + 1, true),
            None => (rest, rest.len(), false),
        };
        let cost = frame + escaped_len(line);
        if !complete && !flush_tail && (cost <= room || lines > 0) {
            // An unfinished line that fits: wait for the rest of it.
            break;
        }
        if cost <= room {
            entry(&mut body, lines, line, origin, &tail);
            lines += 1;
            room -= cost;
            pos += step;
            continue;
        }
        if lines > 0 {
            break;
        }
        // One line bigger than a whole body: send its first piece; the rest follows.
        let take = prefix_fitting(line, room.saturating_sub(frame));
        entry(&mut body, lines, &line[..take], origin, &tail);
        lines += 1;
        pos += take;
        break;
    }
    if lines == 0 {
        return None;
    }
    body.push(b']');
    Some(Batch {
        body,
        consumed: pos,
        lines,
    })
}

/// `,"src":…,"plat":…,"rev":…,"msg":"` — the same for every entry of a batch.
fn origin_fields(origin: &Origin) -> Vec<u8> {
    let mut t = Vec::new();
    for (key, value) in [
        ("src", &origin.src),
        ("plat", &origin.plat),
        ("rev", &origin.rev),
    ] {
        t.extend_from_slice(format!(",\"{key}\":\"").as_bytes());
        escape_into(&mut t, value);
        t.push(b'"');
    }
    t.extend_from_slice(b",\"msg\":\"");
    t
}

/// One entry, `{"tsec","tnano","lvl","src","plat","rev","msg"}` in Pantavisor's order.
fn entry(body: &mut Vec<u8>, index: usize, line: &[u8], origin: &Origin, tail: &[u8]) {
    let text = String::from_utf8_lossy(line);
    let (tsec, tnano, lvl, msg) = match parse_own_line(&text).filter(|_| origin.own) {
        Some((tsec, lvl, msg)) => (tsec, 0, lvl, msg),
        None => (origin.mtime.0, origin.mtime.1, "INFO", &*text),
    };
    if index > 0 {
        body.push(b',');
    }
    body.extend_from_slice(
        format!("{{\"tsec\":{tsec},\"tnano\":{tnano},\"lvl\":\"{lvl}\"").as_bytes(),
    );
    body.extend_from_slice(tail);
    escape_into(body, msg);
    body.extend_from_slice(b"\"}");
}

/// `s` as the inside of a JSON string: quotes, backslashes and control characters escaped,
/// everything else (UTF-8 included) as it is.
fn escape_into(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..0x20 => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// `2026-12-06T06:12:19Z INFO  hub: idle` → (unix seconds, level as Pantavisor names it,
/// message). `None` for anything else (a continuation of a multi-line record).
pub fn parse_own_line(line: &str) -> Option<(u64, &'static str, &str)> {
    let (stamp, rest) = line.split_once(' ')?;
    let tsec = crate::utc::parse_utc(stamp)?;
    let lvl = match rest.get(..5)?.trim_end() {
        "ERROR" => "ERROR",
        "WARN" => "WARN",
        "INFO" => "INFO",
        "DEBUG" => "DEBUG",
        "TRACE" => "ALL",
        _ => return None,
    };
    Some((tsec, lvl, rest.get(6..).unwrap_or("")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn console() -> Origin {
        Origin {
            rev: "0".into(),
            plat: "app".into(),
            src: "lxc/console.log".into(),
            own: false,
            mtime: (1_700_000_000, 5),
        }
    }

    fn msgs(b: &Batch) -> Vec<String> {
        let v: Vec<Value> = serde_json::from_slice(&b.body).unwrap();
        v.iter()
            .map(|e| e["msg"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn whole_lines_with_the_files_time_and_origin() {
        let b = build(b"one\ntwo\n", &console(), MAX_LINES, MAX_BODY, false).unwrap();
        assert_eq!(msgs(&b), ["one", "two"]);
        assert_eq!((b.consumed, b.lines), (8, 2));
        let v: Vec<Value> = serde_json::from_slice(&b.body).unwrap();
        assert_eq!(
            v[0],
            json!({"tsec": 1_700_000_000u64, "tnano": 5, "lvl": "INFO", "src": "lxc/console.log",
                "plat": "app", "rev": "0", "msg": "one"})
        );
    }

    #[test]
    fn every_byte_survives_the_json() {
        let line = "q\"b\\s/\u{8}\u{c}\t\r\u{1}\u{1f}\u{7f}é€😀 ";
        let o = Origin {
            src: "a\"b".into(),
            ..console()
        };
        let b = build(
            format!("{line}\n").as_bytes(),
            &o,
            MAX_LINES,
            MAX_BODY,
            false,
        )
        .unwrap();
        let v: Vec<Value> = serde_json::from_slice(&b.body).unwrap();
        assert_eq!(
            (v[0]["msg"].as_str(), v[0]["src"].as_str()),
            (Some(line), Some("a\"b"))
        );
        let keys: Vec<&str> = b
            .body
            .split(|c| *c == b',')
            .take(7)
            .map(|k| {
                std::str::from_utf8(k)
                    .unwrap()
                    .split(':')
                    .next()
                    .unwrap()
                    .trim_start_matches("[{")
            })
            .collect();
        assert_eq!(
            keys,
            [
                "\"tsec\"",
                "\"tnano\"",
                "\"lvl\"",
                "\"src\"",
                "\"plat\"",
                "\"rev\"",
                "\"msg\""
            ]
        );
    }

    #[test]
    fn at_most_the_line_cap() {
        let text = "x\n".repeat(450);
        let b = build(text.as_bytes(), &console(), MAX_LINES, MAX_BODY, false).unwrap();
        assert_eq!((b.lines, b.consumed), (200, 400));
    }

    #[test]
    fn at_most_the_body_cap_and_the_estimate_holds_for_escapes() {
        // Quotes and control bytes grow when escaped; the body must still fit.
        let line = "\"\u{1}é".repeat(100) + "\n";
        let text = line.repeat(2000);
        let b = build(text.as_bytes(), &console(), MAX_LINES, 64 * 1024, false).unwrap();
        assert!(b.body.len() <= 64 * 1024, "{}", b.body.len());
        assert!(b.lines > 10 && b.lines < 200, "{}", b.lines);
        assert_eq!(b.consumed, b.lines * line.len());
        assert!(msgs(&b).iter().all(|m| *m == line[..line.len() - 1]));
    }

    #[test]
    fn a_line_longer_than_a_body_is_split_and_joins_back() {
        let long: String = "0123456789abcdéf".repeat(70_000); // 1.2 MB with 2-byte chars
        let text = format!("{long}\nafter\n");
        let mut pos = 0;
        let mut pieces = Vec::new();
        while let Some(b) = build(&text.as_bytes()[pos..], &console(), 200, MAX_BODY, false) {
            assert!(b.body.len() <= MAX_BODY);
            pieces.extend(msgs(&b));
            pos += b.consumed;
        }
        assert_eq!(pos, text.len());
        assert!(pieces.len() > 4, "{}", pieces.len());
        assert_eq!(pieces.last().unwrap(), "after");
        assert_eq!(pieces[..pieces.len() - 1].concat(), long);
    }

    #[test]
    fn an_unfinished_last_line_waits_unless_flushed() {
        let b = build(b"done\nhalf", &console(), MAX_LINES, MAX_BODY, false).unwrap();
        assert_eq!((msgs(&b), b.consumed), (vec!["done".to_string()], 5));
        assert_eq!(build(b"half", &console(), MAX_LINES, MAX_BODY, false), None);
        let b = build(b"half", &console(), MAX_LINES, MAX_BODY, true).unwrap();
        assert_eq!((msgs(&b), b.consumed), (vec!["half".to_string()], 4));
    }

    #[test]
    fn an_unfinished_line_longer_than_a_body_goes_in_pieces_at_once() {
        let text = vec![b'z'; 300 * 1024];
        let b = build(&text, &console(), MAX_LINES, MAX_BODY, false).unwrap();
        assert!(b.consumed > 200 * 1024 && b.consumed < MAX_BODY);
        assert_eq!(b.lines, 1);
    }

    #[test]
    fn one_line_limit_sends_one_line() {
        let b = build(b"a\nb\n", &console(), 1, MAX_BODY, false).unwrap();
        assert_eq!((b.lines, b.consumed), (1, 2));
    }

    #[test]
    fn terns_own_lines_carry_their_time_and_level() {
        let own = Origin {
            own: true,
            plat: "pantavisor".into(),
            src: "tern.log".into(),
            ..console()
        };
        let text = "2026-12-06T06:12:19Z WARN  hub: slow\nno stamp here\n";
        let b = build(text.as_bytes(), &own, MAX_LINES, MAX_BODY, false).unwrap();
        let v: Vec<Value> = serde_json::from_slice(&b.body).unwrap();
        assert_eq!(v[0]["tsec"], 1_796_537_539u64);
        assert_eq!(v[0]["lvl"], "WARN");
        assert_eq!(v[0]["msg"], "hub: slow");
        assert_eq!(v[1]["lvl"], "INFO");
        assert_eq!(v[1]["tsec"], 1_700_000_000u64);
        assert_eq!(v[1]["msg"], "no stamp here");
    }
}
