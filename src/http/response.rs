//! Responses and their serialisation. A body is either bytes held in memory (small: JSON
//! answers) or an open file streamed in bounded pieces by the reactor (object downloads).

use std::fs::File;

use super::head::Version;

pub enum Body {
    Empty,
    Bytes(Vec<u8>),
    /// A file streamed to the peer: chunked to HTTP/1.1 clients, close-delimited to HTTP/1.0.
    File(File),
}

pub struct Response {
    pub status: u16,
    pub content_type: Option<&'static str>,
    pub extra_headers: Vec<(&'static str, String)>,
    pub body: Body,
    /// The connection must close after this answer (the request stream can't be trusted).
    pub close: bool,
    /// An answer to HEAD: the head as for GET (Content-Length included), no body bytes.
    pub head_only: bool,
}

impl Response {
    /// A success with no body (pv-ctrl answers most writes this way).
    pub fn ok() -> Response {
        Response::empty(200)
    }

    pub fn empty(status: u16) -> Response {
        Response {
            status,
            content_type: None,
            extra_headers: Vec::new(),
            body: Body::Empty,
            close: false,
            head_only: false,
        }
    }

    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type: Some("application/json"),
            extra_headers: Vec::new(),
            body: Body::Bytes(body.into()),
            close: false,
            head_only: false,
        }
    }

    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type: Some("text/plain"),
            extra_headers: Vec::new(),
            body: Body::Bytes(body.into()),
            close: false,
            head_only: false,
        }
    }

    /// `{"Error":"<message>"}`, compact, as every pv-ctrl client expects.
    pub fn error(status: u16, message: &str) -> Response {
        let body = serde_json::json!({ "Error": message }).to_string();
        Response::json(status, body)
    }

    pub fn file(file: File) -> Response {
        Response {
            status: 200,
            content_type: Some("application/octet-stream"),
            extra_headers: Vec::new(),
            body: Body::File(file),
            close: false,
            head_only: false,
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.extra_headers.push((name, value.into()));
        self
    }

    /// The answer to a HEAD request: the same head, no body (RFC 9110 §9.3.2).
    pub fn for_head(mut self) -> Response {
        self.head_only = true;
        self
    }

    pub fn closing(mut self) -> Response {
        self.close = true;
        self
    }

    pub fn body_bytes(&self) -> &[u8] {
        match &self.body {
            Body::Bytes(b) => b,
            _ => &[],
        }
    }

    /// Serialise the status line and headers. Returns the head and whether the connection may
    /// stay open afterwards.
    pub fn head_bytes(&self, version: Version, keep_alive: bool) -> (Vec<u8>, bool) {
        let streamed = matches!(self.body, Body::File(_));
        // A streamed body to an HTTP/1.0 peer can only end by closing the connection.
        let keep_alive = keep_alive && !self.close && !(streamed && version == Version::Http10);
        let mut h = Vec::with_capacity(160);
        h.extend_from_slice(version.as_str().as_bytes());
        h.extend_from_slice(
            format!(" {} {}\r\n", self.status, reason_phrase(self.status)).as_bytes(),
        );
        if let Some(ct) = self.content_type {
            h.extend_from_slice(b"Content-Type: ");
            h.extend_from_slice(ct.as_bytes());
            h.extend_from_slice(b"\r\n");
        }
        match &self.body {
            Body::File(_) if version == Version::Http11 => {
                h.extend_from_slice(b"Transfer-Encoding: chunked\r\n")
            }
            Body::File(_) => {}
            // 204 and 304 carry no body and, per RFC 9110, no Content-Length either.
            Body::Empty if matches!(self.status, 204 | 304) => {}
            Body::Empty => h.extend_from_slice(b"Content-Length: 0\r\n"),
            Body::Bytes(b) => {
                h.extend_from_slice(format!("Content-Length: {}\r\n", b.len()).as_bytes())
            }
        }
        for (name, value) in &self.extra_headers {
            h.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        match (keep_alive, version) {
            (false, _) => h.extend_from_slice(b"Connection: close\r\n"),
            (true, Version::Http10) => h.extend_from_slice(b"Connection: keep-alive\r\n"),
            (true, Version::Http11) => {}
        }
        h.extend_from_slice(b"\r\n");
        (h, keep_alive)
    }
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        422 => "Unprocessable Entity",
        423 => "Locked",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_str(r: &Response, v: Version, ka: bool) -> (String, bool) {
        let (h, ka) = r.head_bytes(v, ka);
        (String::from_utf8_lossy(&h).into_owned(), ka)
    }

    #[test]
    fn error_body_is_compact_pantavisor_shape() {
        let r = Response::error(400, "unknown endpoint: /x\"y");
        assert_eq!(r.body_bytes(), br#"{"Error":"unknown endpoint: /x\"y"}"#);
        let (h, _) = head_str(&r, Version::Http11, true);
        assert!(h.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(h.contains("Content-Type: application/json\r\n"));
        assert!(h.contains("Content-Length: 35\r\n"));
    }

    #[test]
    fn empty_success_has_zero_length() {
        let (h, ka) = head_str(&Response::ok(), Version::Http11, true);
        assert_eq!(h, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(ka);
    }

    #[test]
    fn http10_gets_its_own_version_and_close() {
        let (h, ka) = head_str(&Response::ok(), Version::Http10, false);
        assert!(h.starts_with("HTTP/1.0 200 OK\r\n"));
        assert!(h.contains("Connection: close\r\n"));
        assert!(!ka);
    }

    #[test]
    fn closing_response_says_so() {
        let (h, ka) = head_str(&Response::error(431, "x").closing(), Version::Http11, true);
        assert!(h.contains("Connection: close\r\n"));
        assert!(!ka);
    }
}
