//! The balena/resin supervisor's v1 device API (research `balena.md` §1–§5), served on the
//! loopback TCP listener: the same codes and the same odd bodies (`OK` as text,
//! `{"Data":"OK","Error":null}` for reboot, `{"status":"failed",…}` errors), an API key from
//! the `apikey` query parameter or an `Authorization: Bearer|ApiKey` header, and update
//! locks (`/tmp/balena/updates.lock` inside a container) that hold off stops and reboots.
//! An "app" is a container, named or numbered by its position in the revision (from 1).

use serde_json::{Value, json};

use super::{Api, Route};
use crate::http::{RequestHead, Response};

/// The v1 calls, after routing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Ping,
    Healthy,
    Blink,
    Update,
    Reboot,
    Shutdown,
    Purge,
    Restart,
    TcpPing(bool),
    RegenerateKey,
    Device,
    AppStop(String),
    AppStart(String),
    AppGet(String),
    NotFound(String),
}

/// Side effects for the reactor (they need the loop: timers, containers stopping first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Blink the identify LED for 15 s.
    Blink,
    /// Wipe the app's permanent storage: stop it, wipe, start it.
    Purge(String),
    /// Look for an update now (the hub client polls its steps).
    Update { force: bool },
}

fn text(status: u16, body: &str) -> Response {
    Response::text(status, body.as_bytes().to_vec())
}

fn failed(status: u16, message: &str) -> Response {
    Response::json(
        status,
        json!({"status": "failed", "message": message}).to_string(),
    )
}

fn route(method: &str, path: &str) -> Call {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segs.as_slice()) {
        ("GET", ["ping"]) => Call::Ping,
        ("GET", ["v1", "healthy"]) => Call::Healthy,
        ("POST", ["v1", "blink"]) => Call::Blink,
        ("POST", ["v1", "update"]) => Call::Update,
        ("POST", ["v1", "reboot"]) => Call::Reboot,
        ("POST", ["v1", "shutdown"]) => Call::Shutdown,
        ("POST", ["v1", "purge"]) => Call::Purge,
        ("POST", ["v1", "restart"]) => Call::Restart,
        ("POST", ["v1", "tcp-ping"]) => Call::TcpPing(true),
        ("DELETE", ["v1", "tcp-ping"]) => Call::TcpPing(false),
        ("POST", ["v1", "regenerate-api-key"]) => Call::RegenerateKey,
        ("GET", ["v1", "device"]) => Call::Device,
        ("POST", ["v1", "apps", app, "stop"]) => Call::AppStop((*app).to_string()),
        ("POST", ["v1", "apps", app, "start"]) => Call::AppStart((*app).to_string()),
        ("GET", ["v1", "apps", app]) => Call::AppGet((*app).to_string()),
        _ => Call::NotFound(format!("Cannot {method} {path}")),
    }
}

/// `%XX` and `+` decoding of one query value.
fn decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The key a request presents: `apikey` in the query wins, then the Authorization header.
pub fn presented_key(head: &RequestHead) -> Option<String> {
    if let Some(q) = head.query() {
        for pair in q.split('&') {
            if let Some(v) = pair.strip_prefix("apikey=") {
                return Some(decode(v));
            }
        }
    }
    let auth = std::str::from_utf8(head.header("authorization")?).ok()?;
    let (scheme, key) = auth.trim().split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("apikey"))
        .then(|| key.trim().to_string())
}

/// Equal without revealing where they differ through timing.
pub fn same_key(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

/// Route a v1 request and check its key; the answer at once, or the call to complete.
/// `/programs` is served here too, behind the key, with the key left out of its selector.
pub fn begin(api: &Api, head: &RequestHead) -> Result<Route, Response> {
    let call = route(&head.method, head.path());
    let open = matches!(call, Call::Ping | Call::Healthy);
    if !open {
        let ok = presented_key(head).is_some_and(|k| same_key(&k, &api.v1_key));
        if !ok {
            return Err(text(401, "Unauthorized"));
        }
    }
    if head.path() == "/programs" || head.path().starts_with("/programs/") {
        return match super::route(&head.method, head.path()) {
            Ok(Route::Programs { op, tag, .. }) => Ok(Route::Programs {
                op,
                tag,
                query: head.query().map(without_key),
            }),
            _ => Err(text(
                404,
                &format!("Cannot {} {}", head.method, head.path()),
            )),
        };
    }
    Ok(Route::V1(call))
}

/// The query without its `apikey=` parameter (the rest is a pies selector).
fn without_key(query: &str) -> String {
    query
        .split('&')
        .filter(|p| !p.starts_with("apikey="))
        .collect::<Vec<_>>()
        .join("&")
}

/// balena's `checkTruthy`: true, 1, "1", "true", "on".
fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        Some(Value::String(s)) => matches!(s.to_ascii_lowercase().as_str(), "1" | "true" | "on"),
        _ => false,
    }
}

/// A JSON body or a form body (`a=1&b=2`), as an object; malformed JSON is `Err`.
fn body_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, ()> {
    let trimmed = String::from_utf8_lossy(body);
    let t = trimmed.trim();
    if t.is_empty() {
        return Ok(serde_json::Map::new());
    }
    if t.starts_with('{') {
        return match serde_json::from_str(t) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(()),
        };
    }
    Ok(t.split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (decode(k), Value::String(decode(v))))
        .collect())
}

/// A container from an app id: its name, or its position in the revision (from 1).
fn app(api: &Api, id: &str) -> Option<String> {
    let run = api.device.running.as_ref()?;
    let cs = &run.state.containers;
    if let Some(c) = cs.iter().find(|c| c.name == id) {
        return Some(c.name.clone());
    }
    let n: usize = id.trim().trim_end_matches(".0").parse().ok()?;
    cs.get(n.checked_sub(1)?).map(|c| c.name.clone())
}

fn app_of_body(body: &serde_json::Map<String, Value>) -> Option<String> {
    match body.get("appId")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn lock_dir(api: &Api, name: &str) -> std::path::PathBuf {
    api.device.config.rundir().join("locks").join(name)
}

const LOCK_FILES: [&str; 2] = ["updates.lock", "resin-updates.lock"];

/// Whether container `name` holds an update lock (for updates, which wait for it).
pub fn lock_held(run_dir: &std::path::Path, name: &str) -> bool {
    let dir = run_dir.join("locks").join(name);
    LOCK_FILES.iter().any(|f| dir.join(f).exists())
}

/// Whether the app holds an update lock; `force` removes the user's locks instead.
fn locked(api: &Api, name: &str, force: bool) -> bool {
    let dir = lock_dir(api, name);
    let mut held = false;
    for f in LOCK_FILES {
        let path = dir.join(f);
        if path.exists() {
            if force {
                log::warn!(
                    "v1: {name}: update lock {} overridden (force)",
                    path.display()
                );
                let _ = std::fs::remove_file(&path).or_else(|_| std::fs::remove_dir_all(&path));
            } else {
                held = true;
            }
        }
    }
    held
}

fn container_id(rev: &str, name: &str) -> String {
    use sha2::{Digest, Sha256};
    crate::store::objects::hex(&Sha256::digest(format!("{rev}/{name}").as_bytes()))
}

pub fn complete(api: &mut Api, call: Call, body: &[u8]) -> Response {
    let Ok(b) = body_object(body) else {
        // balena's error middleware answers malformed JSON with 503.
        return failed(503, "Invalid JSON body");
    };
    let force = truthy(b.get("force"));
    let stop = matches!(call, Call::AppStop(_));
    match call {
        Call::Ping => text(200, "OK"),
        Call::Healthy => match api.unhealthy() {
            None => text(200, "OK"),
            Some(why) => {
                log::warn!("v1: healthcheck failed: {why}");
                text(500, "Unhealthy")
            }
        },
        Call::NotFound(msg) => text(404, &msg),
        Call::Blink => {
            api.v1_effects.push(Effect::Blink);
            text(200, "OK")
        }
        // The hub client polls for steps at once; `force` lets the switch pass update locks
        // (the download never waits for them). Without a hub client it is a no-op.
        Call::Update => {
            api.v1_effects.push(Effect::Update { force });
            text(202, "Accepted")
        }
        Call::Reboot | Call::Shutdown => {
            let names: Vec<String> = api
                .device
                .running
                .as_ref()
                .map(|r| r.state.containers.iter().map(|c| c.name.clone()).collect())
                .unwrap_or_default();
            let held: Vec<&String> = names.iter().filter(|n| locked(api, n, force)).collect();
            if !held.is_empty() {
                let msg = format!("Updates are locked by {}", held[0]);
                return Response::json(423, json!({"Data": "", "Error": msg}).to_string());
            }
            let op = if call == Call::Reboot {
                super::commands::Op::RebootDevice
            } else {
                super::commands::Op::PoweroffDevice
            };
            api.command = Some(super::commands::Command {
                op,
                payload: "v1 API".into(),
            });
            Response::json(202, r#"{"Data":"OK","Error":null}"#)
        }
        Call::Purge => {
            let name = match unlocked_app(api, &b, force, "Invalid or missing appId") {
                Ok(n) => n,
                Err(resp) => return resp,
            };
            log::info!("v1: purging data for app {name}");
            api.v1_effects.push(Effect::Purge(name));
            Response::json(200, r#"{"Data":"OK","Error":""}"#)
        }
        Call::Restart => {
            let name = match unlocked_app(api, &b, force, "Missing app id") {
                Ok(n) => n,
                Err(resp) => return resp,
            };
            match container_action(api, &name, "restart") {
                Ok(()) => text(200, "OK"),
                Err(m) => failed(503, &m),
            }
        }
        Call::TcpPing(on) => {
            let path = api.device.storage.root().join("cache/tcp-ping");
            let value: &[u8] = if on { b"1" } else { b"0" };
            match crate::store::durable::write_atomic(&path, value) {
                Ok(()) => Response::empty(204),
                Err(e) => failed(503, &e.to_string()),
            }
        }
        Call::RegenerateKey => match api.regenerate_v1_key() {
            Ok(k) => text(200, &k),
            Err(e) => failed(503, &e),
        },
        Call::Device => Response::json(200, device(api).to_string()),
        Call::AppStop(id) | Call::AppStart(id) => {
            let Some(name) = app(api, &id) else {
                return text(400, "App not found");
            };
            if stop && locked(api, &name, force) {
                return failed(423, &format!("Updates are locked by {name}"));
            }
            let rev = api
                .device
                .running
                .as_ref()
                .map_or(String::new(), |r| r.rev.clone());
            match container_action(api, &name, if stop { "stop" } else { "start" }) {
                Ok(()) => Response::json(
                    200,
                    json!({"containerId": container_id(&rev, &name)}).to_string(),
                ),
                Err(m) => failed(503, &m),
            }
        }
        Call::AppGet(id) => {
            let Some(name) = app(api, &id) else {
                return text(400, "App not found");
            };
            Response::json(200, app_json(api, &id, &name).to_string())
        }
    }
}

/// The app a purge or restart names, in the current state and not locked (or forced).
fn unlocked_app(
    api: &Api,
    b: &serde_json::Map<String, Value>,
    force: bool,
    missing: &str,
) -> Result<String, Response> {
    let id = app_of_body(b).ok_or_else(|| text(400, missing))?;
    let name = app(api, &id).ok_or_else(|| {
        failed(
            503,
            &format!("Application with ID {id} is not in the current state"),
        )
    })?;
    if locked(api, &name, force) {
        return Err(failed(423, &format!("Updates are locked by {name}")));
    }
    Ok(name)
}

/// The engine's own rules apply (a `system` container refuses, as over pv-ctrl).
fn container_action(api: &mut Api, name: &str, action: &str) -> Result<(), String> {
    let run = api.device.running.as_mut().ok_or("State not loaded yet")?;
    let body = json!({ "action": action }).to_string();
    let actions = run
        .supervisor
        .api(name, body.as_bytes(), std::time::Instant::now())
        .map_err(|(_, m)| m.to_string())?;
    api.actions.extend(actions);
    Ok(())
}

fn app_json(api: &Api, id: &str, name: &str) -> Value {
    let Some(run) = api.device.running.as_ref() else {
        return json!({});
    };
    let c = run.state.containers.iter().find(|c| c.name == name);
    let image = c
        .and_then(|c| {
            let root = c.root_volume.as_deref()?;
            let root = root.strip_prefix("dm:").unwrap_or(root);
            let artifact = format!("{}/{root}", c.dir);
            run.state
                .objects
                .iter()
                .find(|(p, _)| *p == artifact)
                .map(|(_, sha)| sha.clone())
        })
        .unwrap_or_default();
    let env: serde_json::Map<String, Value> = api
        .v1_env(name)
        .into_iter()
        .filter(|(k, _)| !k.ends_with("API_KEY"))
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    json!({
        "appId": id,
        "commit": run.rev,
        "containerId": container_id(&run.rev, name),
        "env": env,
        "imageId": image,
    })
}

/// `GET /v1/device`.
fn device(api: &Api) -> Value {
    let port = api
        .device
        .config
        .get("TERN_V1_ADDRESS")
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(48484);
    let status = match (&api.device.update, &api.device.running) {
        (Some(_), _) => "Installing",
        (None, Some(r)) if r.supervisor.revision_status() == crate::engine::Status::Ready => "Idle",
        (None, Some(_)) => "Starting",
        (None, None) => "Stopped",
    };
    let mut d = json!({
        "api_port": port,
        "ip_address": crate::sysinfo::ip_addresses().join(" "),
        "status": status,
        "download_progress": api.device.hub_status.download.map(|(done, total)| {
            done.saturating_mul(100).checked_div(total).unwrap_or(100)
        }),
        "os_version": crate::sysinfo::os_version(),
        "supervisor_version": format!("tern-{}", env!("CARGO_PKG_VERSION")),
        "update_pending": api.device.update.is_some() || api.device.hub_status.download.is_some(),
        "update_downloaded": api.device.hub_status.download.is_some_and(|(d, t)| d >= t),
        "update_failed": api.device.hub_status.failed,
    });
    // balena leaves `commit` out while an update is being applied.
    if api.device.update.is_none()
        && let Some(r) = &api.device.running
    {
        d["commit"] = json!(r.rev);
    }
    d
}

/// The key, the containers' environment and the health check: the API's v1 state.
impl Api {
    fn v1_key_path(&self) -> std::path::PathBuf {
        self.device.storage.root().join("cache/v1-api-key")
    }

    /// Load the v1 API key, or make and persist one on first start.
    pub fn load_v1_key(&mut self) {
        match std::fs::read_to_string(self.v1_key_path()) {
            Ok(k) if !k.trim().is_empty() => self.v1_key = k.trim().to_string(),
            _ => {
                if let Err(e) = self.regenerate_v1_key() {
                    log::error!("v1: cannot create an API key: {e}");
                }
            }
        }
    }

    /// A new random key, durable before it is used; the old one stops working at once.
    pub fn regenerate_v1_key(&mut self) -> Result<String, String> {
        use std::io::Read;
        let mut raw = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut raw))
            .map_err(|e| format!("/dev/urandom: {e}"))?;
        let key = crate::store::objects::hex(&raw);
        crate::store::durable::write_atomic(&self.v1_key_path(), key.as_bytes())
            .map_err(|e| e.to_string())?;
        self.v1_key = key.clone();
        Ok(key)
    }

    /// What a container is told about the v1 API: address and key under Tern's, resin's and
    /// balena's names, and where its update lock goes.
    pub fn v1_env(&self, _container: &str) -> Vec<(String, String)> {
        let Some(addr) = self
            .device
            .config
            .get("TERN_V1_ADDRESS")
            .filter(|a| !a.is_empty() && !a.eq_ignore_ascii_case("off"))
        else {
            return Vec::new();
        };
        let (host, port) = addr.rsplit_once(':').unwrap_or((addr, "48484"));
        let mut env = Vec::new();
        for p in ["TERN", "RESIN", "BALENA"] {
            env.push((format!("{p}_SUPERVISOR_ADDRESS"), format!("http://{addr}")));
            env.push((format!("{p}_SUPERVISOR_HOST"), host.to_string()));
            env.push((format!("{p}_SUPERVISOR_PORT"), port.to_string()));
            env.push((format!("{p}_SUPERVISOR_API_KEY"), self.v1_key.clone()));
        }
        for p in ["RESIN", "BALENA"] {
            env.push((
                format!("{p}_APP_LOCK_PATH"),
                "/tmp/balena/updates.lock".into(),
            ));
        }
        env
    }

    /// Why `/v1/healthy` fails, if it does: a board daemon that should run has been down
    /// and waiting to respawn, the hub client's state reports failing again and again while
    /// the hub is reachable, or the test-only override. The loop itself is healthy by
    /// construction here (a stalled loop answers nothing at all).
    pub fn unhealthy(&self) -> Option<String> {
        if let Some(why) = &self.forced_unhealthy {
            return Some(why.clone());
        }
        if self.device.hub_status.reports_failing {
            return Some("state reports to the hub keep failing".into());
        }
        self.daemons
            .list()
            .iter()
            .find(|d| d.respawn && d.pid.is_none() && d.waiting)
            .map(|d| format!("daemon {} is not running", d.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_follow_the_balena_paths() {
        assert_eq!(route("GET", "/ping"), Call::Ping);
        assert_eq!(route("POST", "/v1/apps/2/stop"), Call::AppStop("2".into()));
        assert_eq!(route("GET", "/v1/apps/web"), Call::AppGet("web".into()));
        assert_eq!(route("DELETE", "/v1/tcp-ping"), Call::TcpPing(false));
        assert_eq!(route("GET", "/x"), Call::NotFound("Cannot GET /x".into()));
    }

    #[test]
    fn keys_compare_whole() {
        assert!(same_key("abc", "abc"));
        assert!(!same_key("abc", "abd"));
        assert!(!same_key("abc", "abcd"));
        assert!(!same_key("", "a"));
    }

    #[test]
    fn bodies_and_flags_parse_like_balena() {
        let m = body_object(br#"{"appId": 2, "force": "on"}"#).unwrap_or_default();
        assert_eq!(app_of_body(&m), Some("2".into()));
        assert!(truthy(m.get("force")));
        let f = body_object(b"appId=web&force=1").unwrap_or_default();
        assert_eq!(app_of_body(&f), Some("web".into()));
        assert!(truthy(f.get("force")));
        assert!(body_object(b"{not json").is_err());
        assert!(!truthy(Some(&json!("yes"))));
        assert_eq!(decode("a%20b+c%zz"), "a b c%zz");
    }
}
