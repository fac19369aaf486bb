//! A state JSON through the signature verifier (`sig::check`) in every mode, with an empty
//! trust (no CA, no pub.pem), and through the canonical JSON writer.
//!
//! Invariants:
//! - every top-level value whose `#spec` is `pvs@2` is reported, once, whatever the mode but
//!   `disabled`, which reports nothing and refuses nothing;
//! - with nothing trusted no signature verifies: each one fails with a reason;
//! - audit never refuses; lenient refuses exactly when there is a signature (or the state is
//!   not an object); strict always refuses (nothing can cover anything);
//! - the canonical JSON of the input parses back, and writing that again gives the same bytes
//!   (checked for values without floats, whose parsing serde_json does not round correctly).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tern::sig::{self, Mode, Refusal, Trust};

fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(a) => a.iter().any(has_float),
        Value::Object(m) => m.values().any(has_float),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(state) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let trust = Trust::default();
    let signatures = state.as_object().map_or(0, |m| {
        m.values()
            .filter(|v| v.get("#spec").and_then(Value::as_str) == Some("pvs@2"))
            .count()
    });
    for mode in [Mode::Disabled, Mode::Audit, Mode::Lenient, Mode::Strict] {
        let r = sig::check(&state, &trust, mode, 1_800_000_000);
        assert_eq!(r.mode, Some(mode));
        if mode == Mode::Disabled {
            assert!(r.signatures.is_empty() && r.refusal.is_none());
            continue;
        }
        assert_eq!(r.signatures.len(), signatures, "{mode:?}");
        for s in &r.signatures {
            match &s.verdict {
                Err(reason) => assert!(!reason.is_empty()),
                Ok(()) => panic!("{} verified with nothing trusted", s.key),
            }
        }
        let refusal = r.refusal;
        match mode {
            Mode::Audit => assert_eq!(refusal, None),
            Mode::Lenient => assert_eq!(
                refusal.is_some(),
                signatures > 0 || !state.is_object(),
                "{r:?}"
            ),
            _ => assert!(matches!(
                refusal,
                Some(Refusal::Validation | Refusal::Uncovered)
            )),
        }
    }

    let canonical = sig::canonical_json(&state);
    let again: Value = serde_json::from_slice(&canonical).expect("canonical JSON parses");
    if !has_float(&state) {
        assert_eq!(again, state);
        assert_eq!(sig::canonical_json(&again), canonical);
    }
});
