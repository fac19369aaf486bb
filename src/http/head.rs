//! Request and response heads: httparse does the tokenising, this file decides what the head
//! means for the connection (body framing, keep-alive, 100-continue) and enforces the limits.

use super::error::HttpError;
use super::limits::{HEADER_SLOTS, Limits};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
    fn from_minor(minor: u8) -> Version {
        if minor == 0 {
            Version::Http10
        } else {
            Version::Http11
        }
    }
}

/// How the body that follows a head is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// Exactly this many bytes (0 for no body).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the peer closes (responses only).
    UntilClose,
}

#[derive(Clone, Debug)]
pub struct RequestHead {
    pub method: String,
    /// The request target as sent (path plus optional query).
    pub target: String,
    pub version: Version,
    /// Header names lowercased, values as sent (trimmed by httparse).
    pub headers: Vec<(String, Vec<u8>)>,
    pub framing: BodyFraming,
    pub keep_alive: bool,
    pub expect_continue: bool,
}

impl RequestHead {
    /// The first value of a header, by lowercase name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The path without its query string.
    pub fn path(&self) -> &str {
        match self.target.find('?') {
            Some(i) => &self.target[..i],
            None => &self.target,
        }
    }

    /// The raw query string, if any.
    pub fn query(&self) -> Option<&str> {
        self.target.find('?').map(|i| &self.target[i + 1..])
    }

    /// True when a body may follow the head (so it must be read or the connection closed).
    pub fn has_body(&self) -> bool {
        !matches!(self.framing, BodyFraming::Length(0))
    }
}

#[derive(Clone, Debug)]
pub struct ResponseHead {
    pub status: u16,
    pub version: Version,
    pub headers: Vec<(String, Vec<u8>)>,
    pub framing: BodyFraming,
    pub keep_alive: bool,
}

impl ResponseHead {
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// Bytes of stray CR/LF before a request line. Some clients (pvtx) send an extra CRLF after a
/// request without a body; RFC 9112 §2.2 asks servers to ignore at least one such empty line.
fn leading_blank_lines(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count()
}

/// Parse a request head from the start of `buf`.
///
/// `Ok(None)` means more bytes are needed. `Ok(Some((head, n)))` means the head (and any blank
/// lines before it) used the first `n` bytes of `buf`.
pub fn parse_request_head(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(RequestHead, usize)>, HttpError> {
    let skip = leading_blank_lines(buf);
    let rest = &buf[skip..];
    if rest.is_empty() {
        if buf.len() > limits.max_head_bytes {
            return Err(HttpError::HeadTooLarge);
        }
        return Ok(None);
    }
    let mut slots = [httparse::EMPTY_HEADER; HEADER_SLOTS];
    let mut req = httparse::Request::new(&mut slots);
    let used = match req.parse(rest) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if rest.len() > limits.max_head_bytes {
                return Err(HttpError::HeadTooLarge);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(e) => return Err(HttpError::BadRequest(httparse_reason(e))),
    };
    if used > limits.max_head_bytes || req.headers.len() > limits.max_headers {
        return Err(HttpError::HeadTooLarge);
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HttpError::BadRequest("incomplete request line"));
    };
    if !target.starts_with('/') {
        return Err(HttpError::BadRequest(
            "request target must be an absolute path",
        ));
    }
    let version = Version::from_minor(minor);
    let headers = collect_headers(req.headers);
    let framing = request_framing(&headers)?;
    // HTTP/1.0 has no chunked coding (RFC 9112 §6.1: treat it as faulty framing).
    if version == Version::Http10 && framing == BodyFraming::Chunked {
        return Err(HttpError::BadRequest("Transfer-Encoding in HTTP/1.0"));
    }
    let connection = header_tokens(&headers, "connection");
    let keep_alive = match version {
        Version::Http11 => !connection.iter().any(|t| t == "close"),
        Version::Http10 => connection.iter().any(|t| t == "keep-alive"),
    };
    let expect_continue = version == Version::Http11
        && headers
            .iter()
            .any(|(n, v)| n == "expect" && v.eq_ignore_ascii_case(b"100-continue"));
    let head = RequestHead {
        method: method.to_string(),
        target: target.to_string(),
        version,
        headers,
        framing,
        keep_alive,
        expect_continue,
    };
    Ok(Some((head, skip + used)))
}

/// Parse a response head (the hub client's side of the same framing).
/// `request_was_head` tells whether the request was HEAD, whose answers carry no body.
pub fn parse_response_head(
    buf: &[u8],
    limits: &Limits,
    request_was_head: bool,
) -> Result<Option<(ResponseHead, usize)>, HttpError> {
    let mut slots = [httparse::EMPTY_HEADER; HEADER_SLOTS];
    let mut resp = httparse::Response::new(&mut slots);
    let used = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_head_bytes {
                return Err(HttpError::HeadTooLarge);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(e) => return Err(HttpError::BadRequest(httparse_reason(e))),
    };
    if used > limits.max_head_bytes || resp.headers.len() > limits.max_headers {
        return Err(HttpError::HeadTooLarge);
    }
    let (Some(status), Some(minor)) = (resp.code, resp.version) else {
        return Err(HttpError::BadRequest("incomplete status line"));
    };
    let version = Version::from_minor(minor);
    let headers = collect_headers(resp.headers);
    let no_body =
        request_was_head || (100..200).contains(&status) || status == 204 || status == 304;
    let framing = if no_body {
        BodyFraming::Length(0)
    } else {
        match transfer_framing(&headers)? {
            Some(f) => f,
            None => match content_length(&headers, false)? {
                Some(n) => BodyFraming::Length(n),
                None => BodyFraming::UntilClose,
            },
        }
    };
    let connection = header_tokens(&headers, "connection");
    let keep_alive = framing != BodyFraming::UntilClose
        && match version {
            Version::Http11 => !connection.iter().any(|t| t == "close"),
            Version::Http10 => connection.iter().any(|t| t == "keep-alive"),
        };
    Ok(Some((
        ResponseHead {
            status,
            version,
            headers,
            framing,
            keep_alive,
        },
        used,
    )))
}

fn collect_headers(raw: &[httparse::Header<'_>]) -> Vec<(String, Vec<u8>)> {
    raw.iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .collect()
}

/// Comma-separated tokens of every instance of a header, lowercased.
fn header_tokens(headers: &[(String, Vec<u8>)], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n == name)
        .flat_map(|(_, v)| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Transfer-Encoding decides the framing when it names chunked; `identity` (which pvcontrol
/// sends together with Content-Length on object uploads) means "no coding" and is ignored.
fn transfer_framing(headers: &[(String, Vec<u8>)]) -> Result<Option<BodyFraming>, HttpError> {
    let codings = header_tokens(headers, "transfer-encoding");
    let codings: Vec<&String> = codings.iter().filter(|c| *c != "identity").collect();
    let chunked = codings.iter().filter(|c| c.as_str() == "chunked").count();
    match codings.as_slice() {
        [] => Ok(None),
        [only] if only.as_str() == "chunked" => Ok(Some(BodyFraming::Chunked)),
        // RFC 9112 §6.3: a request whose final coding is not chunked (or that applies
        // chunked twice) has no reliable length: 400 and close.
        [.., last] if last.as_str() != "chunked" || chunked > 1 => Err(HttpError::BadRequest(
            "Transfer-Encoding must end in a single chunked",
        )),
        _ => Err(HttpError::UnsupportedEncoding),
    }
}

/// `strict` (requests): even equal duplicates are refused. Responses may repeat the value.
fn content_length(headers: &[(String, Vec<u8>)], strict: bool) -> Result<Option<u64>, HttpError> {
    let mut found: Option<u64> = None;
    for (_, value) in headers.iter().filter(|(n, _)| n == "content-length") {
        let n = parse_decimal(value).ok_or(HttpError::BadRequest("invalid Content-Length"))?;
        // Even equal duplicates are refused in requests: a proxy in front may have read the
        // other one.
        if found.is_some_and(|f| strict || f != n) {
            return Err(HttpError::BadRequest("duplicate Content-Length headers"));
        }
        found = Some(n);
    }
    Ok(found)
}

fn request_framing(headers: &[(String, Vec<u8>)]) -> Result<BodyFraming, HttpError> {
    let length = content_length(headers, true)?;
    match transfer_framing(headers)? {
        // A message with both is a request-smuggling vector (RFC 9112 §6.1): refuse it.
        Some(_) if length.is_some() => {
            Err(HttpError::BadRequest("both Content-Length and chunked"))
        }
        Some(f) => Ok(f),
        None => Ok(BodyFraming::Length(length.unwrap_or(0))),
    }
}

/// Strict decimal: digits only, no sign, no blanks, no overflow.
fn parse_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |acc, d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

fn httparse_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token in request line",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Option<(RequestHead, usize)>, HttpError> {
        parse_request_head(s.as_bytes(), &Limits::default())
    }

    fn head(s: &str) -> RequestHead {
        match parse(s) {
            Ok(Some((h, _))) => h,
            other => panic!("expected a head, got {other:?}"),
        }
    }

    #[test]
    fn partial_head_asks_for_more() {
        assert!(matches!(
            parse("GET /steps HTTP/1.1\r\nHost: loc"),
            Ok(None)
        ));
    }

    #[test]
    fn simple_get_has_no_body_and_keeps_alive() {
        let h = head("GET /steps HTTP/1.1\r\nHost: localhost\r\n\r\n");
        assert_eq!(h.method, "GET");
        assert_eq!(h.path(), "/steps");
        assert_eq!(h.framing, BodyFraming::Length(0));
        assert!(h.keep_alive);
        assert!(!h.expect_continue);
    }

    #[test]
    fn consumed_bytes_stop_at_the_blank_line() {
        let s = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
        let (_, n) = parse(s)
            .ok()
            .flatten()
            .map(|(h, n)| (h.target, n))
            .unwrap_or_default();
        assert_eq!(&s[n..], "GET /b HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn stray_blank_lines_before_request_are_skipped() {
        let s = "\r\n\r\nGET /x HTTP/1.1\r\n\r\n";
        let (h, n) = parse(s).ok().flatten().unwrap_or_else(|| panic!("no head"));
        assert_eq!(h.target, "/x");
        assert_eq!(n, s.len());
    }

    #[test]
    fn http10_closes_unless_keep_alive_asked() {
        assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
    }

    #[test]
    fn expect_continue_only_for_http11() {
        assert!(
            head("PUT / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n")
                .expect_continue
        );
        assert!(
            !head("PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
                .expect_continue
        );
    }

    #[test]
    fn chunked_and_identity_framing() {
        let h = head("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Chunked);
        let h = head("PUT / HTTP/1.1\r\nTransfer-Encoding: identity\r\nContent-Length: 9\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Length(9));
    }

    #[test]
    fn unknown_transfer_coding_is_501() {
        let e = parse("PUT / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!(e.err().map(|e| e.status()), Some(501));
    }

    #[test]
    fn bad_content_lengths_are_400() {
        for cl in ["-1", "+5", "1 2", "abc", "99999999999999999999", ""] {
            let s = format!("PUT / HTTP/1.1\r\nContent-Length: {cl}\r\n\r\n");
            let e = parse(&s);
            assert_eq!(
                e.as_ref().err().map(HttpError::status),
                Some(400),
                "{cl}: {e:?}"
            );
        }
    }

    #[test]
    fn conflicting_lengths_and_smuggling_are_400() {
        let e = parse("PUT / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
        assert_eq!(e.err().map(|e| e.status()), Some(400));
        let e = parse("PUT / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(e.err().map(|e| e.status()), Some(400));
        // Even the same length twice.
        let e = parse("PUT / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n");
        assert_eq!(e.err().map(|e| e.status()), Some(400));
        // Chunked that is not the final coding, twice, or in HTTP/1.0.
        for te in ["gzip", "chunked, gzip", "chunked, chunked", "xchunked"] {
            let e = parse(&format!(
                "PUT / HTTP/1.1\r\nTransfer-Encoding: {te}\r\n\r\n"
            ));
            assert_eq!(e.err().map(|e| e.status()), Some(400), "{te}");
        }
        let e = parse("PUT / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(e.err().map(|e| e.status()), Some(400));
    }

    #[test]
    fn oversized_head_is_431_even_when_partial() {
        let big = format!("GET / HTTP/1.1\r\nX-A: {}", "a".repeat(9000));
        assert_eq!(parse(&big).err(), Some(HttpError::HeadTooLarge));
    }

    #[test]
    fn too_many_headers_is_431() {
        let mut s = String::from("GET / HTTP/1.1\r\n");
        for i in 0..40 {
            s.push_str(&format!("X-{i}: y\r\n"));
        }
        s.push_str("\r\n");
        assert_eq!(parse(&s).err(), Some(HttpError::HeadTooLarge));
    }

    #[test]
    fn garbage_request_line_is_400() {
        assert_eq!(parse("HELLO\r\n\r\n").err().map(|e| e.status()), Some(400));
        assert_eq!(
            parse("GET / HTTP/2.0\r\n\r\n").err().map(|e| e.status()),
            Some(400)
        );
        assert_eq!(
            parse("GET foo HTTP/1.1\r\n\r\n").err().map(|e| e.status()),
            Some(400)
        );
    }

    #[test]
    fn query_is_split_from_path() {
        let h = head("GET /programs?{\"op\":\"true\"} HTTP/1.1\r\n\r\n");
        assert_eq!(h.path(), "/programs");
        assert_eq!(h.query(), Some("{\"op\":\"true\"}"));
    }

    #[test]
    fn response_heads_pick_their_framing() {
        let l = Limits::default();
        let r = parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", &l, false);
        let (h, _) = r.ok().flatten().unwrap_or_else(|| panic!("no head"));
        assert_eq!(
            (h.status, h.framing, h.keep_alive),
            (200, BodyFraming::Length(5), true)
        );
        let r = parse_response_head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            &l,
            false,
        );
        assert_eq!(
            r.ok().flatten().map(|(h, _)| h.framing),
            Some(BodyFraming::Chunked)
        );
        let r = parse_response_head(b"HTTP/1.0 200 OK\r\n\r\n", &l, false);
        let (h, _) = r.ok().flatten().unwrap_or_else(|| panic!("no head"));
        assert_eq!((h.framing, h.keep_alive), (BodyFraming::UntilClose, false));
        let r = parse_response_head(b"HTTP/1.1 204 No Content\r\n\r\n", &l, false);
        assert_eq!(
            r.ok().flatten().map(|(h, _)| h.framing),
            Some(BodyFraming::Length(0))
        );
    }
}
