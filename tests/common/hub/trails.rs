//! The test hub's trail endpoints: listing and creating the device's trail (the factory
//! state upload), the pending-steps query with its `progress.status` filter, and progress
//! reports, decoded into the hub's own progress fields as pantahub-base does.

use serde_json::{Map, Value, json};

use super::message::{Request, Response};
use super::model::Token;
use super::shared::Shared;
use super::text;
use super::views::{self, obj_progress_zero};

pub fn list(hub: &Shared, tok: &Token) -> Response {
    let m = hub.model();
    let v: Vec<Value> = m
        .trails
        .values()
        .filter(|t| t.device == tok.prn)
        .map(views::trail_json)
        .collect();
    Response::ok(&Value::Array(v))
}

pub fn create(hub: &Shared, req: &Request, tok: &Token) -> Response {
    if !tok.is_device() || tok.owner.is_empty() {
        return Response::error(403, "Device has no owner");
    }
    let Some(state) = req.json() else {
        return Response::error(400, "Error decoding json payload");
    };
    let mut m = hub.model();
    match m.create_trail(&tok.device_id, &tok.owner, state) {
        Ok(t) => Response::ok(&views::trail_json(t)),
        Err(e) => Response::error(500, &format!("Error processing trail objects: {e}")),
    }
}

/// A `progress.status` filter: a JSON operator object when the value parses as JSON,
/// otherwise a plain string match.
enum StatusFilter {
    Is(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Not(String),
}

impl StatusFilter {
    fn parse(raw: &str) -> StatusFilter {
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        match serde_json::from_str::<Value>(raw) {
            Ok(Value::String(s)) => StatusFilter::Is(s),
            Ok(Value::Object(o)) => {
                if let Some(v) = o.get("$in") {
                    StatusFilter::In(strings(v))
                } else if let Some(v) = o.get("$nin") {
                    StatusFilter::NotIn(strings(v))
                } else if let Some(v) = o.get("$ne").and_then(Value::as_str) {
                    StatusFilter::Not(v.to_string())
                } else if let Some(v) = o.get("$eq").and_then(Value::as_str) {
                    StatusFilter::Is(v.to_string())
                } else {
                    // An operator this fake does not know matches nothing.
                    StatusFilter::In(Vec::new())
                }
            }
            _ => StatusFilter::Is(raw.to_string()),
        }
    }

    fn matches(&self, status: &str) -> bool {
        match self {
            StatusFilter::Is(s) => s == status,
            StatusFilter::In(v) => v.iter().any(|s| s == status),
            StatusFilter::NotIn(v) => !v.iter().any(|s| s == status),
            StatusFilter::Not(s) => s != status,
        }
    }
}

pub fn steps(hub: &Shared, req: &Request, tok: &Token, trail_id: &str) -> Response {
    let q = text::query_pairs(req.query());
    let get = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let (filter, mut limit) = match get("progress.status") {
        Some(raw) => (StatusFilter::parse(raw), usize::MAX),
        None => (StatusFilter::Is("NEW".into()), 1),
    };
    if let Some(n) = get("page[size]").and_then(|s| s.parse().ok()) {
        limit = n;
    }
    let offset: usize = get("page[offset]")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let m = hub.model();
    // Keys sort by (trail, rev): the range is in rev order.
    let v: Vec<Value> = m
        .steps
        .values()
        .filter(|s| s.trail_id == trail_id && s.device == tok.prn)
        .filter(|s| filter.matches(s.progress["status"].as_str().unwrap_or("")))
        .skip(offset)
        .take(limit)
        .map(views::step_json)
        .collect();
    Response::ok(&Value::Array(v))
}

pub fn progress(hub: &Shared, req: &Request, tok: &Token, trail_id: &str, rev: &str) -> Response {
    if !tok.is_device() {
        return Response::error(403, "Only devices can report progress");
    }
    let Some(body) = req.json() else {
        return Response::error(400, "Error decoding json payload");
    };
    let decoded = match decode_progress(&body) {
        Ok(p) => p,
        Err(e) => return Response::error(400, &format!("Error decoding json payload: {e}")),
    };
    let mut m = hub.model();
    let key = (trail_id.to_string(), rev.parse::<u64>().unwrap_or(u64::MAX));
    let Some(step) = m.steps.get_mut(&key).filter(|s| s.device == tok.prn) else {
        return Response::error(400, "Error updating step progress: not found");
    };
    let now = text::rfc3339_now();
    step.progress = decoded.clone();
    step.progress_bodies.push(body);
    step.progress_time = now.clone();
    if let Some(t) = m.trails.get_mut(trail_id) {
        t.last_touched = now;
    }
    Response::ok(&decoded)
}

fn int(v: Option<&Value>, field: &str) -> Result<i64, String> {
    match v {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| format!("{field}: not an integer")),
        Some(_) => Err(format!("{field}: not a number")),
    }
}

fn string(v: Option<&Value>, field: &str) -> Result<String, String> {
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{field}: not a string")),
    }
}

fn object<'a>(v: Option<&'a Value>, field: &str) -> Result<Option<&'a Map<String, Value>>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(format!("{field}: not an object")),
    }
}

/// One object's download progress; names and ids are left out when empty.
fn decode_obj_progress(v: Option<&Value>) -> Result<Value, String> {
    let Some(o) = object(v, "downloads")? else {
        return Ok(obj_progress_zero());
    };
    let mut out = Map::new();
    for k in ["object_name", "object_id"] {
        let s = string(o.get(k), k)?;
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
        out.insert(k.into(), json!(int(o.get(k), k)?));
    }
    Ok(Value::Object(out))
}

/// Keeps only the hub's progress fields, with their types (the device's `retries` and
/// `logs` are dropped, as pantahub-base drops them).
pub fn decode_progress(body: &Value) -> Result<Value, String> {
    let Value::Object(b) = body else {
        return Err("not an object".into());
    };
    let (total, objects) = match object(b.get("downloads"), "downloads")? {
        None => (obj_progress_zero(), Value::Null),
        Some(d) => {
            let objects = match d.get("objects") {
                None | Some(Value::Null) => Value::Null,
                Some(Value::Array(a)) => Value::Array(
                    a.iter()
                        .map(|o| decode_obj_progress(Some(o)))
                        .collect::<Result<_, _>>()?,
                ),
                Some(_) => return Err("downloads.objects: not an array".into()),
            };
            (decode_obj_progress(d.get("total"))?, objects)
        }
    };
    let mut out = Map::new();
    out.insert(
        "progress".into(),
        json!(int(b.get("progress"), "progress")?),
    );
    out.insert(
        "downloads".into(),
        json!({"total": total, "objects": objects}),
    );
    out.insert(
        "status-msg".into(),
        json!(string(b.get("status-msg"), "status-msg")?),
    );
    if let Some(d) = b.get("data").filter(|d| !d.is_null()) {
        out.insert("data".into(), d.clone());
    }
    out.insert("status".into(), json!(string(b.get("status"), "status")?));
    out.insert("log".into(), json!(string(b.get("log"), "log")?));
    Ok(Value::Object(out))
}
