//! Arbitrary bytes through the chunked decoder, split at fuzzer-chosen points: the payload is
//! the same whatever the split, every step stays inside its input, and decoding terminates.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern::http::{BodyDecoder, BodyFraming, Limits};

/// Decode `input` fed in pieces of the given sizes; the payload or None on a framing error.
fn decode(input: &[u8], splits: &[u8]) -> Option<Vec<u8>> {
    let mut d = BodyDecoder::new(BodyFraming::Chunked, &Limits::default());
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut fed = 0;
    let mut split = splits.iter().cycle();
    for _ in 0..(input.len() * 4 + 16) {
        if d.is_done() {
            return Some(out);
        }
        let step = d.decode(&buf).ok()?;
        assert!(step.consumed <= buf.len());
        assert!(step.data.end <= step.consumed && step.data.start <= step.data.end);
        out.extend_from_slice(&buf[step.data.clone()]);
        buf.drain(..step.consumed);
        if step.done {
            return Some(out);
        }
        if step.consumed == 0 {
            if fed == input.len() {
                d.finish_at_eof().ok()?;
                return Some(out);
            }
            let n = usize::from(*split.next().unwrap_or(&255)).max(1);
            let end = (fed + n).min(input.len());
            buf.extend_from_slice(&input[fed..end]);
            fed = end;
        }
    }
    panic!("decoder did not terminate");
}

fuzz_target!(|data: &[u8]| {
    let (splits, input) = data.split_at(data.len().min(8));
    let whole = decode(input, &[255]);
    let split = decode(input, if splits.is_empty() { &[1] } else { splits });
    assert_eq!(whole.is_some(), split.is_some(), "framing verdict depends on the split");
    if let (Some(a), Some(b)) = (whole, split) {
        assert_eq!(a, b, "payload depends on the split");
    }
});
