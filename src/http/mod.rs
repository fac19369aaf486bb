//! HTTP/1.1 framing, sans-IO: request and response heads (through httparse), body framing
//! (Content-Length, chunked, close-delimited), and response serialisation.
//!
//! Nothing here touches a socket or a clock: the reactor feeds bytes in and writes bytes out.
//! The same pieces serve the control socket (server side) and the hub client (client side),
//! which is why the body decoder does not care which direction it decodes.
//! Every buffer and count has a limit (see [`Limits`]); a violation is an [`HttpError`] that
//! names the status to answer with.

mod body;
mod client;
mod error;
mod head;
mod limits;
mod response;

pub use body::{BodyDecoder, Decoded};
pub use client::{BodyMode, Fed, ReadError, ResponseReader, encode_request};
pub use error::HttpError;
pub use head::{
    BodyFraming, RequestHead, ResponseHead, Version, parse_request_head, parse_response_head,
};
pub use limits::Limits;
pub use response::{Body, Response, reason_phrase};
