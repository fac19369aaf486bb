//! Body framing decoder: Content-Length, chunked (RFC 9112 §7.1) and close-delimited.
//!
//! It never copies and never buffers payload: each call to [`BodyDecoder::decode`] consumes a
//! prefix of the input and points at the payload bytes inside it, so the caller can stream them
//! straight to a file. Only the few bytes of a chunk-size line or trailer are remembered, and
//! those are bounded by [`Limits`].

use std::ops::Range;

use super::error::HttpError;
use super::head::BodyFraming;
use super::limits::Limits;

/// The result of one decode step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Bytes of the input used by this step.
    pub consumed: usize,
    /// Payload bytes, as a range of the input (possibly empty).
    pub data: Range<usize>,
    /// The body ended with this step.
    pub done: bool,
}

#[derive(Clone, Debug)]
enum Chunk {
    /// Reading a chunk-size line: the value so far, hex digits seen, line bytes seen,
    /// whether we are past the digits (extension or whitespace), and whether CR was seen.
    Size {
        value: u64,
        digits: u32,
        line: usize,
        past_digits: bool,
        /// Inside the extensions (after `;`).
        in_ext: bool,
        cr: bool,
    },
    /// Inside chunk data.
    Data { remaining: u64 },
    /// Expecting the CRLF that ends a chunk's data.
    DataEnd { cr: bool },
    /// Reading trailer lines until an empty one.
    Trailer { line: usize, total: usize, cr: bool },
}

#[derive(Clone, Debug)]
enum State {
    Length { remaining: u64 },
    Chunked(Chunk),
    UntilClose,
    Done,
}

#[derive(Clone, Debug)]
pub struct BodyDecoder {
    state: State,
    max_chunk_line: usize,
    max_trailer: usize,
}

const NEW_SIZE_LINE: Chunk = Chunk::Size {
    value: 0,
    digits: 0,
    line: 0,
    past_digits: false,
    in_ext: false,
    cr: false,
};

impl BodyDecoder {
    pub fn new(framing: BodyFraming, limits: &Limits) -> BodyDecoder {
        let state = match framing {
            BodyFraming::Length(0) => State::Done,
            BodyFraming::Length(n) => State::Length { remaining: n },
            BodyFraming::Chunked => State::Chunked(NEW_SIZE_LINE),
            BodyFraming::UntilClose => State::UntilClose,
        };
        BodyDecoder {
            state,
            max_chunk_line: limits.max_chunk_line,
            max_trailer: limits.max_trailer_bytes,
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Payload bytes still expected, when the framing tells.
    pub fn remaining(&self) -> Option<u64> {
        match &self.state {
            State::Length { remaining } => Some(*remaining),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// The peer closed its side: fine for a close-delimited body, truncation otherwise.
    pub fn finish_at_eof(&mut self) -> Result<(), HttpError> {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(HttpError::Truncated),
        }
    }

    /// Decode one step from `input`. Call again with the unconsumed rest until `consumed` is 0
    /// (more input needed) or `done` is true.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, HttpError> {
        let mut pos = 0;
        loop {
            match &mut self.state {
                State::Done => {
                    return Ok(Decoded {
                        consumed: pos,
                        data: pos..pos,
                        done: true,
                    });
                }
                State::UntilClose => {
                    return Ok(Decoded {
                        consumed: input.len(),
                        data: 0..input.len(),
                        done: false,
                    });
                }
                State::Length { remaining } => {
                    let take = clamp(*remaining, input.len());
                    *remaining -= take as u64;
                    let done = *remaining == 0;
                    if done {
                        self.state = State::Done;
                    }
                    return Ok(Decoded {
                        consumed: take,
                        data: 0..take,
                        done,
                    });
                }
                State::Chunked(Chunk::Data { remaining }) => {
                    let take = clamp(*remaining, input.len() - pos);
                    *remaining -= take as u64;
                    if *remaining == 0 {
                        self.state = State::Chunked(Chunk::DataEnd { cr: false });
                    }
                    return Ok(Decoded {
                        consumed: pos + take,
                        data: pos..pos + take,
                        done: false,
                    });
                }
                State::Chunked(_) => {
                    let Some(&b) = input.get(pos) else {
                        return Ok(Decoded {
                            consumed: pos,
                            data: pos..pos,
                            done: false,
                        });
                    };
                    pos += 1;
                    self.chunk_framing_byte(b)?;
                }
            }
        }
    }

    /// Advance the chunk-size / CRLF / trailer machine by one byte.
    fn chunk_framing_byte(&mut self, b: u8) -> Result<(), HttpError> {
        let State::Chunked(chunk) = &mut self.state else {
            return Ok(());
        };
        match chunk {
            Chunk::Size {
                value,
                digits,
                line,
                past_digits,
                in_ext,
                cr,
            } => {
                *line += 1;
                if *line > self.max_chunk_line {
                    return Err(HttpError::BadChunk("chunk size line too long"));
                }
                if *cr && b != b'\n' {
                    return Err(HttpError::BadChunk("CR without LF in chunk size line"));
                }
                match b {
                    b'\n' => {
                        if *digits == 0 {
                            return Err(HttpError::BadChunk("missing chunk size"));
                        }
                        *chunk = if *value == 0 {
                            Chunk::Trailer {
                                line: 0,
                                total: 0,
                                cr: false,
                            }
                        } else {
                            Chunk::Data { remaining: *value }
                        };
                    }
                    b'\r' => *cr = true,
                    _ if *in_ext => {
                        if b.is_ascii_control() && b != b'\t' {
                            return Err(HttpError::BadChunk("control byte in chunk extension"));
                        }
                    }
                    b';' => {
                        *past_digits = true;
                        *in_ext = true;
                    }
                    b' ' | b'\t' => *past_digits = true,
                    // Only blanks may stand between the size and `;` (no `5 5`).
                    _ if *past_digits => {
                        return Err(HttpError::BadChunk("invalid chunk size"));
                    }
                    _ => {
                        let d = (b as char)
                            .to_digit(16)
                            .ok_or(HttpError::BadChunk("invalid chunk size"))?;
                        *digits += 1;
                        if *digits > 16 {
                            return Err(HttpError::BadChunk("chunk size too large"));
                        }
                        *value = (*value << 4) | u64::from(d);
                    }
                }
            }
            Chunk::DataEnd { cr } => match (b, *cr) {
                (b'\r', false) => *cr = true,
                (b'\n', _) => *chunk = NEW_SIZE_LINE,
                _ => return Err(HttpError::BadChunk("missing CRLF after chunk data")),
            },
            Chunk::Trailer { line, total, cr } => {
                *total += 1;
                if *total > self.max_trailer {
                    return Err(HttpError::BadChunk("trailer too large"));
                }
                match b {
                    b'\n' if *line == 0 => self.state = State::Done,
                    b'\n' => {
                        *line = 0;
                        *cr = false;
                    }
                    b'\r' => *cr = true,
                    _ if *cr => return Err(HttpError::BadChunk("CR without LF in trailer")),
                    _ => *line += 1,
                }
            }
            Chunk::Data { .. } => {}
        }
        Ok(())
    }
}

fn clamp(remaining: u64, available: usize) -> usize {
    usize::try_from(remaining).map_or(available, |r| r.min(available))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `input` in pieces of `step` bytes; collect the payload.
    fn run(framing: BodyFraming, input: &[u8], step: usize) -> Result<(Vec<u8>, usize), HttpError> {
        let mut d = BodyDecoder::new(framing, &Limits::default());
        let mut out = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut fed = 0;
        let mut used_total = 0;
        loop {
            if d.is_done() {
                return Ok((out, used_total));
            }
            let r = d.decode(&buf)?;
            out.extend_from_slice(&buf[r.data.clone()]);
            buf.drain(..r.consumed);
            used_total += r.consumed;
            if r.done {
                return Ok((out, used_total));
            }
            if r.consumed == 0 {
                if fed >= input.len() {
                    d.finish_at_eof()?;
                    return Ok((out, used_total));
                }
                let end = (fed + step).min(input.len());
                buf.extend_from_slice(&input[fed..end]);
                fed = end;
            }
        }
    }

    #[test]
    fn content_length_stops_at_its_length() {
        for step in [1, 3, 100] {
            let (body, used) =
                run(BodyFraming::Length(5), b"helloGET /next", step).unwrap_or_default();
            assert_eq!((body.as_slice(), used), (&b"hello"[..], 5), "step {step}");
        }
    }

    #[test]
    fn chunked_body_decodes_in_any_split() {
        let wire =
            b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for step in 1..wire.len() {
            let (body, used) = run(BodyFraming::Chunked, wire, step).unwrap_or_default();
            assert_eq!(body, b"Wikipedia in\r\n\r\nchunks.", "step {step}");
            assert_eq!(used, wire.len() - 4, "step {step}");
        }
    }

    #[test]
    fn chunked_accepts_bare_lf_and_uppercase_hex() {
        let (body, _) = run(BodyFraming::Chunked, b"A\nabcdefghij\n0\n\n", 7).unwrap_or_default();
        assert_eq!(body, b"abcdefghij");
    }

    #[test]
    fn bad_chunk_sizes_are_errors() {
        for wire in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"-1\r\n",
            b"11111111111111111\r\n",
            b"5\rX",
            b"5 5\r\n",
            b"5\tx\r\n",
        ] {
            let r = run(BodyFraming::Chunked, wire, 64);
            assert!(
                matches!(r, Err(HttpError::BadChunk(_))),
                "{:?} -> {r:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn missing_crlf_after_data_is_an_error() {
        let r = run(BodyFraming::Chunked, b"3\r\nabcX\r\n0\r\n\r\n", 64);
        assert!(matches!(r, Err(HttpError::BadChunk(_))));
    }

    #[test]
    fn endless_chunk_extension_is_bounded() {
        let mut wire = b"5;".to_vec();
        wire.extend(std::iter::repeat_n(b'a', 5000));
        assert!(matches!(
            run(BodyFraming::Chunked, &wire, 64),
            Err(HttpError::BadChunk(_))
        ));
    }

    #[test]
    fn endless_trailer_is_bounded() {
        let mut wire = b"0\r\n".to_vec();
        for _ in 0..1000 {
            wire.extend_from_slice(b"X-Pad: aaaaaaaaaa\r\n");
        }
        assert!(matches!(
            run(BodyFraming::Chunked, &wire, 64),
            Err(HttpError::BadChunk(_))
        ));
    }

    #[test]
    fn truncated_bodies_are_reported_at_eof() {
        assert_eq!(
            run(BodyFraming::Length(10), b"abc", 64),
            Err(HttpError::Truncated)
        );
        assert_eq!(
            run(BodyFraming::Chunked, b"5\r\nab", 64),
            Err(HttpError::Truncated)
        );
    }

    #[test]
    fn close_delimited_body_ends_at_eof() {
        let (body, _) = run(BodyFraming::UntilClose, b"all of it", 4).unwrap_or_default();
        assert_eq!(body, b"all of it");
    }

    #[test]
    fn huge_chunk_sizes_do_not_overflow() {
        let mut d = BodyDecoder::new(BodyFraming::Chunked, &Limits::default());
        let r = d.decode(b"FFFFFFFFFFFFFFFF\r\nabc");
        assert_eq!(r.map(|r| r.data.len()), Ok(3));
    }
}
