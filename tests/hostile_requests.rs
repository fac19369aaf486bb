//! The hostile table: hundreds of distinct malformed requests, on pv-ctrl and on the v1
//! listener (with the API key, so the handlers behind it are reached). Each must get a clear
//! 4xx, write nothing to the storage, and leave the daemon serving.
//!
//! Kinds: request smuggling (Content-Length with Transfer-Encoding, duplicate or odd
//! Content-Length, odd Transfer-Encoding), obs-fold, NUL and invalid UTF-8 and percent-encoded
//! traversal in every path parameter, absurd lengths and chunk sizes, 100,000-deep JSON in
//! every JSON body, the HTTP/2 preface, HTTP/0.9, absolute-form and other request targets,
//! and broken request lines and header lines.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use common::{Daemon, Opts, free_port};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum To {
    Ctrl,
    V1,
}

struct Case {
    name: String,
    to: To,
    wire: Vec<u8>,
}

fn case(name: impl Into<String>, to: To, wire: impl Into<Vec<u8>>) -> Case {
    Case {
        name: name.into(),
        to,
        wire: wire.into(),
    }
}

/// A request with a Content-Length body; `key` is added on v1.
fn with_body(method: &str, target: &str, body: &[u8]) -> Vec<u8> {
    let mut w = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    w.extend_from_slice(body);
    w
}

/// Endpoints with a path parameter, as (method, target with `{}`, listener, body).
const PARAM_ENDPOINTS: &[(&str, &str, To, &str)] = &[
    ("GET", "/objects/{}", To::Ctrl, ""),
    ("PUT", "/objects/{}", To::Ctrl, "abc"),
    ("GET", "/steps/{}", To::Ctrl, ""),
    ("GET", "/steps/locals/{}", To::Ctrl, ""),
    ("PUT", "/steps/locals/{}", To::Ctrl, "{}"),
    ("GET", "/steps/{}/progress", To::Ctrl, ""),
    ("PUT", "/steps/locals/{}/commitmsg", To::Ctrl, "msg"),
    ("PUT", "/user-meta/{}", To::Ctrl, "v"),
    ("DELETE", "/user-meta/{}", To::Ctrl, ""),
    ("PUT", "/device-meta/{}", To::Ctrl, "v"),
    ("DELETE", "/device-meta/{}", To::Ctrl, ""),
    ("PUT", "/containers/{}", To::Ctrl, r#"{"action":"stop"}"#),
    ("PUT", "/daemons/{}", To::Ctrl, r#"{"action":"start"}"#),
    ("PUT", "/drivers/{}/load", To::Ctrl, ""),
    ("GET", "/v1/apps/{}", To::V1, ""),
    ("POST", "/v1/apps/{}/stop", To::V1, ""),
    ("POST", "/v1/apps/{}/start", To::V1, ""),
];

/// What goes into a path parameter: traversal (plain, percent-encoded, double-encoded,
/// backslash), NUL and invalid UTF-8 (encoded and raw), an overlong `/`.
const PARAMS: &[&[u8]] = &[
    b"%2e%2e",
    b"%2e%2e%2fetc",
    b"..%2f..%2fetc%2fpasswd",
    b"%2E%2E%5Cx",
    b"%252e%252e%252f",
    b".%2e",
    b"a%00b",
    b"%00",
    b"%ff%fe",
    b"x%c0%af",
    b"a\0b",
    b"\xff\xfe",
    b"..",
];

fn param_cases(out: &mut Vec<Case>) {
    for (method, pattern, to, body) in PARAM_ENDPOINTS {
        for p in PARAMS {
            let (before, after) = pattern.split_once("{}").unwrap();
            let mut target = before.as_bytes().to_vec();
            target.extend_from_slice(p);
            target.extend_from_slice(after.as_bytes());
            let mut w = format!("{method} ").into_bytes();
            w.extend_from_slice(&target);
            w.extend_from_slice(
                format!(
                    " HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
            let name = format!(
                "{method} {}",
                String::from_utf8_lossy(&target).escape_debug()
            );
            out.push(case(name, *to, w));
        }
    }
}

/// Endpoints that take a body, for the framing attacks.
const BODY_ENDPOINTS: &[(&str, &str, To)] = &[
    ("PUT", "/user-meta/smuggled", To::Ctrl),
    ("PUT", "/steps/locals/smuggled", To::Ctrl),
    ("PUT", "/steps/locals/smuggled/commitmsg", To::Ctrl),
    ("POST", "/commands", To::Ctrl),
    ("POST", "/v1/restart", To::V1),
];

/// Header blocks that frame a body ambiguously or wrongly (the body `hello` follows).
const SMUGGLING: &[(&str, &str)] = &[
    (
        "CL then TE",
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    ),
    (
        "TE then CL",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    ),
    (
        "duplicate equal CL",
        "Content-Length: 5\r\nContent-Length: 5\r\n",
    ),
    (
        "duplicate different CL",
        "Content-Length: 5\r\nContent-Length: 6\r\n",
    ),
    ("CL list", "Content-Length: 5, 5\r\n"),
    ("CL with sign", "Content-Length: +5\r\n"),
    ("CL in hex", "Content-Length: 0x5\r\n"),
    ("CL with inner space", "Content-Length: 5 5\r\n"),
    ("CL with trailing junk", "Content-Length: 5x\r\n"),
    (
        "TE chunked twice",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    ),
    (
        "TE chunked, chunked",
        "Transfer-Encoding: chunked, chunked\r\n",
    ),
    ("TE with vertical tab", "Transfer-Encoding: \x0bchunked\r\n"),
    ("TE xchunked", "Transfer-Encoding: xchunked\r\n"),
    (
        "TE chunked then gzip",
        "Transfer-Encoding: chunked, gzip\r\n",
    ),
    ("TE with parameter", "Transfer-Encoding: chunked;q=1\r\n"),
    ("space before colon", "Content-Length : 5\r\n"),
    (
        "TE in HTTP/1.1 with CL 0",
        "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
    ),
];

fn smuggling_cases(out: &mut Vec<Case>) {
    for (method, target, to) in BODY_ENDPOINTS {
        for (what, headers) in SMUGGLING {
            let w = format!(
                "{method} {target} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n5\r\nhello\r\n0\r\n\r\n"
            );
            out.push(case(format!("{what}: {method} {target}"), *to, w));
        }
        // Chunked in HTTP/1.0 (which has no chunked coding).
        let w = format!(
            "{method} {target} HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        out.push(case(format!("HTTP/1.0 chunked: {method} {target}"), *to, w));
    }
}

fn obs_fold_cases(out: &mut Vec<Case>) {
    let folds: &[(&str, &str)] = &[
        ("fold in Host", "Host: local\r\n host\r\n"),
        ("fold in Content-Length", "Content-Length:\r\n 5\r\n"),
        (
            "fold in Transfer-Encoding",
            "Transfer-Encoding:\r\n chunked\r\n",
        ),
        (
            "fold in a custom header",
            "Host: localhost\r\nX-A: a\r\n\tb\r\n",
        ),
        ("fold with spaces", "Host: localhost\r\nX-A: a\r\n    b\r\n"),
    ];
    for (to, target) in [(To::Ctrl, "/user-meta/folded"), (To::V1, "/v1/restart")] {
        for (what, headers) in folds {
            let w = format!("PUT {target} HTTP/1.1\r\n{headers}\r\nhello");
            out.push(case(format!("{what}: {target}"), to, w));
        }
    }
}

fn length_cases(out: &mut Vec<Case>) {
    let meta = "/user-meta/huge";
    for (what, cl) in [
        ("CL 2^64", "18446744073709551616"),
        ("CL 10^30", "1000000000000000000000000000000"),
        ("CL u64::MAX on metadata", "18446744073709551615"),
        ("CL negative", "-5"),
        ("CL empty", ""),
        ("CL over the metadata cap", "4097"),
    ] {
        let w = format!("PUT {meta} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {cl}\r\n\r\nv");
        out.push(case(what, To::Ctrl, w));
    }
    for (what, size) in [
        ("chunk size overflowing u64", "fffffffffffffffffffff"),
        ("chunk size 2^64", "10000000000000000"),
        ("negative chunk size", "-1"),
        ("chunk size in 0x form", "0x5"),
        (
            "chunk extension of 4 KiB",
            &format!("5;{}", "e".repeat(4096)),
        ),
        ("chunk size with space inside", "5 5"),
        ("empty chunk size", ""),
    ] {
        for (to, target) in [(To::Ctrl, meta), (To::V1, "/v1/restart")] {
            let w = format!(
                "PUT {target} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\nhello\r\n0\r\n\r\n"
            );
            out.push(case(format!("{what}: {target}"), to, w));
        }
    }
    for (to, target) in [(To::Ctrl, meta), (To::V1, "/programs")] {
        let w = format!(
            "PUT {target} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n1001\r\n{}\r\n0\r\n\r\n",
            "v".repeat(4097)
        );
        out.push(case(format!("chunk over the body cap: {target}"), to, w));
    }
    let long_target = format!("/user-meta/{}", "k".repeat(100_000));
    out.push(case(
        "100 KB request target",
        To::Ctrl,
        format!("GET {long_target} HTTP/1.1\r\n\r\n"),
    ));
    out.push(case(
        "1 MB header value",
        To::Ctrl,
        format!(
            "GET /steps HTTP/1.1\r\nX-A: {}\r\n\r\n",
            "v".repeat(1 << 20)
        ),
    ));
    out.push(case(
        "10,000 headers",
        To::Ctrl,
        format!("GET /steps HTTP/1.1\r\n{}\r\n", "X-A: v\r\n".repeat(10_000)),
    ));
    out.push(case(
        "10,000 headers on v1",
        To::V1,
        format!("GET /ping HTTP/1.1\r\n{}\r\n", "X-A: v\r\n".repeat(10_000)),
    ));
    out.push(case(
        "100 KB method",
        To::Ctrl,
        format!("{} /steps HTTP/1.1\r\n\r\n", "G".repeat(100_000)),
    ));
    out.push(case(
        "a body longer than its chunk",
        To::Ctrl,
        "PUT /user-meta/k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
    ));
    out.push(case(
        "Content-Length in a trailer",
        To::Ctrl,
        format!(
            "PUT /user-meta/k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX: {}\r\n\r\n",
            "t".repeat(8192)
        ),
    ));
}

/// 100,000-deep JSON, as arrays and as objects.
fn deep_json() -> [(&'static str, Vec<u8>); 2] {
    const DEPTH: usize = 100_000;
    let arrays = format!("{}{}", "[".repeat(DEPTH), "]".repeat(DEPTH)).into_bytes();
    let objects = format!("{}1{}", r#"{"a":"#.repeat(DEPTH), "}".repeat(DEPTH)).into_bytes();
    [("arrays", arrays), ("objects", objects)]
}

const JSON_ENDPOINTS: &[(&str, &str, To)] = &[
    ("PUT", "/steps/locals/deep", To::Ctrl),
    ("PUT", "/containers/deep", To::Ctrl),
    ("POST", "/signal", To::Ctrl),
    ("POST", "/commands", To::Ctrl),
    ("PUT", "/daemons/deep", To::Ctrl),
    ("PUT", "/programs", To::Ctrl),
    ("POST", "/v1/restart", To::V1),
    ("POST", "/v1/purge", To::V1),
    ("POST", "/v1/apps/1/stop", To::V1),
    ("POST", "/v1/apps/1/start", To::V1),
    ("PUT", "/programs", To::V1),
];

fn deep_json_cases(out: &mut Vec<Case>) {
    for (kind, body) in deep_json() {
        for (method, target, to) in JSON_ENDPOINTS {
            out.push(case(
                format!("100,000-deep JSON {kind}: {method} {target}"),
                *to,
                with_body(method, target, &body),
            ));
        }
    }
}

fn line_cases(out: &mut Vec<Case>) {
    let lines: &[(&str, &[u8])] = &[
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        ("HTTP/2.0 request", b"GET /steps HTTP/2.0\r\n\r\n"),
        ("HTTP/1.2", b"GET /steps HTTP/1.2\r\n\r\n"),
        ("HTTP/0.9", b"GET /steps\r\n\r\n"),
        (
            "HTTP/0.9 without blank line",
            b"GET /steps\r\nHost: x\r\n\r\n",
        ),
        (
            "absolute-form",
            b"GET http://localhost/steps HTTP/1.1\r\n\r\n",
        ),
        (
            "absolute-form https",
            b"GET https://localhost/steps HTTP/1.1\r\n\r\n",
        ),
        (
            "absolute-form with port",
            b"GET http://localhost:80/steps HTTP/1.1\r\n\r\n",
        ),
        ("authority-form", b"CONNECT localhost:80 HTTP/1.1\r\n\r\n"),
        ("asterisk-form", b"OPTIONS * HTTP/1.1\r\n\r\n"),
        ("scheme-relative", b"GET //localhost/steps HTTP/1.1\r\n\r\n"),
        ("lowercase version", b"GET /steps http/1.1\r\n\r\n"),
        ("no target", b"GET HTTP/1.1\r\n\r\n"),
        ("two spaces", b"GET  /steps HTTP/1.1\r\n\r\n"),
        ("tab separator", b"GET\t/steps HTTP/1.1\r\n\r\n"),
        ("bad method token", b"G(T /steps HTTP/1.1\r\n\r\n"),
        ("NUL in method", b"G\0T /steps HTTP/1.1\r\n\r\n"),
        ("space in target", b"GET /st eps HTTP/1.1\r\n\r\n"),
        (
            "header without colon",
            b"GET /steps HTTP/1.1\r\nHost localhost\r\n\r\n",
        ),
        (
            "header name with space",
            b"GET /steps HTTP/1.1\r\nX A: b\r\n\r\n",
        ),
        ("empty header name", b"GET /steps HTTP/1.1\r\n: b\r\n\r\n"),
        (
            "NUL in header value",
            b"GET /steps HTTP/1.1\r\nX-A: a\0b\r\n\r\n",
        ),
        (
            "CR alone in header",
            b"GET /steps HTTP/1.1\r\nX-A: a\rb\r\n\r\n",
        ),
        (
            "invalid UTF-8 in header name",
            b"GET /steps HTTP/1.1\r\nX-\xff: a\r\n\r\n",
        ),
        (
            "Host with another name",
            b"GET /steps HTTP/1.1\r\nHost: evil.example\r\n\r\n",
        ),
        ("unknown endpoint", b"GET /nothing-here HTTP/1.1\r\n\r\n"),
        ("trailing slash", b"GET /steps/ HTTP/1.1\r\n\r\n"),
        ("doubled slash", b"GET /user-meta//k HTTP/1.1\r\n\r\n"),
        ("wrong method", b"PATCH /steps HTTP/1.1\r\n\r\n"),
        (
            "unknown coding",
            b"PUT /user-meta/k HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        ),
    ];
    for (what, wire) in lines {
        out.push(case(*what, To::Ctrl, *wire));
    }
    for (what, wire) in &lines[..12] {
        out.push(case(format!("{what} on v1"), To::V1, *wire));
    }
}

fn all_cases() -> Vec<Case> {
    let mut out = Vec::new();
    param_cases(&mut out);
    smuggling_cases(&mut out);
    obs_fold_cases(&mut out);
    length_cases(&mut out);
    deep_json_cases(&mut out);
    line_cases(&mut out);
    out
}

/// Put the key into a v1 request: `apikey` in the query of its request line.
fn keyed(wire: &[u8], key: &str) -> Vec<u8> {
    let Some(sp) = wire.iter().position(|b| *b == b' ') else {
        return wire.to_vec();
    };
    let Some(end) = wire[sp + 1..]
        .iter()
        .position(|b| *b == b' ' || *b == b'\r')
    else {
        return wire.to_vec();
    };
    let end = sp + 1 + end;
    let target = &wire[sp + 1..end];
    if !target.starts_with(b"/") {
        return wire.to_vec();
    }
    let sep = if target.contains(&b'?') { "&" } else { "?" };
    let mut w = wire[..end].to_vec();
    w.extend_from_slice(format!("{sep}apikey={key}").as_bytes());
    w.extend_from_slice(&wire[end..]);
    w
}

fn exchange<S: Read + Write>(mut s: S, wire: &[u8], close: impl Fn(&S)) -> Vec<u8> {
    // The daemon may answer (and stop reading) before the whole request is out.
    let _ = s.write_all(wire);
    close(&s);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn send(d: &Daemon, port: u16, c: &Case, key: &str) -> Vec<u8> {
    match c.to {
        To::Ctrl => {
            let s = UnixStream::connect(&d.socket).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            exchange(s, &c.wire, |s| {
                let _ = s.shutdown(Shutdown::Write);
            })
        }
        To::V1 => {
            let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            exchange(s, &keyed(&c.wire, key), |s| {
                let _ = s.shutdown(Shutdown::Write);
            })
        }
    }
}

/// Every file under the storage but the logs, with its size.
fn storage_files(root: &Path) -> Vec<(String, u64)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if rel == "logs" {
                continue;
            }
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                out.push((format!("{rel}/"), 0));
                walk(root, &p, out);
            } else {
                out.push((rel, meta.len()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[test]
fn the_hostile_table_has_two_hundred_distinct_requests() {
    let cases = all_cases();
    let mut wires: Vec<(&Vec<u8>, To)> = cases.iter().map(|c| (&c.wire, c.to)).collect();
    wires.sort();
    wires.dedup();
    assert_eq!(wires.len(), cases.len(), "duplicate requests in the table");
    assert!(cases.len() >= 200, "only {} cases", cases.len());
}

#[test]
fn every_hostile_request_gets_a_4xx_writes_nothing_and_the_daemon_keeps_serving() {
    let port = free_port();
    let d = Daemon::start_with(Opts::default().set(&format!("TERN_V1_ADDRESS=127.0.0.1:{port}")));
    let key = std::fs::read_to_string(d.storage.join("cache/v1-api-key")).unwrap();
    assert_eq!(d.get("/steps").status, 200);
    let before = storage_files(&d.storage);
    let mut failures = Vec::new();
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    for c in all_cases() {
        let raw = send(&d, port, &c, &key);
        let line = String::from_utf8_lossy(&raw[..raw.len().min(40)]).into_owned();
        let status: u16 = line.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let first = line.lines().next().unwrap_or("").to_string();
        *by_status.entry(status).or_default() += 1;
        if !(400..500).contains(&status) || !line.starts_with("HTTP/1.") {
            failures.push(format!("{:?} {}: got {first:?}", c.to, c.name));
        }
        assert_eq!(
            d.get("/buildinfo").status,
            200,
            "stopped serving after {}:\n{}",
            c.name,
            d.log_text()
        );
    }
    eprintln!("hostile table: answers by status {by_status:?}");
    assert!(
        failures.is_empty(),
        "{} of {} without a 4xx:\n{}",
        failures.len(),
        all_cases().len(),
        failures.join("\n")
    );
    assert_eq!(storage_files(&d.storage), before, "the storage changed");
    assert_eq!(d.get("/user-meta").text(), "{}");
}
