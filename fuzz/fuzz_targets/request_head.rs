//! Arbitrary bytes as the start of a connection's byte stream.
//!
//! Request side (`parse_request_head`), under the default limits and under tight ones:
//! - `Ok(Some((head, n)))`: `n <= buf.len()`, `n <= leading CR/LF run + max_head_bytes`, and
//!   parsing `buf[..n]` alone gives the same head and the same `n`; the head's own fields are
//!   consistent (target starts with `/`, 100-continue only on HTTP/1.1, no close-delimited
//!   request bodies); the method and path go through `tern::api::route`, whose answer must be a
//!   400 or a route whose names are safe path components; whatever follows the head goes through
//!   a `BodyDecoder` of the head's framing.
//! - `Ok(None)` (need more bytes): `buf.len() <= leading CR/LF run + max_head_bytes`.
//! - `Err(e)`: the status is one the server can answer with (400, 431 or 501).
//!
//! Response side (`parse_response_head`, the hub client's parser): the same size and re-parse
//! invariants, and bodiless statuses get no body.
//!
//! The raw input, when it is UTF-8, is also split at its first space into a method and a path
//! for the router, so the router sees paths httparse would refuse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern::api::{MetaKind, Route, route};
use tern::http::{
    BodyDecoder, BodyFraming, Limits, RequestHead, ResponseHead, Version, parse_request_head,
    parse_response_head,
};

/// Small limits so the fuzzer reaches every limit branch with short inputs.
fn tight_limits() -> Limits {
    Limits {
        max_head_bytes: 96,
        max_headers: 3,
        max_chunk_line: 8,
        max_trailer_bytes: 16,
    }
}

fn leading_crlf(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count()
}

/// Everything a request head says, so a re-parse can be compared as a whole.
fn request_fields(h: &RequestHead) -> impl PartialEq + std::fmt::Debug + '_ {
    let flags = (h.keep_alive, h.expect_continue);
    (
        &h.method, &h.target, h.version, &h.headers, h.framing, flags,
    )
}

/// Everything a response head says (neither head type has `PartialEq`).
fn response_fields(h: &ResponseHead) -> impl PartialEq + std::fmt::Debug + '_ {
    (h.status, h.version, &h.headers, h.framing, h.keep_alive)
}

fn check_request(buf: &[u8], limits: &Limits) {
    let blank = leading_crlf(buf);
    match parse_request_head(buf, limits) {
        Ok(Some((head, n))) => {
            assert!(n <= buf.len(), "used {n} of {} bytes", buf.len());
            assert!(n > blank, "a head cannot be only blank lines");
            assert!(
                n <= blank + limits.max_head_bytes,
                "head of {n} bytes ({blank} blank) over the {} limit",
                limits.max_head_bytes
            );
            assert!(head.headers.len() <= limits.max_headers);
            assert!(head.target.starts_with('/'));
            assert!(
                head.headers
                    .iter()
                    .all(|(name, _)| *name == name.to_ascii_lowercase())
            );
            assert!(!head.expect_continue || head.version == Version::Http11);
            assert_ne!(
                head.framing,
                BodyFraming::UntilClose,
                "request bodies are never close-delimited"
            );
            match parse_request_head(&buf[..n], limits) {
                Ok(Some((again, m))) => {
                    assert_eq!(
                        m, n,
                        "re-parse of the head's own bytes used a different length"
                    );
                    assert_eq!(
                        request_fields(&head),
                        request_fields(&again),
                        "head differs on re-parse"
                    );
                }
                other => panic!("head did not re-parse from its own {n} bytes: {other:?}"),
            }
            let path = head.path();
            match head.query() {
                Some(q) => assert_eq!(head.target, format!("{path}?{q}")),
                None => assert_eq!(head.target, path),
            }
            check_route(&head.method, path);
            decode_rest(head.framing, &buf[n..], limits);
        }
        Ok(None) => assert!(
            buf.len() <= blank + limits.max_head_bytes,
            "asked for more bytes with {} buffered ({blank} blank), limit {}",
            buf.len(),
            limits.max_head_bytes
        ),
        Err(e) => assert!(matches!(e.status(), 400 | 431 | 501), "{e:?}"),
    }
}

fn check_response(buf: &[u8], limits: &Limits, request_was_head: bool) {
    match parse_response_head(buf, limits, request_was_head) {
        Ok(Some((head, n))) => {
            assert!(
                n <= buf.len() && n <= limits.max_head_bytes,
                "response head used {n}"
            );
            assert!(head.headers.len() <= limits.max_headers);
            let bodiless = request_was_head
                || (100..200).contains(&head.status)
                || head.status == 204
                || head.status == 304;
            if bodiless {
                assert_eq!(head.framing, BodyFraming::Length(0));
            }
            if head.framing == BodyFraming::UntilClose {
                assert!(
                    !head.keep_alive,
                    "a close-delimited body cannot keep the connection"
                );
            }
            match parse_response_head(&buf[..n], limits, request_was_head) {
                Ok(Some((again, m))) => {
                    assert_eq!(m, n);
                    assert_eq!(
                        response_fields(&head),
                        response_fields(&again),
                        "response head differs on re-parse"
                    );
                }
                other => panic!("response head did not re-parse from its own {n} bytes: {other:?}"),
            }
            decode_rest(head.framing, &buf[n..], limits);
        }
        Ok(None) => assert!(buf.len() <= limits.max_head_bytes),
        Err(e) => assert!(matches!(e.status(), 400 | 431 | 501), "{e:?}"),
    }
}

/// Feed what follows a head to a decoder of its framing, the way the reactor does: call again
/// with the unconsumed rest until nothing is consumed or the body is done.
fn decode_rest(framing: BodyFraming, rest: &[u8], limits: &Limits) {
    let mut d = BodyDecoder::new(framing, limits);
    let mut pos = 0;
    for _ in 0..=rest.len() + 1 {
        let input = &rest[pos..];
        let Ok(step) = d.decode(input) else { return };
        assert!(step.consumed <= input.len());
        assert!(step.data.start <= step.data.end && step.data.end <= step.consumed);
        if let BodyFraming::Length(len) = framing {
            // A fixed-length body is the input itself, up to what is left of the length.
            assert_eq!(step.data.start, 0);
            assert!(step.data.len() as u64 <= len);
        }
        pos += step.consumed;
        if step.done {
            assert!(d.is_done());
            return;
        }
        if step.consumed == 0 {
            assert!(input.is_empty(), "decoder stalled on {} bytes", input.len());
            let eof = d.finish_at_eof();
            assert_eq!(eof.is_ok(), framing == BodyFraming::UntilClose);
            return;
        }
    }
    panic!("decoder did not terminate on {} bytes", rest.len());
}

/// The router must answer every method and path with a route or a 400, and a route only ever
/// carries names that are safe to use as path components under the storage.
fn check_route(method: &str, path: &str) {
    let r = match route(method, path) {
        Ok(r) => r,
        Err(e) => {
            assert_eq!(e.status, 400, "{method} {path:?}: {e:?}");
            return;
        }
    };
    let want = match &r {
        Route::ObjectPut(_)
        | Route::StepPut(_)
        | Route::CommitMsgPut(_)
        | Route::MetaPut(..)
        | Route::ContainerPut(_)
        | Route::DaemonPut(_)
        | Route::DriversPut { .. } => "PUT",
        Route::MetaDelete(..) => "DELETE",
        Route::Signal | Route::Commands | Route::StorageGc => "POST",
        Route::Programs { op, .. } => match op {
            tern::api::programs::Op::List => "GET",
            tern::api::programs::Op::Start => "PUT",
            tern::api::programs::Op::Stop => "DELETE",
            tern::api::programs::Op::Restart => "POST",
        },
        _ => "GET",
    };
    assert_eq!(method, want, "{method} {path:?} routed to {r:?}");
    match &r {
        Route::ObjectGet(sha) | Route::ObjectPut(sha) => assert!(
            sha.len() == 64 && sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "{path:?} gave object name {sha:?}"
        ),
        Route::StepPut(rev) => {
            let name = rev
                .strip_prefix("locals/")
                .unwrap_or_else(|| panic!("{path:?} put {rev:?}"));
            assert!(safe_component(name), "{path:?} gave step name {rev:?}");
        }
        Route::StepGet(rev) | Route::ProgressGet(rev) | Route::CommitMsgPut(rev) => {
            let single = rev.strip_prefix("locals/").unwrap_or(rev);
            assert!(
                !single.is_empty() && !single.contains('/'),
                "{path:?} gave revision {rev:?}"
            );
        }
        Route::MetaPut(kind, key) | Route::MetaDelete(kind, key) => {
            let prefix = match kind {
                MetaKind::User => "/user-meta/",
                MetaKind::Device => "/device-meta/",
            };
            assert_eq!(path.strip_prefix(prefix), Some(key.as_str()));
            assert!(safe_component(key), "{path:?} gave meta key {key:?}");
        }
        _ => {}
    }
}

/// Written independently of the store's own check: not empty, not hidden, no separators, no
/// control bytes or spaces.
fn safe_component(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b > b' ' && b != 0x7f && b != b'/' && b != b'\\')
}

fuzz_target!(|data: &[u8]| {
    check_request(data, &Limits::default());
    check_request(data, &tight_limits());
    check_response(data, &Limits::default(), data.len() % 2 == 1);
    if let Ok(text) = std::str::from_utf8(data)
        && let Some((method, path)) = text.split_once(' ')
    {
        check_route(method, path);
    }
});
