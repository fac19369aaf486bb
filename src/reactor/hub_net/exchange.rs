//! One request/response exchange over an open [`TlsConn`]: push the request bytes, pull the
//! response through a [`ResponseReader`], within a byte budget.
//!
//! Owns nothing but the loop; the caller owns the connection, the reader and what happens to
//! body slices. It never reads past its budget in one go, so the loop stays fair.

use super::stream::{Got, TlsConn};
use super::{NetError, Stats};
use crate::http::{Fed, HttpError, ReadError, ResponseReader};

/// Plaintext bytes read per connection per readiness round before yielding.
pub const READ_BUDGET: usize = 64 * 1024;
/// Plaintext read slice.
const SLICE: usize = 16 * 1024;

/// Where reading a response stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Pumped {
    /// The response is complete. `reusable`: no stray bytes followed and the peer did not close.
    Done { reusable: bool },
    /// Nothing more until the next readiness.
    Blocked,
    /// The budget is spent and more may be waiting: call again soon.
    Budget,
}

/// Write what the connection takes of `wire[*sent..]`; true when something was written.
pub fn push_request(
    conn: &mut TlsConn,
    wire: &[u8],
    sent: &mut usize,
    stats: &mut Stats,
) -> Result<bool, NetError> {
    conn.flush(stats)?;
    let start = *sent;
    while *sent < wire.len() {
        let n = conn.write(&wire[*sent..], stats)?;
        if n == 0 {
            break;
        }
        *sent += n;
    }
    Ok(*sent > start)
}

/// Read and feed the response; `on` sees each step and the input it refers to.
/// `progress` is set when any byte arrived.
pub fn pump_reply(
    conn: &mut TlsConn,
    reader: &mut ResponseReader,
    stats: &mut Stats,
    progress: &mut bool,
    mut on: impl FnMut(&Fed, &[u8], &ResponseReader) -> Result<(), NetError>,
) -> Result<Pumped, NetError> {
    let mut buf = vec![0u8; SLICE];
    let mut budget = READ_BUDGET;
    loop {
        let n = match conn.read(&mut buf, stats)? {
            Got::Data(n) => n,
            Got::WouldBlock => return Ok(Pumped::Blocked),
            Got::Eof => {
                reader.finish_at_eof().map_err(read_error)?;
                let f = Fed {
                    consumed: 0,
                    data: 0..0,
                    head: false,
                    done: true,
                };
                on(&f, &[], reader)?;
                return Ok(Pumped::Done { reusable: false });
            }
        };
        if n > 0 {
            *progress = true;
        }
        let mut input = &buf[..n];
        while !input.is_empty() {
            let fed = reader.feed(input).map_err(read_error)?;
            on(&fed, input, reader)?;
            input = &input[fed.consumed..];
            if fed.done {
                return Ok(Pumped::Done {
                    reusable: input.is_empty(),
                });
            }
            if fed.consumed == 0 {
                return Err(NetError::Protocol("response framing stalled".into()));
            }
        }
        budget = budget.saturating_sub(n.max(1));
        if budget == 0 {
            return Ok(Pumped::Budget);
        }
    }
}

pub fn read_error(e: ReadError) -> NetError {
    match e {
        ReadError::TooLarge => NetError::TooLarge,
        ReadError::Closed | ReadError::Http(HttpError::Truncated) => NetError::Closed,
        ReadError::Http(e) => NetError::Protocol(e.to_string()),
    }
}
