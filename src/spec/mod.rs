//! The state JSON (`pantavisor-service-system@1`): a flat map from artifact paths to either an
//! inline JSON document or a sha256 object id. This module checks the outer shape; the
//! per-container documents (`run.json`, …) get their own typed parsers.

use serde_json::Value;

pub const SYSTEM_SPEC: &str = "pantavisor-service-system@1";

/// Check that `bytes` is a state JSON Tern can store. Returns the parsed document or a
/// message saying what is wrong (for the daemon log and the client).
pub fn validate_state(bytes: &[u8]) -> Result<Value, String> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    let Some(map) = doc.as_object() else {
        return Err("the state must be a JSON object".into());
    };
    match map.get("#spec") {
        Some(Value::String(s)) if s == SYSTEM_SPEC => {}
        Some(Value::String(s)) => {
            return Err(format!(
                "unsupported #spec '{s}' (expected '{SYSTEM_SPEC}')"
            ));
        }
        Some(_) => return Err("#spec must be a string".into()),
        None => return Err("missing #spec".into()),
    }
    for (key, value) in map {
        if key == "#spec" {
            continue;
        }
        if key.is_empty()
            || key.starts_with('/')
            || key
                .split('/')
                .any(|c| c == ".." || c == "." || c.is_empty())
        {
            return Err(format!("bad artifact path '{key}'"));
        }
        match value {
            Value::Object(_) | Value::Array(_) => {}
            Value::String(id) if is_sha256(id) => {}
            Value::String(_) => {
                return Err(format!("'{key}': object id must be a 64 character sha256"));
            }
            _ => {
                return Err(format!(
                    "'{key}': value must be an object id or a JSON document"
                ));
            }
        }
    }
    Ok(doc)
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_state_is_valid() {
        assert!(validate_state(br##"{"#spec":"pantavisor-service-system@1"}"##).is_ok());
    }

    #[test]
    fn real_example_state_is_valid() {
        let sha = "a".repeat(64);
        let s = format!(
            r##"{{"#spec":"pantavisor-service-system@1","nginx/root.squashfs":"{sha}","nginx/run.json":{{"name":"nginx","type":"lxc","volumes":[]}},"bsp/run.json":{{"linux":"kernel.img"}}}}"##
        );
        assert!(validate_state(s.as_bytes()).is_ok());
    }

    #[test]
    fn bad_states_say_why() {
        let cases: [(&[u8], &str); 6] = [
            (b"{not json", "not valid JSON"),
            (b"[]", "must be a JSON object"),
            (b"{}", "missing #spec"),
            (br##"{"#spec":"other@1"}"##, "unsupported #spec"),
            (
                br##"{"#spec":"pantavisor-service-system@1","a/b":"short"}"##,
                "64 character",
            ),
            (
                br##"{"#spec":"pantavisor-service-system@1","../x":{}}"##,
                "bad artifact path",
            ),
        ];
        for (input, want) in cases {
            let err = validate_state(input).err().unwrap_or_default();
            assert!(
                err.contains(want),
                "{:?}: {err}",
                String::from_utf8_lossy(input)
            );
        }
    }
}
