//! Decoding a step progress report into the hub's own progress fields, with Go's
//! decoding rules as pantahub-base applies them: unknown fields (the device's `retries`,
//! `logs`) are dropped, a field of the wrong type is left at its zero value, names match
//! exactly or else case-insensitively, and a body that is not a JSON object decodes to
//! all zeros.

use serde_json::{Map, Value, json};

use super::views::obj_progress_zero;

/// A field by name: the exact key first, else one equal ignoring case.
fn field<'a>(o: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    o.get(name).or_else(|| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn int(o: &Map<String, Value>, name: &str) -> i64 {
    field(o, name).and_then(Value::as_i64).unwrap_or(0)
}

fn string(o: &Map<String, Value>, name: &str) -> String {
    field(o, name)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// One object's download progress; an empty name or id is left out.
fn obj_progress(v: Option<&Value>) -> Value {
    let Some(Value::Object(o)) = v else {
        return obj_progress_zero();
    };
    let mut out = Map::new();
    for k in ["object_name", "object_id"] {
        let s = string(o, k);
        if !s.is_empty() {
            out.insert(k.into(), json!(s));
        }
    }
    for k in [
        "total_size",
        "start_time",
        "current_time",
        "total_downloaded",
    ] {
        out.insert(k.into(), json!(int(o, k)));
    }
    Value::Object(out)
}

/// The progress the hub stores and echoes for this body.
pub fn decode(body: &Value) -> Value {
    let empty = Map::new();
    let b = body.as_object().unwrap_or(&empty);
    let (total, objects) = match field(b, "downloads") {
        Some(Value::Object(d)) => {
            let objects = match field(d, "objects") {
                Some(Value::Array(a)) => {
                    Value::Array(a.iter().map(|o| obj_progress(Some(o))).collect())
                }
                _ => Value::Null,
            };
            (obj_progress(field(d, "total")), objects)
        }
        _ => (obj_progress_zero(), Value::Null),
    };
    let mut out = Map::new();
    out.insert("progress".into(), json!(int(b, "progress")));
    out.insert(
        "downloads".into(),
        json!({"total": total, "objects": objects}),
    );
    out.insert("status-msg".into(), json!(string(b, "status-msg")));
    if let Some(d) = field(b, "data").filter(|d| !d.is_null()) {
        out.insert("data".into(), d.clone());
    }
    out.insert("status".into(), json!(string(b, "status")));
    out.insert("log".into(), json!(string(b, "log")));
    Value::Object(out)
}
