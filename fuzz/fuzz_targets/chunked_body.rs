//! A chunked body fed to `BodyDecoder` in fuzzer-chosen pieces, compared with a one-shot decode.
//!
//! Input layout: byte 0 is a control byte: its low 4 bits are how many piece sizes follow
//! (0 to 15), bit 4 selects tight limits instead of the defaults. Then come the piece sizes
//! (one byte each, used in a cycle; 0 means an empty `decode` call, which must ask for more),
//! then the wire bytes of the body. With no sizes the wire is fed one byte at a time.
//!
//! Invariants:
//! - every step: `consumed <= input.len()`, `data.start <= data.end <= consumed`;
//! - termination: a call with non-empty input consumes bytes, finishes or fails; a call with
//!   empty input consumes nothing;
//! - the outcome (payload, bytes used up to the end of the body, and the verdict: done,
//!   truncated at EOF or the framing error) is identical whatever the split, compared with
//!   decoding the whole input given at once (after an error only payload and error compare);
//! - a finished body delivered fewer payload bytes than the wire bytes it used (the framing
//!   costs at least the last-chunk line), an unfinished one used every byte;
//! - after `done`, the decoder stays done and `finish_at_eof` is fine.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern::http::{BodyDecoder, BodyFraming, HttpError, Limits};

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Done,
    /// The input ran out before the body ended; `finish_at_eof`'s answer.
    Eof(Result<(), HttpError>),
    Failed(HttpError),
}

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    payload: Vec<u8>,
    /// Wire bytes consumed in all (up to the end of the body when done); `None` after a
    /// framing error, where the bytes read before the error depend on the call boundaries.
    used: Option<usize>,
    verdict: Verdict,
}

/// Decode `wire` given as the consecutive `pieces` (their lengths sum to `wire.len()`).
fn decode<'a>(limits: &Limits, pieces: impl Iterator<Item = &'a [u8]>) -> Outcome {
    let mut d = BodyDecoder::new(BodyFraming::Chunked, limits);
    let mut payload = Vec::new();
    let mut used = 0;
    for piece in pieces {
        let mut pos = 0;
        // Empty pieces get one call too: the decoder must then ask for more.
        loop {
            let input = &piece[pos..];
            let step = match d.decode(input) {
                Ok(step) => step,
                Err(e) => {
                    return Outcome {
                        payload,
                        used: None,
                        verdict: Verdict::Failed(e),
                    };
                }
            };
            assert!(
                step.consumed <= input.len(),
                "consumed {} of {}",
                step.consumed,
                input.len()
            );
            assert!(
                step.data.start <= step.data.end && step.data.end <= step.consumed,
                "data {:?} outside the {} consumed bytes",
                step.data,
                step.consumed
            );
            if input.is_empty() {
                assert!(step.consumed == 0 && !step.done, "empty input: {step:?}");
            } else {
                assert!(
                    step.consumed > 0 || step.done,
                    "no progress on {} bytes",
                    input.len()
                );
            }
            payload.extend_from_slice(&input[step.data.clone()]);
            pos += step.consumed;
            used += step.consumed;
            if step.done {
                assert!(d.is_done());
                let again = d.decode(&piece[pos..]);
                assert_eq!(
                    again.map(|s| (s.consumed, s.data.len(), s.done)),
                    Ok((0, 0, true))
                );
                assert_eq!(d.finish_at_eof(), Ok(()));
                return Outcome {
                    payload,
                    used: Some(used),
                    verdict: Verdict::Done,
                };
            }
            if pos == piece.len() {
                break;
            }
        }
    }
    let eof = d.finish_at_eof();
    assert!(
        eof.is_err(),
        "a chunked body that never ended was accepted at EOF"
    );
    Outcome {
        payload,
        used: Some(used),
        verdict: Verdict::Eof(eof),
    }
}

/// The wire cut into pieces of the given sizes, cycled; all-zero sizes would never advance, so
/// they mean one byte at a time.
fn pieces<'a>(wire: &'a [u8], sizes: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let byte_at_a_time = sizes.iter().all(|&s| s == 0);
    let mut next = sizes.iter().copied().cycle();
    let mut pos = 0;
    let mut last_was_empty = false;
    std::iter::from_fn(move || {
        if pos >= wire.len() {
            // One trailing empty call at the end of the wire, like a read that found nothing.
            if last_was_empty {
                return None;
            }
            last_was_empty = true;
            return Some(&wire[wire.len()..]);
        }
        let size = if byte_at_a_time {
            1
        } else {
            usize::from(next.next().unwrap_or(1))
        };
        let end = (pos + size).min(wire.len());
        let piece = &wire[pos..end];
        pos = end;
        Some(piece)
    })
}

fn tight_limits() -> Limits {
    Limits {
        max_head_bytes: 96,
        max_headers: 3,
        max_chunk_line: 6,
        max_trailer_bytes: 12,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let n_sizes = usize::from(control & 0x0f).min(rest.len());
    let (sizes, wire) = rest.split_at(n_sizes);
    let limits = if control & 0x10 != 0 {
        tight_limits()
    } else {
        Limits::default()
    };

    let whole = decode(&limits, std::iter::once(wire));
    let split = decode(&limits, pieces(wire, sizes));
    assert_eq!(
        whole, split,
        "outcome depends on the split (sizes {sizes:?})"
    );
    assert!(whole.payload.len() <= wire.len());
    match whole.verdict {
        Verdict::Done => assert!(
            whole
                .used
                .is_some_and(|u| u <= wire.len() && whole.payload.len() < u)
        ),
        // Without an end of body every byte was taken.
        Verdict::Eof(_) => assert_eq!(whole.used, Some(wire.len())),
        Verdict::Failed(_) => {}
    }
});
