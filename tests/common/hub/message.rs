//! The request and response values the test hub's server hands to its routes and back.

use serde_json::Value;

use super::text;

pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The client asked to close after this answer (`Connection: close`, or HTTP/1.0
    /// without keep-alive).
    pub wants_close: bool,
    /// Sent as HTTP/1.0.
    pub http10: bool,
}

impl Request {
    /// A header by name, case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn query(&self) -> &str {
        self.target.split_once('?').map(|(_, q)| q).unwrap_or("")
    }

    /// The body as JSON, if it parses.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send the head with the full Content-Length, then only this many body bytes, then
    /// close the connection.
    pub cut_at: Option<usize>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
            cut_at: None,
        }
    }

    pub fn json(status: u16, v: &Value) -> Response {
        Response::new(
            status,
            "application/json; charset=utf-8",
            v.to_string().into_bytes(),
        )
    }

    pub fn ok(v: &Value) -> Response {
        Response::json(200, v)
    }

    pub fn status_ok() -> Response {
        Response::ok(&serde_json::json!({"status": "ok"}))
    }

    /// The hub's error shape. `_why` says what went wrong, for the reader of this code:
    /// like pantahub-base, the hub logs such reasons and sends only an incident id.
    pub fn error(status: u16, _why: &str) -> Response {
        Response::new(
            status,
            "application/json; charset=utf-8",
            text::error_body(status, None),
        )
    }

    /// The hub's error shape with a message meant for users (`msg`).
    pub fn user_error(status: u16, msg: &str) -> Response {
        Response::new(
            status,
            "application/json; charset=utf-8",
            text::error_body(status, Some(msg)),
        )
    }

    /// A bare status with an empty body, as the blob store answers errors.
    pub fn bare(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            cut_at: None,
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
