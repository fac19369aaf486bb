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
//!   float parsing is not guaranteed to be correctly rounded);
//! - `parse_state` (the typed parse the daemon runs) accepts exactly what `validate_state`
//!   accepts; its errors name `state` or an artifact key of the document; a parsed state has
//!   unique container names, each container's `<dir>/run.json` is in the document and its
//!   group is one of the state's groups, every object is a distinct document key mapping to
//!   that 64-hex id; parsing the compact re-serialisation (keys re-ordered) gives the same
//!   groups, BSP, driver aliases, objects and containers by name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tern::spec::{State, parse_state, validate_state};

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

/// What the typed state says that does not depend on the order of the document's keys (the
/// group a container without one lands in does) or on float rounding (auto-recovery factors).
fn order_free(state: &State) -> impl PartialEq + std::fmt::Debug + '_ {
    let names: Vec<&str> = state.groups.iter().map(|g| g.name.as_str()).collect();
    let mut containers: Vec<(&str, &str)> = state
        .containers
        .iter()
        .map(|c| (c.name.as_str(), c.dir.as_str()))
        .collect();
    containers.sort_unstable();
    let mut objects: Vec<&(String, String)> = state.objects.iter().collect();
    objects.sort_unstable();
    (names, &state.bsp, &state.drivers, objects, containers)
}

fn check_typed(doc: &Value, state: &State, compact: &[u8]) {
    let map = doc
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {doc}"));
    let mut names: Vec<&str> = state.containers.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(
        names.len(),
        state.containers.len(),
        "duplicate container names"
    );
    for c in &state.containers {
        assert!(
            map.contains_key(&format!("{}/run.json", c.dir)),
            "container {:?} from a missing {}/run.json",
            c.name,
            c.dir
        );
        assert!(
            state.groups.iter().any(|g| g.name == c.group),
            "container {:?} in unknown group {:?}",
            c.name,
            c.group
        );
    }
    let mut paths: Vec<&str> = state.objects.iter().map(|(p, _)| p.as_str()).collect();
    paths.sort_unstable();
    paths.dedup();
    assert_eq!(paths.len(), state.objects.len(), "an object listed twice");
    for (path, sha) in &state.objects {
        assert_eq!(
            map.get(path).and_then(Value::as_str),
            Some(sha.as_str()),
            "object {path:?}"
        );
    }
    match parse_state(compact) {
        Ok(again) => assert_eq!(
            order_free(state),
            order_free(&again),
            "the re-serialised state parses differently"
        ),
        Err(e) => panic!("the re-serialised state was refused: {e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let typed = parse_state(data);
    match validate_state(data) {
        Ok(doc) => {
            assert_conforms(&doc);
            let compact =
                serde_json::to_vec(&doc).unwrap_or_else(|e| panic!("cannot serialise: {e}"));
            match &typed {
                Ok(state) => check_typed(&doc, state, &compact),
                Err(e) => panic!("validate_state accepted what parse_state refused: {e}"),
            }
            revalidate(&doc, compact, "compact");
            let pretty =
                serde_json::to_vec_pretty(&doc).unwrap_or_else(|e| panic!("cannot serialise: {e}"));
            revalidate(&doc, pretty, "pretty");
        }
        Err(message) => {
            assert!(!message.is_empty());
            let e = match typed {
                Ok(_) => panic!("parse_state accepted what validate_state refused: {message}"),
                Err(e) => e,
            };
            assert_eq!(
                e.to_string(),
                message,
                "the two parsers give different errors"
            );
            if e.artifact != "state" {
                let doc: Value = serde_json::from_slice(data)
                    .unwrap_or_else(|_| panic!("{e} blamed an artifact of invalid JSON"));
                assert!(
                    doc.get(&e.artifact).is_some(),
                    "error names {:?}, not a key of the state",
                    e.artifact
                );
            }
        }
    }
});
