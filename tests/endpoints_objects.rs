//! `/objects` end to end: the list's shape (`[{"sha256":"…","size":"<string>"}]`), uploads
//! checked against their name, downloads framed chunked for HTTP/1.1 and close-delimited for
//! HTTP/1.0, Pantavisor's error bodies (422 bad checksum, 400 bad name — also for a missing
//! object —, 400 unknown endpoint for `..`, 507 no space both up front and on ENOSPC), that a
//! failed upload leaves no file or temp file in `<storage>/objects/`, and that a 200 MiB object
//! moves through the daemon in memory that does not grow with the object.
//!
//! Downloads are decoded here with a small strict decoder of this file's own, not with Tern's
//! framing code, so a framing bug in Tern cannot hide itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};

const SMALL: &[u8] = b"hello pvctrl object test\n";
const SMALL_SHA: &str = "ff392d69694b5d126342a1631f140b64881e726f9fa6714a3665a8df3b030976";
const BAD_NAME: &str = r#"{"Error":"Request has bad object name"}"#;
const NO_SPACE: &str = r#"{"Error":"Not enough disk space available"}"#;

fn objects_dir(d: &Daemon) -> std::path::PathBuf {
    d.storage.join("objects")
}

/// Everything the daemon sends until it closes, without half-closing our side first.
fn read_to_close(s: &mut UnixStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .expect("daemon closes the connection");
    out
}

/// Split a raw response into status line, headers and the raw body bytes.
fn split_response(raw: &[u8]) -> (String, Vec<(String, String)>, Vec<u8>) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8(raw[..end].to_vec()).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_string();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header has a colon");
            (n.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    (status, headers, raw[end + 4..].to_vec())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Strict chunked decoding of a complete body: every chunk, the last-chunk and the final CRLF.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line ends in CRLF");
        let line = std::str::from_utf8(&raw[..eol]).unwrap();
        let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
        raw = &raw[eol + 2..];
        if size == 0 {
            assert_eq!(
                raw, b"\r\n",
                "no trailers, then the final CRLF, then nothing"
            );
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        assert_eq!(&raw[size..size + 2], b"\r\n", "chunk data ends in CRLF");
        raw = &raw[size + 2..];
    }
}

#[test]
fn objects_list_of_a_fresh_storage_is_an_empty_array() {
    let d = Daemon::start();
    let r = d.get("/objects");
    assert_eq!(r.sb(), (200, "[]".to_string()));
    assert_eq!(r.header("content-type"), Some("application/json"));
}

#[test]
fn objects_list_entries_are_sha256_then_size_as_a_decimal_string() {
    let d = Daemon::start();
    assert_eq!(
        d.put(&format!("/objects/{SMALL_SHA}"), SMALL).sb(),
        (200, String::new())
    );
    assert_eq!(
        d.get("/objects").text(),
        format!(r#"[{{"sha256":"{SMALL_SHA}","size":"25"}}]"#)
    );
    let big = vec![b'x'; 2 * 1024 * 1024];
    let big_sha = sha256_hex(&big);
    assert_eq!(d.put(&format!("/objects/{big_sha}"), &big).status, 200);
    let list = ordered_array(&d.get("/objects").text());
    assert_eq!(list.len(), 2);
    for o in &list {
        assert_eq!(o.keys(), ["sha256", "size"], "{o:?}");
    }
    let mut got: Vec<(String, serde_json::Value)> = list
        .iter()
        .map(|o| (o.0[0].1.as_str().unwrap().to_string(), o.0[1].1.clone()))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want = vec![
        (SMALL_SHA.to_string(), serde_json::json!("25")),
        (big_sha, serde_json::json!("2097152")),
    ];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, want);
}

#[test]
fn uploaded_object_downloads_byte_exact_chunked_to_http11() {
    let d = Daemon::start();
    assert_eq!(d.put(&format!("/objects/{SMALL_SHA}"), SMALL).status, 200);
    assert_eq!(
        std::fs::read(objects_dir(&d).join(SMALL_SHA)).unwrap(),
        SMALL
    );
    let mut s = d.connect();
    write!(
        s,
        "GET /objects/{SMALL_SHA} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let (status, headers, body) = split_response(&read_to_close(&mut s));
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(header(&headers, "transfer-encoding"), Some("chunked"));
    assert_eq!(header(&headers, "content-length"), None);
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(dechunk(&body), SMALL);
    // And through the shared client, on a keep-alive connection.
    let r = d.get(&format!("/objects/{SMALL_SHA}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, SMALL);
}

#[test]
fn object_download_to_http10_is_close_delimited() {
    let d = Daemon::start();
    assert_eq!(d.put(&format!("/objects/{SMALL_SHA}"), SMALL).status, 200);
    let mut s = d.connect();
    // No half-close: the end of the body must come from the daemon closing.
    write!(
        s,
        "GET /objects/{SMALL_SHA} HTTP/1.0\r\nHost: localhost\r\n\r\n"
    )
    .unwrap();
    let (status, headers, body) = split_response(&read_to_close(&mut s));
    assert_eq!(status, "HTTP/1.0 200 OK");
    assert_eq!(header(&headers, "transfer-encoding"), None);
    assert_eq!(header(&headers, "content-length"), None);
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(body, SMALL);
}

#[test]
fn pvcurl_style_object_upload_is_stored() {
    // pvcontrol `objects put`: HTTP/1.0 through nc with a half-close, Content-Length plus
    // `Transfer-Encoding: identity` and an octet-stream type; the answer comes after EOF.
    let d = Daemon::start();
    let mut req = format!(
        "PUT /objects/{SMALL_SHA} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: identity\r\nContent-Length: {}\r\n\r\n",
        SMALL.len()
    )
    .into_bytes();
    req.extend_from_slice(SMALL);
    let (status, _, body) = split_response(&d.raw(&req));
    assert_eq!(status, "HTTP/1.0 200 OK");
    assert_eq!(body, b"");
    assert_eq!(
        d.get("/objects").text(),
        format!(r#"[{{"sha256":"{SMALL_SHA}","size":"25"}}]"#)
    );
}

#[test]
fn two_clients_uploading_the_same_object_at_once_both_get_200() {
    let d = Daemon::start();
    let data = vec![3u8; 1024 * 1024];
    let sha = sha256_hex(&data);
    let head = format!(
        "PUT /objects/{sha} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        data.len()
    );
    let mut a = d.connect();
    let mut b = d.connect();
    a.write_all(head.as_bytes()).unwrap();
    b.write_all(head.as_bytes()).unwrap();
    // Interleave the two bodies so both uploads are open at once.
    for (pa, pb) in data.chunks(128 * 1024).zip(data.chunks(128 * 1024)) {
        a.write_all(pa).unwrap();
        b.write_all(pb).unwrap();
    }
    assert_eq!(read_reply(&mut a).sb(), (200, String::new()));
    assert_eq!(read_reply(&mut b).sb(), (200, String::new()));
    assert_eq!(dir_names(&objects_dir(&d)), vec![sha.clone()]);
    assert_eq!(sha256_hex(&d.get(&format!("/objects/{sha}")).body), sha);
}

#[test]
fn object_with_wrong_checksum_is_422_and_leaves_nothing() {
    let d = Daemon::start();
    let r = d.put(
        &format!("/objects/{}", "a".repeat(64)),
        b"checksum mismatch payload\n",
    );
    assert_eq!(
        r.sb(),
        (422, r#"{"Error":"Object has bad checksum"}"#.to_string())
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    // A real name with the wrong bytes: refused too, and the right bytes then go in.
    let r = d.put(&format!("/objects/{SMALL_SHA}"), b"not the small object\n");
    assert_eq!(r.status, 422, "{r:?}");
    assert_eq!(d.get("/objects").text(), "[]");
    assert_eq!(dir_names(&objects_dir(&d)), Vec::<String>::new());
    assert_eq!(d.put(&format!("/objects/{SMALL_SHA}"), SMALL).status, 200);
    assert_eq!(dir_names(&objects_dir(&d)), vec![SMALL_SHA.to_string()]);
}

#[test]
fn reupload_of_an_existing_object_is_200_and_count_unchanged() {
    let d = Daemon::start();
    assert_eq!(d.put(&format!("/objects/{SMALL_SHA}"), SMALL).status, 200);
    let before = d.get("/objects").text();
    // On one keep-alive connection: the re-upload's body is drained, so the next request on
    // the same connection is read correctly.
    let mut s = d.connect();
    let mut carry = Vec::new();
    send_request(&mut s, "PUT", &format!("/objects/{SMALL_SHA}"), SMALL);
    assert_eq!(
        read_reply_buffered(&mut s, &mut carry).sb(),
        (200, String::new())
    );
    // Even other bytes under the held name: drained and answered 200, the object untouched.
    send_request(
        &mut s,
        "PUT",
        &format!("/objects/{SMALL_SHA}"),
        b"some other bytes",
    );
    assert_eq!(read_reply_buffered(&mut s, &mut carry).status, 200);
    send_request(&mut s, "GET", "/objects", b"");
    let r = read_reply_buffered(&mut s, &mut carry);
    assert_eq!(r.text(), before);
    assert_eq!(d.get("/objects").json().as_array().unwrap().len(), 1);
    assert_eq!(dir_names(&objects_dir(&d)), vec![SMALL_SHA.to_string()]);
    assert_eq!(
        std::fs::read(objects_dir(&d).join(SMALL_SHA)).unwrap(),
        SMALL
    );
}

#[test]
fn object_name_that_is_not_64_hex_is_400_bad_object_name() {
    let d = Daemon::start();
    let names = [
        "abc".to_string(),
        "a".repeat(63),
        "a".repeat(65),
        "g".repeat(64),
        format!("{SMALL_SHA}x"),
        ".tmp-x".to_string(),
    ];
    for name in &names {
        assert_eq!(
            d.put(&format!("/objects/{name}"), SMALL).sb(),
            (400, BAD_NAME.to_string()),
            "PUT {name}"
        );
        assert_eq!(
            d.get(&format!("/objects/{name}")).sb(),
            (400, BAD_NAME.to_string()),
            "GET {name}"
        );
    }
    assert_eq!(dir_names(&objects_dir(&d)), Vec::<String>::new());
}

#[test]
fn get_of_a_missing_object_is_400_bad_object_name_not_404() {
    let d = Daemon::start();
    let r = d.get(&format!("/objects/{}", "b".repeat(64)));
    assert_eq!(r.sb(), (400, BAD_NAME.to_string()));
    assert_eq!(r.header("content-type"), Some("application/json"));
}

#[test]
fn dotdot_object_path_is_400_unknown_endpoint() {
    let d = Daemon::start();
    for method in ["GET", "PUT"] {
        let raw = d.raw(
            format!(
                "{method} /objects/../../etc/passwd HTTP/1.0\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        );
        let (status, _, body) = split_response(&raw);
        assert_eq!(status, "HTTP/1.0 400 Bad Request", "{method}");
        assert_eq!(
            String::from_utf8_lossy(&body),
            r#"{"Error":"unknown endpoint: /objects/../../etc/passwd"}"#,
            "{method}"
        );
    }
    // Percent-encoded slashes are not decoded into a path: just a bad name.
    assert_eq!(
        d.get("/objects/..%2F..%2Fetc%2Fpasswd").sb(),
        (400, BAD_NAME.to_string())
    );
    assert_eq!(dir_names(&objects_dir(&d)), Vec::<String>::new());
}

#[test]
fn object_declared_larger_than_free_space_is_507_closes_and_writes_nothing() {
    let d = Daemon::start();
    let mut s = d.connect();
    // The head alone, declaring 2^60 bytes; no body is ever sent.
    write!(
        s,
        "PUT /objects/{} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        "c".repeat(64),
        1u64 << 60
    )
    .unwrap();
    let r = read_reply(&mut s);
    assert_eq!(r.sb(), (507, NO_SPACE.to_string()));
    assert!(
        daemon_closed(&mut s),
        "connection must be closed after the 507"
    );
    assert_eq!(dir_names(&objects_dir(&d)), Vec::<String>::new());
    assert_eq!(d.get("/objects").sb(), (200, "[]".to_string()));
}

/// Unmounts (lazily) on drop, so a failing test does not leave the mount behind.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount_small_tmpfs(at: &Path) -> Option<Unmount> {
    std::fs::create_dir_all(at).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tern-test-enospc"])
        .arg(at)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| Unmount(at.to_path_buf()))
}

#[test]
fn object_that_runs_out_of_disk_while_writing_is_507_and_leaves_no_temp_file() {
    let dir = TempDir::new("enospc");
    let storage = dir.path().join("small");
    let Some(_mount) = mount_small_tmpfs(&storage) else {
        eprintln!("SKIPPED: cannot mount a 1 MiB tmpfs (needs root and mount(8))");
        return;
    };
    let d = Daemon::start_with(
        Opts::default()
            .arg("--storage")
            .arg(storage.to_str().unwrap()),
    );
    let data = vec![5u8; 2 * 1024 * 1024];
    let sha = sha256_hex(&data);

    // Declared up front: refused before a byte is written.
    let mut s = d.connect();
    write!(
        s,
        "PUT /objects/{sha} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        data.len()
    )
    .unwrap();
    assert_eq!(read_reply(&mut s).sb(), (507, NO_SPACE.to_string()));
    assert!(daemon_closed(&mut s));

    // Chunked, so only the write itself can find out: ENOSPC half-way.
    let mut body = Vec::new();
    for piece in data.chunks(64 * 1024) {
        body.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        body.extend_from_slice(piece);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let (r, mut s) = send_racing(
        &d,
        &format!(
            "PUT /objects/{sha} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
        ),
        body,
    );
    assert_eq!(r.sb(), (507, NO_SPACE.to_string()));
    assert!(daemon_closed(&mut s));
    let objects = storage.join("objects");
    assert!(
        wait_for(Duration::from_secs(2), || dir_names(&objects).is_empty()),
        "left in objects/: {:?}",
        dir_names(&objects)
    );
    // The space came back: the daemon keeps serving and a small object fits.
    assert_eq!(d.get("/objects").sb(), (200, "[]".to_string()));
    assert_eq!(d.put(&format!("/objects/{SMALL_SHA}"), SMALL).status, 200);
    drop(d);
}

const BLOCK: usize = 64 * 1024;
const BLOCKS: usize = 3200; // 200 MiB

/// Block `i` of the generated 200 MiB object: a fixed pseudo-random pattern stamped with `i`.
fn fill_block(pattern: &[u8], i: usize, out: &mut [u8]) {
    out.copy_from_slice(pattern);
    out[..8].copy_from_slice(&(i as u64).to_le_bytes());
}

fn pattern() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..BLOCK)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn a_200_mib_object_streams_in_and_out_in_bounded_memory() {
    let d = Daemon::start();
    let pattern = pattern();
    let mut block = vec![0u8; BLOCK];
    let mut hasher = Sha256::new();
    for i in 0..BLOCKS {
        fill_block(&pattern, i, &mut block);
        hasher.update(&block);
    }
    let sha = tern::store::objects::hex(&hasher.finalize());
    let total = (BLOCK * BLOCKS) as u64;
    assert_eq!(total, 209_715_200);

    let mut s = d.connect();
    write!(
        s,
        "PUT /objects/{sha} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {total}\r\n\r\n"
    )
    .unwrap();
    for i in 0..BLOCKS {
        fill_block(&pattern, i, &mut block);
        s.write_all(&block).unwrap();
    }
    assert_eq!(read_reply(&mut s).sb(), (200, String::new()));
    let after_upload = d.status_kb("VmHWM:");
    assert_eq!(
        d.get("/objects").text(),
        format!(r#"[{{"sha256":"{sha}","size":"209715200"}}]"#)
    );

    // Download over HTTP/1.1 (chunked), hashing each chunk as it arrives.
    let mut s = d.connect();
    write!(s, "GET /objects/{sha} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut rd = BufReader::with_capacity(BLOCK, s);
    let mut line = String::new();
    rd.read_line(&mut line).unwrap();
    assert_eq!(line, "HTTP/1.1 200 OK\r\n");
    let mut chunked = false;
    loop {
        line.clear();
        rd.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if line.eq_ignore_ascii_case("transfer-encoding: chunked\r\n") {
            chunked = true;
        }
    }
    assert!(chunked, "HTTP/1.1 download must be chunked");
    let mut hasher = Sha256::new();
    let mut received = 0u64;
    let mut buf = vec![0u8; BLOCK];
    loop {
        line.clear();
        rd.read_line(&mut line).unwrap();
        let size = u64::from_str_radix(line.trim_end().split(';').next().unwrap(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
        if size == 0 {
            line.clear();
            rd.read_line(&mut line).unwrap();
            assert_eq!(line, "\r\n");
            break;
        }
        let mut left = size as usize;
        while left > 0 {
            let n = left.min(buf.len());
            rd.read_exact(&mut buf[..n]).unwrap();
            hasher.update(&buf[..n]);
            left -= n;
        }
        received += size;
        let mut crlf = [0u8; 2];
        rd.read_exact(&mut crlf).unwrap();
        assert_eq!(&crlf, b"\r\n");
    }
    assert_eq!(received, total);
    assert_eq!(tern::store::objects::hex(&hasher.finalize()), sha);
    let after_download = d.status_kb("VmHWM:");
    assert!(
        after_upload > 0 && after_upload < 20 * 1024,
        "daemon peak RSS {after_upload} kB after a 200 MiB upload"
    );
    assert!(
        after_download < 20 * 1024,
        "daemon peak RSS {after_download} kB after a 200 MiB download"
    );
}
