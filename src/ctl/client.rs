//! A small blocking HTTP/1.1 client over a unix socket, for the command-line client only (the
//! daemon never blocks). It reuses the daemon's own framing code to read answers.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::http::{BodyDecoder, Limits, parse_response_head};

/// A request body: nothing, bytes, or a reader of known length streamed as it is read.
pub enum Payload<'a> {
    None,
    Bytes(&'a [u8]),
    Stream(&'a mut dyn Read, u64),
}

/// Where an answer's body goes: a 200's streams to `ok` (it may be a large object), any
/// other's is collected in `err` (error bodies are small; kept to 64 KiB).
pub struct Outputs<'a> {
    pub ok: &'a mut dyn Write,
    pub err: &'a mut Vec<u8>,
}

const MAX_ERROR_BODY: usize = 64 * 1024;

/// Send one request and stream the answer's body to `out`. Returns the status.
pub fn call(
    socket: &Path,
    method: &str,
    path: &str,
    payload: Payload<'_>,
    out: Outputs<'_>,
) -> io::Result<u16> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(240)))?;
    let (len, content_type) = match &payload {
        Payload::None => (0, None),
        Payload::Bytes(b) => (b.len() as u64, Some("application/json")),
        Payload::Stream(_, n) => (*n, Some("application/octet-stream")),
    };
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len}\r\n");
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    s.write_all(head.as_bytes())?;
    match payload {
        Payload::None => {}
        Payload::Bytes(b) => s.write_all(b)?,
        Payload::Stream(r, n) => {
            let copied = io::copy(&mut r.take(n), &mut s)?;
            if copied != n {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "input ended before its declared size",
                ));
            }
        }
    }
    read_answer(&mut s, out)
}

fn read_answer(s: &mut UnixStream, out: Outputs<'_>) -> io::Result<u16> {
    let limits = Limits::default();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let (head, used) = loop {
        match parse_response_head(&buf, &limits, false) {
            Ok(Some(found)) => break found,
            Ok(None) => {}
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before an answer",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    buf.drain(..used);
    let mut emit = |data: &[u8]| -> io::Result<()> {
        if head.status == 200 {
            out.ok.write_all(data)
        } else {
            let room = MAX_ERROR_BODY.saturating_sub(out.err.len());
            out.err.extend_from_slice(&data[..data.len().min(room)]);
            Ok(())
        }
    };
    let mut decoder = BodyDecoder::new(head.framing, &limits);
    loop {
        while !buf.is_empty() && !decoder.is_done() {
            let step = decoder
                .decode(&buf)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            emit(&buf[step.data.clone()])?;
            buf.drain(..step.consumed);
            if step.consumed == 0 {
                break;
            }
        }
        if decoder.is_done() {
            return Ok(head.status);
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            decoder
                .finish_at_eof()
                .map_err(|e| io::Error::new(io::ErrorKind::UnexpectedEof, e.to_string()))?;
            return Ok(head.status);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
