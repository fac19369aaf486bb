//! The client side of HTTP/1.1, sans-IO: encoding a request and reading a response fed in
//! arbitrary pieces.
//!
//! It owns the request bytes it encodes and, in buffered mode, the reply body up to a cap; in
//! streaming mode it hands out body slices of the caller's input and keeps nothing. Heads are
//! parsed by [`parse_response_head`] and bodies decoded by [`BodyDecoder`], the same framing code
//! the control socket serves with. It never touches a socket or a clock and never buffers more
//! than `Limits::max_head_bytes` of head or the body cap.

use std::ops::Range;

use super::body::BodyDecoder;
use super::error::HttpError;
use super::head::{BodyFraming, ResponseHead, parse_response_head};
use super::limits::Limits;

/// Encode an HTTP/1.1 request (keep-alive). `host` is the Host header value, `target` the path
/// with its optional query. When `body` is given, Content-Length is always sent (even for 0).
pub fn encode_request(
    method: &str,
    host: &str,
    target: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    let extra: usize = headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    let body_len = body.map_or(0, <[u8]>::len);
    let mut out =
        Vec::with_capacity(64 + method.len() + target.len() + host.len() + extra + body_len);
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        // A header with CR or LF would smuggle lines into the request: drop it.
        if [name, value].iter().any(|s| s.contains(['\r', '\n'])) {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(body) = body {
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        out.extend_from_slice(body);
    } else {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// What to do with the body of a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyMode {
    /// Keep it, up to this many bytes; more is [`ReadError::TooLarge`].
    Buffer { max: usize },
    /// Hand each payload slice to the caller (see [`Fed::data`]); keep nothing.
    Stream,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The response is not valid HTTP/1.1 framing.
    Http(HttpError),
    /// A buffered body is larger than its cap.
    TooLarge,
    /// The peer closed before sending a single byte of the response.
    Closed,
}

impl From<HttpError> for ReadError {
    fn from(e: HttpError) -> ReadError {
        ReadError::Http(e)
    }
}

/// The result of one [`ResponseReader::feed`] step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fed {
    /// Bytes of the input used by this step.
    pub consumed: usize,
    /// Payload bytes, as a range of the input (possibly empty).
    pub data: Range<usize>,
    /// The final head arrived with this step.
    pub head: bool,
    /// The response ended with this step.
    pub done: bool,
}

#[derive(Debug)]
enum Phase {
    Head { buf: Vec<u8> },
    Body { decoder: BodyDecoder },
    Done,
}

/// Reads one response, fed in pieces. 1xx interim responses are skipped.
#[derive(Debug)]
pub struct ResponseReader {
    limits: Limits,
    request_was_head: bool,
    mode: BodyMode,
    phase: Phase,
    head: Option<ResponseHead>,
    body: Vec<u8>,
    seen: u64,
}

impl ResponseReader {
    pub fn new(limits: Limits, request_was_head: bool, mode: BodyMode) -> ResponseReader {
        ResponseReader {
            limits,
            request_was_head,
            mode,
            phase: Phase::Head { buf: Vec::new() },
            head: None,
            body: Vec::new(),
            seen: 0,
        }
    }

    /// The final (non-1xx) head, once it arrived.
    pub fn head(&self) -> Option<&ResponseHead> {
        self.head.as_ref()
    }

    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// Bytes of response received so far (0 means the peer sent nothing at all).
    pub fn bytes_seen(&self) -> u64 {
        self.seen
    }

    /// The buffered body (empty in streaming mode).
    pub fn take_body(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.body)
    }

    /// Consume a prefix of `input`. Call again with the rest until `consumed` is 0 or `done`.
    pub fn feed(&mut self, input: &[u8]) -> Result<Fed, ReadError> {
        let mut fed = Fed {
            consumed: 0,
            data: 0..0,
            head: false,
            done: false,
        };
        match &mut self.phase {
            Phase::Done => fed.done = true,
            Phase::Head { buf } => {
                if input.is_empty() {
                    return Ok(fed);
                }
                let before = buf.len();
                buf.extend_from_slice(input);
                let Some((head, used)) =
                    parse_response_head(buf, &self.limits, self.request_was_head)?
                else {
                    self.seen += input.len() as u64;
                    fed.consumed = input.len();
                    return Ok(fed);
                };
                // `used` covers the earlier buffered bytes plus a prefix of `input`.
                fed.consumed = used.saturating_sub(before);
                self.seen += fed.consumed as u64;
                buf.clear();
                if (100..200).contains(&head.status) {
                    if head.status == 101 {
                        return Err(HttpError::BadRequest("unexpected protocol switch").into());
                    }
                    return Ok(fed);
                }
                if let (BodyMode::Buffer { max }, BodyFraming::Length(n)) =
                    (self.mode, head.framing)
                    && n > max as u64
                {
                    return Err(ReadError::TooLarge);
                }
                let decoder = BodyDecoder::new(head.framing, &self.limits);
                fed.head = true;
                self.head = Some(head);
                if decoder.is_done() {
                    self.phase = Phase::Done;
                    fed.done = true;
                } else {
                    self.phase = Phase::Body { decoder };
                }
            }
            Phase::Body { decoder } => {
                let d = decoder.decode(input)?;
                self.seen += d.consumed as u64;
                fed.consumed = d.consumed;
                fed.data = d.data;
                fed.done = d.done;
                if d.done {
                    self.phase = Phase::Done;
                }
                self.keep(&input[fed.data.clone()])?;
            }
        }
        Ok(fed)
    }

    /// The peer closed its side. Ends a close-delimited body; anything else is an error.
    pub fn finish_at_eof(&mut self) -> Result<(), ReadError> {
        match &mut self.phase {
            Phase::Done => Ok(()),
            Phase::Head { .. } if self.seen == 0 => Err(ReadError::Closed),
            Phase::Head { .. } => Err(HttpError::Truncated.into()),
            Phase::Body { decoder } => {
                decoder.finish_at_eof()?;
                self.phase = Phase::Done;
                Ok(())
            }
        }
    }

    fn keep(&mut self, data: &[u8]) -> Result<(), ReadError> {
        if let BodyMode::Buffer { max } = self.mode {
            if self.body.len() + data.len() > max {
                return Err(ReadError::TooLarge);
            }
            self.body.extend_from_slice(data);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `wire` in pieces of `step`; return the head status, the body and the bytes used.
    fn read(wire: &[u8], step: usize, mode: BodyMode) -> Result<(u16, Vec<u8>, usize), ReadError> {
        let mut r = ResponseReader::new(Limits::default(), false, mode);
        let mut streamed = Vec::new();
        let mut used = 0;
        let mut fed_to = 0;
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let f = r.feed(&pending)?;
            streamed.extend_from_slice(&pending[f.data.clone()]);
            pending.drain(..f.consumed);
            used += f.consumed;
            if f.done {
                break;
            }
            if f.consumed == 0 {
                if fed_to >= wire.len() {
                    r.finish_at_eof()?;
                    break;
                }
                let end = (fed_to + step).min(wire.len());
                pending.extend_from_slice(&wire[fed_to..end]);
                fed_to = end;
            }
        }
        let status = r.head().map_or(0, |h| h.status);
        let body = match mode {
            BodyMode::Buffer { .. } => r.take_body(),
            BodyMode::Stream => streamed,
        };
        Ok((status, body, used))
    }

    const BIG: BodyMode = BodyMode::Buffer { max: 1 << 20 };

    #[test]
    fn request_has_host_length_and_headers() {
        let h = vec![("Authorization".to_string(), "Bearer x".to_string())];
        let r = encode_request("POST", "hub:443", "/a?b=1", &h, Some(b"{}"));
        assert_eq!(
            r,
            b"POST /a?b=1 HTTP/1.1\r\nHost: hub:443\r\nAuthorization: Bearer x\r\nContent-Length: 2\r\n\r\n{}"
        );
        let r = encode_request("GET", "h", "/", &[], None);
        assert_eq!(r, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        let bad = vec![("X".to_string(), "a\r\nEvil: 1".to_string())];
        assert!(
            !String::from_utf8_lossy(&encode_request("GET", "h", "/", &bad, None)).contains("Evil")
        );
    }

    #[test]
    fn content_length_reply_in_every_split() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloNEXT";
        for step in 1..wire.len() {
            for mode in [BIG, BodyMode::Stream] {
                let r = read(wire, step, mode);
                assert_eq!(
                    r,
                    Ok((200, b"hello".to_vec(), wire.len() - 4)),
                    "step {step}"
                );
            }
        }
    }

    #[test]
    fn chunked_reply_in_every_split() {
        let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n";
        for step in 1..=wire.len() {
            for mode in [BIG, BodyMode::Stream] {
                assert_eq!(
                    read(wire, step, mode),
                    Ok((200, b"Wikipedia".to_vec(), wire.len())),
                    "step {step}"
                );
            }
        }
    }

    #[test]
    fn close_delimited_reply_ends_at_eof() {
        let wire = b"HTTP/1.1 200 OK\r\n\r\nall of it";
        for step in 1..=wire.len() {
            assert_eq!(
                read(wire, step, BIG).map(|r| r.1),
                Ok(b"all of it".to_vec())
            );
        }
    }

    #[test]
    fn interim_responses_are_skipped() {
        let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\nX: y\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
        for step in 1..=wire.len() {
            assert_eq!(read(wire, step, BIG), Ok((201, b"ok".to_vec(), wire.len())));
        }
    }

    #[test]
    fn over_cap_is_too_large() {
        let declared = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world";
        assert_eq!(
            read(declared, 7, BodyMode::Buffer { max: 10 }),
            Err(ReadError::TooLarge)
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n";
        assert_eq!(
            read(chunked, 3, BodyMode::Buffer { max: 10 }),
            Err(ReadError::TooLarge)
        );
        assert_eq!(
            read(chunked, 3, BodyMode::Stream).map(|r| r.1),
            Ok(b"hello world".to_vec())
        );
    }

    #[test]
    fn eof_before_anything_is_closed_and_midway_is_truncated() {
        assert_eq!(read(b"", 1, BIG), Err(ReadError::Closed));
        assert_eq!(
            read(b"HTTP/1.1 200", 4, BIG),
            Err(ReadError::Http(HttpError::Truncated))
        );
        assert_eq!(
            read(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", 4, BIG),
            Err(ReadError::Http(HttpError::Truncated))
        );
    }

    #[test]
    fn no_body_statuses_and_head_requests_end_at_the_head() {
        let wire = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(read(wire, 5, BIG), Ok((204, Vec::new(), wire.len())));
        let mut r = ResponseReader::new(Limits::default(), true, BIG);
        let f = r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
        assert!(f.is_ok_and(|f| f.done && f.head));
    }

    #[test]
    fn garbage_is_an_http_error() {
        assert!(matches!(
            read(b"SSH-2.0-x\r\n\r\n", 64, BIG),
            Err(ReadError::Http(_))
        ));
    }
}
