//! The test hub's device API: which handler answers which method and path, the bearer
//! token check, and the handlers for registration, login, the device record, its
//! metadata, and log push. Trails and objects have modules of their own.

use serde_json::{Map, Value, json};

use super::message::{Request, Response};
use super::model::{self, Token};
use super::shared::Shared;
use super::{objects, text, trails, views};

enum Route<'a> {
    Register,
    Login,
    LocalS3(&'a str),
    GetDevice(&'a str),
    ClaimDevice(&'a str),
    UserMeta(&'a str),
    DeviceMeta(&'a str),
    ListTrails,
    PostTrail,
    Steps(&'a str),
    Progress(&'a str, &'a str),
    GetObject(&'a str),
    PostObject,
    PostLogs,
}

fn find<'a>(method: &str, path: &'a str) -> Option<Route<'a>> {
    let segs: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    Some(match (method, segs.as_slice()) {
        ("POST", ["devices", ""]) => Route::Register,
        ("POST", ["auth", "login"]) => Route::Login,
        ("GET" | "PUT", ["local-s3", tok]) if !tok.is_empty() => Route::LocalS3(tok),
        ("GET", ["devices", id]) if !id.is_empty() => Route::GetDevice(id),
        ("PUT", ["devices", id]) if !id.is_empty() => Route::ClaimDevice(id),
        ("GET", ["devices", id, "user-meta"]) => Route::UserMeta(id),
        ("PUT" | "PATCH", ["devices", id, "device-meta"]) => Route::DeviceMeta(id),
        ("GET", ["trails", ""]) => Route::ListTrails,
        ("POST", ["trails", ""]) => Route::PostTrail,
        ("GET", ["trails", id, "steps"]) => Route::Steps(id),
        ("PUT", ["trails", id, "steps", rev, "progress"]) => Route::Progress(id, rev),
        ("GET", ["objects", sha]) if !sha.is_empty() => Route::GetObject(sha),
        ("POST", ["objects", ""]) => Route::PostObject,
        ("POST", ["logs", ""]) => Route::PostLogs,
        _ => return None,
    })
}

/// Answers one request (faults already applied).
pub fn route(hub: &Shared, req: &Request) -> Response {
    let Some(route) = find(&req.method, req.path()) else {
        return Response::error(404, "Not Found");
    };
    match route {
        Route::Register => return register(hub, req),
        Route::Login => return login(hub, req),
        Route::LocalS3(tok) => return objects::local_s3(hub, req, tok),
        _ => {}
    }
    let tok = match authenticate(hub, req) {
        Ok(t) => t,
        Err(r) => return r,
    };
    match route {
        Route::GetDevice(id) => get_device(hub, &tok, id),
        Route::ClaimDevice(id) => claim(hub, req, &tok, id),
        Route::UserMeta(id) => user_meta(hub, req, &tok, id),
        Route::DeviceMeta(id) => device_meta(hub, req, &tok, id),
        Route::ListTrails => trails::list(hub, &tok),
        Route::PostTrail => trails::create(hub, req, &tok),
        Route::Steps(id) => trails::steps(hub, req, &tok, id),
        Route::Progress(id, rev) => trails::progress(hub, req, &tok, id, rev),
        Route::GetObject(sha) => objects::get(hub, &tok, sha),
        Route::PostObject => objects::create(hub, req, &tok),
        Route::PostLogs => post_logs(hub, req, &tok),
        Route::Register | Route::Login | Route::LocalS3(_) => Response::error(500, "unreachable"),
    }
}

/// The login behind `Authorization: Bearer <token>`, or the JWT layer's 401: its own
/// body (`{"Error":"Not Authorized"}`, not the hub's error shape) and a challenge header.
/// The scheme must be exactly `Bearer` with one space, as that layer reads it.
pub fn authenticate(hub: &Shared, req: &Request) -> Result<Token, Response> {
    let token = req
        .header("Authorization")
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| *scheme == "Bearer")
        .and_then(|(_, tok)| hub.model().token(tok));
    token.ok_or_else(|| {
        let realm = format!(
            "JWT realm=\"pantahub services\", ph-aeps=\"https://localhost:{}/auth\"",
            hub.port
        );
        Response::json(401, &json!({"Error": "Not Authorized"}))
            .with_header("WWW-Authenticate", &realm)
    })
}

/// May this login create objects, trails or logs? By default only with a non-empty owner.
/// With `empty_owner_passes`, as pantahub-base checks: the owner claim only has to exist,
/// and a device token always has one, `""` before the claim.
pub fn may_write(hub: &Shared, tok: &Token) -> bool {
    hub.opts.empty_owner_passes || !tok.owner.is_empty()
}

fn no_user_agent(req: &Request) -> bool {
    req.header("User-Agent")
        .is_none_or(|ua| ua.trim().is_empty())
}

fn register(hub: &Shared, req: &Request) -> Response {
    // With a bearer token the JWT layer runs first, and the caller becomes the owner.
    let bearer = req
        .header("Authorization")
        .is_some_and(|h| h.trim().to_ascii_lowercase().starts_with("bearer "));
    let caller = match bearer {
        true => match authenticate(hub, req) {
            Ok(t) => Some(t.prn),
            Err(r) => return r,
        },
        false => None,
    };
    if no_user_agent(req) {
        return Response::user_error(403, "Incompatible Client; upgrade pantavisor");
    }
    // The hub ignores a body it cannot decode, and fields of the wrong type.
    let body = match req.json() {
        Some(Value::Object(b)) => b,
        _ => Map::new(),
    };
    let text_field = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    let nick = text_field("nick");
    let nick_ok = |n: &String| {
        n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_+%".contains(&b))
    };
    if nick.as_ref().is_some_and(|n| !nick_ok(n)) {
        return Response::error(400, "Invalid Device Nick");
    }
    let auto = req
        .header("Pantahub-Devices-Auto-Token-V1")
        .filter(|t| !t.is_empty() && caller.is_none())
        .map(String::from);
    let mut m = hub.model();
    if let Some(t) = &auto
        && !m.autotokens.contains_key(t)
    {
        return Response::error(400, "Error using AutoAuthToken");
    }
    let device_meta = match body.get("device-meta") {
        Some(Value::Object(dm)) if caller.is_none() => dm.clone(),
        _ => Map::new(),
    };
    let d = m.register(model::Registration {
        secret: text_field("secret"),
        nick,
        device_meta,
        owner: caller,
        auto,
    });
    Response::ok(&views::device_json(d, true))
}

fn login(hub: &Shared, req: &Request) -> Response {
    if no_user_agent(req) {
        return Response::user_error(403, "Incompatible Client; upgrade pantavisor");
    }
    let Some(Value::Object(body)) = req.json() else {
        return Response::error(400, "Error decoding json payload");
    };
    let field = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("");
    match hub
        .model()
        .login(field("username"), field("password"), hub.opts.token_ttl)
    {
        Some(token) => Response::ok(&json!({ "token": token })),
        None => Response::error(401, "Incorrect Username or Password"),
    }
}

/// A device may only see and change itself; the user, the devices it owns.
fn own_device(hub: &Shared, tok: &Token, id: &str) -> Result<(), Response> {
    if tok.is_device() && tok.device_id == id {
        return Ok(());
    }
    match hub.model().device(id) {
        None => Err(Response::error(404, "Not Found")),
        Some(d) if !tok.is_device() && d.owner == tok.prn => Ok(()),
        Some(_) => Err(Response::error(403, "No Access to Device")),
    }
}

/// `PUT /devices/<id>?challenge=<c>` by the user.
fn claim(hub: &Shared, req: &Request, tok: &Token, id: &str) -> Response {
    let challenge = text::query_pairs(req.query())
        .into_iter()
        .find(|(k, _)| k == "challenge")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let mut m = hub.model();
    if tok.is_device() || tok.prn != m.user_owner || !m.claim_with(id, &challenge) {
        return Response::error(403, "No Access to Device");
    }
    match m.device(id) {
        Some(d) => Response::ok(&views::device_json(d, true)),
        None => Response::error(404, "Not Found"),
    }
}

fn get_device(hub: &Shared, tok: &Token, id: &str) -> Response {
    if let Err(r) = own_device(hub, tok, id) {
        return r;
    }
    match hub.model().device(id) {
        Some(d) => Response::ok(&views::device_json(d, false)),
        None => Response::error(404, "Not Found"),
    }
}

fn user_meta(hub: &Shared, req: &Request, tok: &Token, id: &str) -> Response {
    // A device's lookup includes its own prn: another device's id is simply not found.
    if tok.is_device() && tok.device_id != id {
        return Response::error(404, "Device not found");
    }
    if let Err(r) = own_device(hub, tok, id) {
        return r;
    }
    let Some(meta) = hub
        .model()
        .device(id)
        .map(|d| Value::Object(d.user_meta.clone()))
    else {
        return Response::error(404, "Not Found");
    };
    if !hub.opts.etag_user_meta {
        return Response::ok(&meta);
    }
    let etag = format!(
        "\"{}\"",
        &text::sha256_hex(meta.to_string().as_bytes())[..32]
    );
    if req
        .header("If-None-Match")
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        let mut r = Response::new(304, "application/json; charset=utf-8", Vec::new());
        r.headers.clear();
        return r.with_header("ETag", &etag);
    }
    Response::ok(&meta).with_header("ETag", &etag)
}

/// PUT replaces the device-meta, PATCH merges it with `null` deleting. As pantahub-base,
/// PUT stores keys quoted (`.` as U+FF2E) while PATCH merges and deletes the keys as sent,
/// so a PATCH cannot delete or cleanly replace a dotted key that a PUT stored.
fn device_meta(hub: &Shared, req: &Request, tok: &Token, id: &str) -> Response {
    if !tok.is_device() {
        return Response::error(400, "Device data can only be updated by Device");
    }
    let patch = req.method == "PATCH";
    if tok.device_id != id {
        // PUT looks the device up by id and caller (not found); PATCH compares them first.
        return Response::error(if patch { 400 } else { 404 }, "Device not found");
    }
    let Some(Value::Object(body)) = req.json() else {
        return Response::error(400, "Error parsing data");
    };
    let mut m = hub.model();
    let Some(d) = m.device_mut(id) else {
        return Response::error(404, "Device not found");
    };
    if patch {
        merge(&mut d.device_meta, body);
    } else {
        d.device_meta = model::quote_keys(body);
    }
    d.modified = text::rfc3339_now();
    Response::status_ok()
}
/// Merges `patch` into `into`; a `null` value deletes the key.
pub fn merge(into: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (k, v) in patch {
        if v.is_null() {
            into.remove(&k);
        } else {
            into.insert(k, v);
        }
    }
}

/// `POST /logs/`: an array of entries or one entry. As pantahub-base decodes them, a field
/// of the wrong type fails the whole body (400), `null` is an empty field, unknown fields
/// are dropped, and the hub adds `id`, `dev`, `own`, `time-created` and a default `lvl`.
fn post_logs(hub: &Shared, req: &Request, tok: &Token) -> Response {
    if !tok.is_device() || !may_write(hub, tok) {
        return Response::error(403, "You need to be logged in as device with owner");
    }
    let entries = match req.json() {
        Some(Value::Array(a)) => a,
        Some(v @ Value::Object(_)) => vec![v],
        _ => return Response::error(400, "Error parsing logs body"),
    };
    let mut stored = Vec::with_capacity(entries.len());
    for e in &entries {
        let Some(mut entry) = log_entry(e) else {
            return Response::error(400, "Error parsing logs body");
        };
        entry.insert("id".into(), json!(text::random_hex(24)));
        entry.insert("dev".into(), json!(tok.prn));
        entry.insert("own".into(), json!(tok.owner));
        entry.insert("time-created".into(), json!(text::rfc3339_now()));
        if entry
            .get("lvl")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            entry.insert("lvl".into(), json!("INFO"));
        }
        stored.push(Value::Object(entry));
    }
    hub.model().logs.extend(stored);
    Response::status_ok()
}

/// The known fields of one log entry, or `None` if one has the wrong type.
fn log_entry(e: &Value) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    let fields = match e {
        Value::Null => return Some(out),
        Value::Object(o) => o,
        _ => return None,
    };
    for (k, v) in fields {
        let ok = match (k.as_str(), v) {
            (_, Value::Null) => continue,
            ("tsec" | "tnano", Value::Number(n)) => n.is_i64(),
            ("rev" | "plat" | "src" | "lvl" | "msg", Value::String(_)) => true,
            ("tsec" | "tnano" | "rev" | "plat" | "src" | "lvl" | "msg", _) => false,
            _ => continue,
        };
        if !ok {
            return None;
        }
        out.insert(k.clone(), v.clone());
    }
    Some(out)
}
