//! Framing errors. Each one names the status the server answers with; after any of them the
//! byte stream can no longer be trusted, so the connection is closed once the answer is out.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// The request line or a header is not valid HTTP/1.x.
    BadRequest(&'static str),
    /// The head is larger than `Limits::max_head_bytes` or has too many header lines.
    HeadTooLarge,
    /// A Transfer-Encoding other than chunked or identity.
    UnsupportedEncoding,
    /// A chunk-size line or trailer that is malformed or too long.
    BadChunk(&'static str),
    /// The peer closed the stream in the middle of a message.
    Truncated,
}

impl HttpError {
    pub fn status(&self) -> u16 {
        match self {
            HttpError::BadRequest(_) | HttpError::BadChunk(_) | HttpError::Truncated => 400,
            HttpError::HeadTooLarge => 431,
            HttpError::UnsupportedEncoding => 501,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::BadRequest(why) => write!(f, "Bad request: {why}"),
            HttpError::HeadTooLarge => f.write_str("Request header too large"),
            HttpError::UnsupportedEncoding => f.write_str("Transfer-Encoding not supported"),
            HttpError::BadChunk(why) => write!(f, "Bad chunked encoding: {why}"),
            HttpError::Truncated => f.write_str("Message truncated"),
        }
    }
}

impl std::error::Error for HttpError {}
