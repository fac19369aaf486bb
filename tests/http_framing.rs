//! End-to-end HTTP/1.1 behaviour of the control socket: keep-alive, pipelining, chunked
//! bodies, 100-continue, HTTP/1.0 with half-close, stray blank lines, Host checks, limits,
//! timeouts and the connection cap. Every malformed request gets its 4xx and the daemon
//! keeps serving the next client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;

fn status_line(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let d = Daemon::start();
    let mut s = d.connect();
    let mut carry = Vec::new();
    for _ in 0..50 {
        send_request(&mut s, "GET", "/steps", b"");
        let r = read_reply_buffered(&mut s, &mut carry);
        assert_eq!(r.status, 200);
        assert_eq!(r.json()[0]["name"], "0");
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let d = Daemon::start();
    let mut s = d.connect();
    let batch = "GET /user-meta HTTP/1.1\r\nHost: localhost\r\n\r\n\
                 PUT /user-meta/color HTTP/1.1\r\nContent-Length: 4\r\n\r\nblue\
                 GET /user-meta HTTP/1.1\r\n\r\n\
                 GET /nope HTTP/1.1\r\n\r\n";
    s.write_all(batch.as_bytes()).unwrap();
    let mut carry = Vec::new();
    let replies: Vec<(u16, String)> = (0..4)
        .map(|_| read_reply_buffered(&mut s, &mut carry).sb())
        .collect();
    assert_eq!(
        replies,
        vec![
            (200, "{}".to_string()),
            (200, String::new()),
            (200, r#"{"color":"blue"}"#.to_string()),
            (400, r#"{"Error":"unknown endpoint: /nope"}"#.to_string()),
        ]
    );
}

#[test]
fn chunked_object_upload_in_odd_pieces_is_stored() {
    let d = Daemon::start();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let sha = sha256_hex(&data);
    let mut wire = format!(
        "PUT /objects/{sha} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for piece in data.chunks(9_999) {
        wire.extend_from_slice(format!("{:X};ext=1\r\n", piece.len()).as_bytes());
        wire.extend_from_slice(piece);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\nX-Trailer: yes\r\n\r\n");
    let mut s = d.connect();
    for part in wire.chunks(777) {
        s.write_all(part).unwrap();
    }
    assert_eq!(read_reply(&mut s).status, 200);
    let listed = d.get("/objects").json();
    assert_eq!(listed[0]["sha256"], sha.as_str());
    assert_eq!(listed[0]["size"], "100000");
    assert_eq!(d.get(&format!("/objects/{sha}")).body, data);
}

#[test]
fn expect_100_continue_is_answered_only_when_asked() {
    let d = Daemon::start();
    let body = b"continue-me";
    let sha = sha256_hex(body);
    let mut s = d.connect();
    write!(
        s,
        "PUT /objects/{sha} HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(body).unwrap();
    assert_eq!(read_reply(&mut s).status, 200);

    // Without Expect, the first bytes back are the final answer.
    let mut s = d.connect();
    send_request(&mut s, "PUT", "/user-meta/k", b"v");
    let mut carry = Vec::new();
    let r = read_reply_buffered(&mut s, &mut carry);
    assert_eq!(r.status, 200);
    assert!(carry.is_empty());
}

#[test]
fn expect_100_continue_for_a_refused_request_gets_only_the_final_answer() {
    let d = Daemon::start();
    let mut s = d.connect();
    s.write_all(
        b"PUT /objects/nothex HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5000000\r\n\r\n",
    )
    .unwrap();
    let r = read_reply(&mut s);
    assert_eq!(
        r.sb(),
        (
            400,
            r#"{"Error":"Request has bad object name"}"#.to_string()
        )
    );
    assert_eq!(r.header("connection"), Some("close"));
}

#[test]
fn http10_put_with_half_close_gets_the_whole_answer() {
    // pvcurl: HTTP/1.0, Content-Length, then `nc -N` shuts down its write side.
    let d = Daemon::start();
    let raw = d.raw(b"PUT /user-meta/greeting HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
    assert!(text.contains("Connection: close\r\n"), "{text}");
    assert_eq!(d.get("/user-meta").text(), r#"{"greeting":"hello"}"#);
}

#[test]
fn http10_get_is_answered_then_closed() {
    let d = Daemon::start();
    let mut s = d.connect();
    s.write_all(b"GET /steps HTTP/1.0\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
    assert!(text.contains("\"name\":\"0\""), "{text}");
}

#[test]
fn http10_keep_alive_is_honoured() {
    let d = Daemon::start();
    let mut s = d.connect();
    let mut carry = Vec::new();
    for _ in 0..3 {
        s.write_all(b"GET /user-meta HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let r = read_reply_buffered(&mut s, &mut carry);
        assert_eq!(r.sb(), (200, "{}".to_string()));
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
}

#[test]
fn stray_blank_lines_around_requests_are_tolerated() {
    let d = Daemon::start();
    let mut s = d.connect();
    // pvtx sends an extra CRLF after a GET's headers; then the next request follows.
    s.write_all(
        b"\r\nGET /user-meta HTTP/1.1\r\nhost: localhost\r\n\r\n\r\nGET /steps HTTP/1.1\r\n\r\n",
    )
    .unwrap();
    let mut carry = Vec::new();
    assert_eq!(read_reply_buffered(&mut s, &mut carry).status, 200);
    assert_eq!(read_reply_buffered(&mut s, &mut carry).status, 200);
}

#[test]
fn host_other_than_localhost_is_refused() {
    let d = Daemon::start();
    for (host, want) in [
        ("localhost", 200),
        ("", 200),
        ("LOCALHOST", 200),
        ("evil.example", 400),
        ("10.0.0.1", 400),
    ] {
        let mut s = d.connect();
        write!(s, "GET /steps HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
        let r = read_reply(&mut s);
        assert_eq!(r.status, want, "Host: {host}");
        if want == 400 {
            assert_eq!(r.text(), r#"{"Error":"Host not allowed"}"#);
            assert!(is_closed(&mut s));
        }
    }
}

fn assert_still_serving(d: &Daemon) {
    assert_eq!(
        d.get("/steps").status,
        200,
        "daemon stopped serving:\n{}",
        d.log_text()
    );
}

#[test]
fn malformed_requests_get_their_4xx_and_the_daemon_keeps_serving() {
    let d = Daemon::start();
    let long_header = format!("GET /steps HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(9000));
    let many_headers = format!(
        "GET /steps HTTP/1.1\r\n{}\r\n",
        (0..40).map(|i| format!("X-{i}: v\r\n")).collect::<String>()
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("bad request line", b"GARBAGE\r\n\r\n".to_vec(), "HTTP/1.1 400"),
        ("bad version", b"GET /steps HTTP/9.9\r\n\r\n".to_vec(), "HTTP/1.1 400"),
        ("relative target", b"GET steps HTTP/1.1\r\n\r\n".to_vec(), "HTTP/1.1 400"),
        ("oversized header", long_header.into_bytes(), "HTTP/1.1 431"),
        ("too many headers", many_headers.into_bytes(), "HTTP/1.1 431"),
        ("negative length", b"PUT /user-meta/k HTTP/1.1\r\nContent-Length: -1\r\n\r\n".to_vec(), "HTTP/1.1 400"),
        (
            "huge length",
            b"PUT /user-meta/k HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n".to_vec(),
            "HTTP/1.1 400",
        ),
        (
            "length and chunked",
            b"PUT /user-meta/k HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            "HTTP/1.1 400",
        ),
        ("coding not ending in chunked", b"PUT /user-meta/k HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(), "HTTP/1.1 400"),
        ("unknown coding", b"PUT /user-meta/k HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".to_vec(), "HTTP/1.1 501"),
        (
            "bad chunk size",
            b"PUT /user-meta/k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n".to_vec(),
            "HTTP/1.1 400",
        ),
        (
            "missing chunk CRLF",
            b"PUT /user-meta/k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n".to_vec(),
            "HTTP/1.1 400",
        ),
        (
            "meta value too big",
            format!("PUT /user-meta/k HTTP/1.1\r\nContent-Length: 5000\r\n\r\n{}", "v".repeat(5000)).into_bytes(),
            "HTTP/1.1 413",
        ),
        ("traversal in objects", b"GET /objects/../../etc/passwd HTTP/1.1\r\n\r\n".to_vec(), "HTTP/1.1 400"),
        (
            "traversal in steps",
            b"PUT /steps/locals/../x HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}".to_vec(),
            "HTTP/1.1 400",
        ),
    ];
    for (what, wire, want) in cases {
        let raw = d.raw(&wire);
        let line = status_line(&raw);
        assert!(line.starts_with(want), "{what}: got {line:?}");
        let text = String::from_utf8_lossy(&raw);
        assert!(
            text.contains("{\"Error\":\""),
            "{what}: error body missing in {text}"
        );
        assert_still_serving(&d);
    }
    // Nothing the malformed requests carried was stored.
    assert_eq!(d.get("/user-meta").text(), "{}");
}

#[test]
fn oversized_chunked_body_is_413_and_closes() {
    let d = Daemon::start();
    let mut s = d.connect();
    let mut wire =
        b"PUT /steps/locals/x/commitmsg HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..10 {
        wire.extend_from_slice(b"40\r\n");
        wire.extend_from_slice(&[b'm'; 64]);
        wire.extend_from_slice(b"\r\n");
    }
    s.write_all(&wire).unwrap();
    let r = read_reply(&mut s);
    assert_eq!(
        r.sb(),
        (
            413,
            r#"{"Error":"Request body too large (limit 256 bytes)"}"#.to_string()
        )
    );
    assert!(is_closed(&mut s));
    assert_still_serving(&d);
}

#[test]
fn refused_upload_answer_survives_a_client_that_keeps_sending() {
    // A 413 sent while the client is still writing must not be lost to a connection reset.
    let d = Daemon::start();
    let mut s = d.connect();
    let mut writer = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(b"PUT /user-meta/k HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n");
        let block = vec![b'x'; 65536];
        for _ in 0..30 {
            if writer.write_all(&block).is_err() {
                break;
            }
        }
    });
    let r = read_reply(&mut s);
    assert_eq!(r.status, 413);
    let _ = sender.join();
    assert_still_serving(&d);
}

#[test]
fn stalled_request_times_out_with_408() {
    let d = Daemon::start_with(Opts::default().set("TERN_CTRL_REQUEST_TIMEOUT=1"));
    let mut s = d.connect();
    s.write_all(b"PUT /user-meta/k HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
        .unwrap();
    let r = read_reply(&mut s);
    assert_eq!(r.sb(), (408, r#"{"Error":"Request timeout"}"#.to_string()));
    assert!(is_closed(&mut s));
    assert_eq!(d.get("/user-meta").text(), "{}");
}

#[test]
fn idle_connection_is_closed_after_the_idle_timeout() {
    let d = Daemon::start_with(Opts::default().set("TERN_CTRL_IDLE_TIMEOUT=1"));
    let mut s = d.connect();
    send_request(&mut s, "GET", "/steps", b"");
    assert_eq!(read_reply(&mut s).status, 200);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(is_closed(&mut s));
}

#[test]
fn connection_cap_closes_the_oldest_idle_connection_first() {
    let d = Daemon::start_with(Opts::default().set("TERN_CTRL_MAX_CONNECTIONS=4"));
    let mut idle: Vec<_> = (0..4)
        .map(|_| {
            let mut s = d.connect();
            send_request(&mut s, "GET", "/steps", b"");
            assert_eq!(read_reply(&mut s).status, 200);
            std::thread::sleep(Duration::from_millis(20));
            s
        })
        .collect();
    // A fifth client is served, at the cost of the connection idle the longest.
    assert_eq!(d.get("/steps").status, 200);
    assert!(is_closed(&mut idle[0]));
    send_request(&mut idle[3], "GET", "/steps", b"");
    assert_eq!(read_reply(&mut idle[3]).status, 200);
}

#[test]
fn connection_cap_with_every_connection_busy_answers_503() {
    let d = Daemon::start_with(Opts::default().set("TERN_CTRL_MAX_CONNECTIONS=2"));
    let mut busy: Vec<_> = (0..2)
        .map(|_| {
            let mut s = d.connect();
            s.write_all(b"GET /steps HTTP/1.1\r\n").unwrap(); // head never finished
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let r = d.get("/steps");
    assert_eq!(
        r.sb(),
        (503, r#"{"Error":"Too many connections"}"#.to_string())
    );
    // The busy clients are unharmed and finish their requests.
    for s in busy.iter_mut() {
        s.write_all(b"\r\n").unwrap();
        assert_eq!(read_reply(s).status, 200);
    }
}

#[test]
fn a_client_that_does_not_read_does_not_stall_others() {
    let d = Daemon::start();
    let data = vec![7u8; 4 * 1024 * 1024];
    let sha = sha256_hex(&data);
    assert_eq!(d.put(&format!("/objects/{sha}"), &data).status, 200);
    // Ask for the 4 MiB object many times over and never read the answers.
    let mut hog = d.connect();
    for _ in 0..20 {
        write!(hog, "GET /objects/{sha} HTTP/1.1\r\n\r\n").unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..20 {
        assert_eq!(d.get("/steps").status, 200);
    }
    // The daemon did not buffer the 80 MiB the hog asked for.
    assert!(
        d.status_kb("VmRSS:") < 32 * 1024,
        "VmRSS {} kB",
        d.status_kb("VmRSS:")
    );
}

#[test]
fn a_client_queued_while_descriptors_ran_out_is_served_once_one_frees() {
    let d = Daemon::start();
    let first: Vec<_> = (0..2)
        .map(|_| {
            let mut s = d.connect();
            send_request(&mut s, "GET", "/steps", b"");
            assert_eq!(read_reply(&mut s).status, 200);
            s
        })
        .collect();
    // Let the daemon see every earlier client hang up, so its descriptor table is settled.
    assert_eq!(d.get("/steps").status, 200);
    std::thread::sleep(Duration::from_millis(200));
    // RLIMIT_NOFILE caps descriptor numbers: allow none beyond the lowest free one.
    let used: Vec<usize> = std::fs::read_dir(format!("/proc/{}/fd", d.pid()))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let lowest_free = (0..).find(|n| !used.contains(n)).unwrap();
    let ok = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", d.pid()))
        .arg(format!("--nofile={lowest_free}:{lowest_free}"))
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: prlimit is not available to lower the daemon's descriptor limit");
        return;
    }
    // The third client is queued in the backlog: the daemon cannot accept it yet.
    let mut third = d.connect();
    send_request(&mut third, "GET", "/steps", b"");
    third
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut b = [0u8; 1];
    assert!(
        third.read(&mut b).is_err(),
        "answered although no descriptor was free"
    );
    drop(first);
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(read_reply(&mut third).status, 200);
}
