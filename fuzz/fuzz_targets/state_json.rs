//! Arbitrary bytes as a state JSON (`PUT /steps/locals/<rev>`) through `tern::spec::validate_state`.
//!
//! Invariants:
//! - never panics; an error carries a message;
//! - an accepted document really has the shape of `pantavisor-service-system@1` (checked here
//!   independently): a JSON object whose `#spec` is that string and whose other keys are
//!   relative paths without empty, `.` or `..` components, each mapping to an object, an array
//!   or a 64-hex-digit object id;
//! - the accepted value, serialised again (compact and pretty), validates again and gives the
//!   same document (numbers compared with a one-ulp-scale tolerance, since serde_json's default
//!   float parsing is not guaranteed to be correctly rounded).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tern::spec::validate_state;

const SPEC: &str = "pantavisor-service-system@1";

fn assert_conforms(doc: &Value) {
    let map = doc
        .as_object()
        .unwrap_or_else(|| panic!("accepted a non-object: {doc}"));
    assert_eq!(
        map.get("#spec").and_then(Value::as_str),
        Some(SPEC),
        "accepted without the system #spec"
    );
    for (key, value) in map.iter().filter(|(k, _)| *k != "#spec") {
        assert!(
            !key.is_empty() && !key.starts_with('/'),
            "accepted artifact path {key:?}"
        );
        assert!(
            key.split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".."),
            "accepted artifact path {key:?}"
        );
        let ok = match value {
            Value::Object(_) | Value::Array(_) => true,
            Value::String(id) => id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            _ => false,
        };
        assert!(ok, "accepted value {value} for {key:?}");
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x.is_f64() || y.is_f64() {
                match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) => {
                        x == y || (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs())
                    }
                    _ => false,
                }
            } else {
                x == y
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn revalidate(doc: &Value, bytes: Vec<u8>, how: &str) {
    match validate_state(&bytes) {
        Ok(again) => assert!(
            same(doc, &again),
            "{how} re-serialisation changed the document:\n{doc}\n{again}"
        ),
        Err(e) => panic!(
            "{how} re-serialisation of an accepted state was refused: {e}\n{}",
            String::from_utf8_lossy(&bytes)
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    match validate_state(data) {
        Ok(doc) => {
            assert_conforms(&doc);
            let compact =
                serde_json::to_vec(&doc).unwrap_or_else(|e| panic!("cannot serialise: {e}"));
            revalidate(&doc, compact, "compact");
            let pretty =
                serde_json::to_vec_pretty(&doc).unwrap_or_else(|e| panic!("cannot serialise: {e}"));
            revalidate(&doc, pretty, "pretty");
        }
        Err(message) => assert!(!message.is_empty()),
    }
});
