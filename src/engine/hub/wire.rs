//! What the hub client says on the wire and what it reads back: the paths, the bodies and the
//! parsing of pantahub-base's answers. Pure: bytes and JSON in, values out.

use serde_json::{Map, Value, json};

use super::creds::Creds;
use crate::store::Progress;

/// Steps not final on the hub, oldest first (TESTING included, so a revision left TESTING by a
/// crash is seen and finished).
pub const PENDING_STEPS_QUERY: &str = "progress.status=%7B%22$in%22:%5B%22NEW%22,%22DOWNLOADING%22,%22INPROGRESS%22,%22TESTING%22,%22QUEUED%22%5D%7D";

/// A request for the hub's API connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub method: &'static str,
    pub path: String,
    /// Send `Authorization: Bearer <token>`.
    pub auth: bool,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Upload the file of this object as the body (factory sync), instead of `body`.
    pub body_object: Option<String>,
}

impl Call {
    fn new(method: &'static str, path: String, auth: bool) -> Call {
        Call {
            method,
            path,
            auth,
            headers: Vec::new(),
            body: Vec::new(),
            body_object: None,
        }
    }

    fn json(mut self, v: &Value) -> Call {
        self.body = v.to_string().into_bytes();
        self
    }
}

pub fn register(autotok: Option<&str>) -> Call {
    let mut c = Call::new("POST", "/devices/".into(), false);
    if let Some(t) = autotok.filter(|t| !t.is_empty()) {
        c.headers
            .push(("Pantahub-Devices-Auto-Token-V1".into(), t.to_string()));
    }
    c
}

pub fn login(creds: &Creds) -> Call {
    Call::new("POST", "/auth/login".into(), false)
        .json(&json!({"username": creds.prn, "password": creds.secret}))
}

pub fn get_device(id: &str) -> Call {
    Call::new("GET", format!("/devices/{id}"), true)
}

pub fn get_trails() -> Call {
    Call::new("GET", "/trails/".into(), true)
}

pub fn post_trail(state: &[u8]) -> Call {
    let mut c = Call::new("POST", "/trails/".into(), true);
    c.body = state.to_vec();
    c
}

pub fn post_object(name: &str, sha: &str, size: u64) -> Call {
    Call::new("POST", "/objects/".into(), true)
        .json(&json!({"objectname": name, "size": size.to_string(), "sha256sum": sha}))
}

/// The upload goes to the hub's own host and port, at the path from `/local-s3` on.
pub fn put_object(signed_put_url: &str, sha: &str) -> Option<Call> {
    let at = signed_put_url.find("/local-s3")?;
    let mut c = Call::new("PUT", signed_put_url[at..].to_string(), false);
    c.body_object = Some(sha.to_string());
    Some(c)
}

pub fn pending_steps(id: &str) -> Call {
    Call::new(
        "GET",
        format!("/trails/{id}/steps?{PENDING_STEPS_QUERY}"),
        true,
    )
}

pub fn object_meta(sha: &str) -> Call {
    Call::new("GET", format!("/objects/{sha}"), true)
}

/// With the ETag of the copy the device has, a hub that supports it answers 304 and no body.
pub fn user_meta(id: &str, etag: Option<&str>) -> Call {
    let mut c = Call::new("GET", format!("/devices/{id}/user-meta"), true);
    if let Some(tag) = etag {
        c.headers.push(("If-None-Match".into(), tag.to_string()));
    }
    c
}

pub fn device_meta_patch(id: &str, changes: &Map<String, Value>) -> Call {
    Call::new("PATCH", format!("/devices/{id}/device-meta"), true)
        .json(&Value::Object(changes.clone()))
}

/// `POST /logs/` with a body cut by `log_batch` (a JSON array of entries).
pub fn post_logs(body: Vec<u8>) -> Call {
    let mut c = Call::new("POST", "/logs/".into(), true);
    c.body = body;
    c
}

/// Download totals of a DOWNLOADING progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub total: u64,
    pub done: u64,
    pub start_unix: u64,
    pub now_unix: u64,
}

pub fn progress(trail: &str, rev: &str, p: &Progress, totals: Option<Totals>) -> Call {
    let mut body = json!({
        "status": p.status,
        "status-msg": p.status_msg,
        "progress": p.progress,
        "retries": p.retries,
    });
    if let Some(t) = totals.filter(|_| p.status == "DOWNLOADING") {
        body["downloads"] = json!({"total": {
            "object_name": "total", "object_id": "none",
            "total_size": t.total, "total_downloaded": t.done,
            "start_time": t.start_unix, "current_time": t.now_unix,
        }});
    }
    if let Some(logs) = &p.logs {
        body["logs"] = json!(logs);
    }
    Call::new("PUT", format!("/trails/{trail}/steps/{rev}/progress"), true).json(&body)
}

fn parse_object(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(body).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fn str_field(m: &Map<String, Value>, k: &str) -> String {
    m.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// `POST /devices/`: the credentials the device keeps.
pub fn parse_registered(body: &[u8]) -> Option<Creds> {
    let m = parse_object(body)?;
    let c = Creds {
        id: str_field(&m, "id"),
        prn: str_field(&m, "prn"),
        secret: str_field(&m, "secret"),
    };
    c.is_registered().then_some(c)
}

/// `GET /devices/<id>`: (owner, challenge).
pub fn parse_device(body: &[u8]) -> Option<(String, String)> {
    let m = parse_object(body)?;
    if str_field(&m, "id").is_empty() {
        return None;
    }
    Some((str_field(&m, "owner"), str_field(&m, "challenge")))
}

pub fn parse_token(body: &[u8]) -> Option<String> {
    let t = str_field(&parse_object(body)?, "token");
    (!t.is_empty()).then_some(t)
}

/// `GET /trails/`: whether the device has a trail.
pub fn parse_has_trail(body: &[u8]) -> Option<bool> {
    match serde_json::from_slice::<Value>(body).ok()? {
        Value::Array(a) => Some(!a.is_empty()),
        _ => None,
    }
}

/// `POST /objects/` → the signed upload URL.
pub fn parse_put_url(body: &[u8]) -> Option<String> {
    let u = str_field(&parse_object(body)?, "signed-puturl");
    (!u.is_empty()).then_some(u)
}

/// A pending step as the device reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub rev: String,
    pub state: Value,
    pub status: String,
    pub commit_msg: String,
}

pub fn parse_steps(body: &[u8]) -> Option<Vec<Step>> {
    let Value::Array(items) = serde_json::from_slice::<Value>(body).ok()? else {
        return None;
    };
    let mut out = Vec::new();
    for item in items {
        let Value::Object(m) = item else { continue };
        let rev = match m.get("rev") {
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) => s.clone(),
            _ => continue,
        };
        let status = m
            .get("progress")
            .and_then(|p| p.get("status"))
            .and_then(Value::as_str)
            .unwrap_or("NEW")
            .to_string();
        out.push(Step {
            rev,
            state: m.get("state").cloned().unwrap_or(Value::Null),
            status,
            commit_msg: str_field(&m, "commit-msg"),
        });
    }
    Some(out)
}

/// `GET /objects/<sha>`: (size, signed download URL). pantahub-base sends `size` as a string.
pub fn parse_object_meta(body: &[u8]) -> Option<(u64, String)> {
    let m = parse_object(body)?;
    let size = match m.get("size") {
        Some(Value::String(s)) => s.trim().parse().ok()?,
        Some(Value::Number(n)) => n.as_u64()?,
        _ => m.get("sizeint").and_then(Value::as_u64)?,
    };
    let url = str_field(&m, "signed-geturl").replace("\\u0026", "&");
    (!url.is_empty()).then_some((size, url))
}

/// `GET /devices/<id>/user-meta`: every key with its value as text (strings as they are,
/// anything else as its JSON).
pub fn parse_user_meta(body: &[u8]) -> Option<Vec<(String, String)>> {
    let m = parse_object(body)?;
    Some(
        m.into_iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, text)
            })
            .collect(),
    )
}

/// A device-meta value as the hub gets it: raw JSON when the text is a JSON object or array,
/// else a string.
pub fn meta_value(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ (Value::Object(_) | Value::Array(_))) => v,
        _ => Value::String(text.to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn steps_query_decodes_to_the_in_list() {
        let q = PENDING_STEPS_QUERY.replace("%7B", "{").replace("%7D", "}");
        let q = q
            .replace("%22", "\"")
            .replace("%5B", "[")
            .replace("%5D", "]");
        assert_eq!(
            q,
            r#"progress.status={"$in":["NEW","DOWNLOADING","INPROGRESS","TESTING","QUEUED"]}"#
        );
    }

    #[test]
    fn object_meta_reads_size_as_string_and_unescapes_the_url() {
        let body =
            br#"{"sha256sum":"ab","size":"1234","signed-geturl":"https://h/local-s3/t\\u0026x"}"#;
        assert_eq!(
            parse_object_meta(body),
            Some((1234, "https://h/local-s3/t&x".into()))
        );
        assert_eq!(
            parse_object_meta(br#"{"size":"x","signed-geturl":"u"}"#),
            None
        );
    }

    #[test]
    fn upload_goes_to_the_local_s3_path_only() {
        let c = put_object("https://elsewhere:9/local-s3/tok?x=1", "ab").unwrap();
        assert_eq!(c.path, "/local-s3/tok?x=1");
        assert!(put_object("https://s3/bucket/key", "ab").is_none());
    }

    #[test]
    fn steps_keep_hub_order_and_read_rev_state_status() {
        let body =
            br##"[{"rev":3,"state":{"#spec":"x"},"progress":{"status":"NEW"},"commit-msg":"m"},
                       {"rev":4,"state":{},"progress":{"status":"TESTING"}}]"##;
        let s = parse_steps(body).unwrap();
        assert_eq!(s[0].rev, "3");
        assert_eq!(s[0].commit_msg, "m");
        assert_eq!(s[1].status, "TESTING");
    }

    #[test]
    fn downloading_progress_carries_totals_and_others_do_not() {
        let t = Totals {
            total: 10,
            done: 5,
            start_unix: 1,
            now_unix: 2,
        };
        let p = Progress::new("DOWNLOADING", "Downloading update artifacts", 25);
        let c = progress("tr", "4", &p, Some(t));
        let v: Value = serde_json::from_slice(&c.body).unwrap();
        assert_eq!(v["downloads"]["total"]["total_downloaded"], 5);
        assert_eq!(c.path, "/trails/tr/steps/4/progress");
        let p = Progress::new("DONE", "x", 100);
        let v: Value = serde_json::from_slice(&progress("tr", "4", &p, Some(t)).body).unwrap();
        assert!(v.get("downloads").is_none());
        assert_eq!(v["retries"], 0);
    }

    #[test]
    fn user_meta_values_are_text() {
        let m = parse_user_meta(br#"{"a":"x","b":{"c":1},"d":2}"#).unwrap();
        assert_eq!(m[0], ("a".into(), "x".into()));
        assert_eq!(m[1], ("b".into(), r#"{"c":1}"#.into()));
        assert_eq!(m[2], ("d".into(), "2".into()));
    }
}
