//! `/programs`, GNU pies style: the revision's containers and the board's daemons as pies
//! components, chosen by a JSON selector (query string, request body, or `/programs/TAG`).
//! `GET` describes them, `DELETE` stops, `PUT` starts, `POST` (and `POST /programs/restart`)
//! restarts; every action answers one `{"tag","status":"OK"|"ER"[,"message"]}` per match.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::selector::{self, Component, Kind, Mode, Selector, Status};
use super::{Api, ApiError};
use crate::engine::{Status as CStatus, TimerKind};
use crate::http::Response;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    List,
    Start,
    Stop,
    Restart,
}

/// One component as the selector and the description see it.
struct Entry {
    name: String,
    status: Status,
    active: bool,
    pid: Option<i32>,
    argv: Option<Vec<String>>,
    /// Unix time a sleeping container is retried.
    wakeup: Option<u64>,
    daemon: bool,
}

fn status_of(s: CStatus) -> Status {
    match s {
        CStatus::Starting | CStatus::Started | CStatus::Ready => Status::Running,
        CStatus::Recovering => Status::Sleeping,
        CStatus::Stopping => Status::Stopping,
        CStatus::Installed | CStatus::Mounted | CStatus::Blocked | CStatus::Stopped => {
            Status::Stopped
        }
    }
}

fn entries(api: &Api) -> Vec<Entry> {
    let mut out = Vec::new();
    let now = Instant::now();
    let unix_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if let Some(run) = &api.device.running {
        for c in run.supervisor.containers() {
            let wakeup = (c.status == CStatus::Recovering)
                .then(|| c.timer(TimerKind::Retry))
                .flatten()
                .map(|at| unix_now + at.saturating_duration_since(now).as_secs());
            out.push(Entry {
                name: c.name().to_string(),
                status: status_of(c.status),
                active: !c.user_stopped,
                pid: c.pid,
                argv: None,
                wakeup,
                daemon: false,
            });
        }
    }
    for d in api.daemons.list() {
        out.push(Entry {
            name: d.name.clone(),
            status: match (d.pid, d.waiting) {
                (Some(_), _) => Status::Running,
                (None, true) => Status::Sleeping,
                (None, false) => Status::Stopped,
            },
            active: d.respawn,
            pid: d.pid,
            argv: Some(vec!["/bin/sh".into(), "-c".into(), d.command.clone()]),
            wakeup: None,
            daemon: true,
        });
    }
    out
}

fn component(e: &Entry) -> Component<'_> {
    Component {
        name: &e.name,
        kind: Kind::Component,
        mode: Mode::Respawn,
        active: e.active,
        status: e.status,
    }
}

/// pies's description: attributes that do not apply are left out.
fn describe(e: &Entry) -> Value {
    let mut d = json!({
        "tag": e.name,
        "type": "component",
        "mode": "respawn",
        "status": e.status.as_str(),
        "active": e.active,
    });
    if let Some(pid) = e.pid {
        d["pid"] = json!(pid);
    }
    if let Some(argv) = &e.argv {
        d["argv"] = json!(argv);
    }
    if let Some(w) = e.wakeup {
        d["wakeup"] = json!(w);
    }
    d
}

/// The selector of a request: the tag of `/programs/TAG`, else the query, else the body
/// (nothing at all selects every component).
pub fn selector_of(
    tag: Option<&str>,
    query: Option<&str>,
    body: &[u8],
) -> Result<Selector, ApiError> {
    let bad = |e: selector::SelectorError| ApiError::bad_request(e.message());
    match (tag, query.filter(|q| !q.trim().is_empty())) {
        (Some(t), _) => Ok(Selector::tag(t)),
        (None, Some(q)) => selector::parse_query(q).map_err(bad),
        (None, None) => selector::parse_body(body).map_err(bad),
    }
}

pub fn handle(api: &mut Api, op: Op, sel: &Selector) -> Result<Response, ApiError> {
    let matched: Vec<Entry> = entries(api)
        .into_iter()
        .filter(|e| sel.matches(&component(e)))
        .collect();
    if op == Op::List {
        let list: Vec<Value> = matched.iter().map(describe).collect();
        return Ok(Response::json(200, Value::Array(list).to_string()));
    }
    let mut results = Vec::with_capacity(matched.len());
    for e in &matched {
        let outcome = if e.daemon {
            let r = match op {
                Op::Stop => api.daemons.stop(&e.name),
                // A daemon restart is a stop now and a start once it is gone; a start
                // while it still runs is a no-op, so both go out together.
                Op::Restart => api.daemons.stop(&e.name).and_then(|mut a| {
                    api.daemons.start(&e.name).map(|b| {
                        a.extend(b);
                        a
                    })
                }),
                _ => api.daemons.start(&e.name),
            };
            r.map(|actions| api.daemon_actions.extend(actions))
                .map_err(|(_, m)| m.to_string())
        } else {
            let action = match op {
                Op::Stop => "stop",
                Op::Restart => "restart",
                _ => "start",
            };
            let body = json!({ "action": action }).to_string();
            match api.device.running.as_mut() {
                Some(run) => run
                    .supervisor
                    .api(&e.name, body.as_bytes(), Instant::now())
                    .map(|actions| api.actions.extend(actions))
                    .map_err(|(_, m)| m.to_string()),
                None => Err("State not loaded yet".to_string()),
            }
        };
        results.push(match outcome {
            Ok(()) => json!({"tag": e.name, "status": "OK"}),
            Err(m) => json!({"tag": e.name, "status": "ER", "message": m}),
        });
    }
    Ok(Response::json(200, Value::Array(results).to_string()))
}
