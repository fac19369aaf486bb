//! The test hub's trail endpoints: listing and creating the device's trail (the factory
//! state upload), the pending-steps query with its `progress.status` filter, and progress
//! reports (decoded by `progress`).

use serde_json::Value;

use super::message::{Request, Response};
use super::model::Token;
use super::shared::Shared;
use super::views;
use super::{progress, routes, text};

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
    if !tok.is_device() || !routes::may_write(hub, tok) {
        return Response::error(403, "Device needs an owner");
    }
    // The hub ignores a body it cannot decode: it then has no #spec, a 500 below.
    let state = req
        .json()
        .unwrap_or_else(|| Value::Object(Default::default()));
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
    /// Only a JSON object counts as an operator; anything else (even a JSON string) is
    /// matched as it is, quotes and all.
    fn parse(raw: &str) -> Result<StatusFilter, ()> {
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let Ok(Value::Object(o)) = serde_json::from_str::<Value>(raw) else {
            return Ok(StatusFilter::Is(raw.to_string()));
        };
        let mut filter = None;
        for (op, v) in &o {
            filter = Some(match (op.as_str(), v) {
                ("$in", _) => StatusFilter::In(strings(v)),
                ("$nin", _) => StatusFilter::NotIn(strings(v)),
                ("$ne", Value::String(s)) => StatusFilter::Not(s.clone()),
                ("$eq", Value::String(s)) => StatusFilter::Is(s.clone()),
                // An operator the database would refuse.
                (op, _) if op.starts_with('$') => return Err(()),
                // A plain sub-document never equals a status string.
                _ => StatusFilter::In(Vec::new()),
            });
        }
        Ok(filter.unwrap_or(StatusFilter::In(Vec::new())))
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
    // An unknown trail fails the hub's public-trail lookup: 500.
    if !hub.model().trails.contains_key(trail_id) {
        return Response::error(500, "Error getting trail public: not found");
    }
    let (filter, mut limit) = match get("progress.status").filter(|s| !s.is_empty()) {
        Some(raw) => match StatusFilter::parse(raw) {
            Ok(f) => (f, usize::MAX),
            Err(()) => return Response::error(403, "Error on fetching steps: unknown operator"),
        },
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

/// `PUT /trails/<id>/steps/<rev>/progress`. As pantahub-base, the body is decoded as well
/// as it goes and the decoding error ignored: a wrong-typed field is left at zero, a body
/// that is not JSON stores an all-zero progress.
pub fn progress(hub: &Shared, req: &Request, tok: &Token, trail_id: &str, rev: &str) -> Response {
    if !tok.is_device() {
        return Response::error(403, "Only devices can update step status");
    }
    let body = req
        .json()
        .unwrap_or_else(|| Value::String(String::from_utf8_lossy(&req.body).into_owned()));
    let decoded = progress::decode(&body);
    let mut m = hub.model();
    if m.device(trail_id).is_none() {
        return Response::error(500, "Error checking device is public or not: not found");
    }
    let key = (trail_id.to_string(), rev.parse::<u64>().unwrap_or(u64::MAX));
    let Some(step) = m.steps.get_mut(&key).filter(|s| s.device == tok.prn) else {
        return Response::error(400, "Error updating trail: not found");
    };
    let now = text::rfc3339_now();
    step.progress = decoded.clone();
    step.progress_bodies.push(body);
    step.progress_time = now.clone();
    match m.trails.get_mut(trail_id) {
        Some(t) => t.last_touched = now,
        None => return Response::error(400, "Error updating trail: not found"),
    }
    Response::ok(&decoded)
}
