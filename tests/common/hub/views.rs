//! How the test hub's records look on the wire: the device, trail and step JSON and the
//! step progress object, with pantahub-base's field names and types.

use serde_json::{Value, json};

use super::model::{Device, Step, Trail, unquote_keys};

/// A fresh step progress as the hub stores it.
pub fn default_progress(status: &str, progress: i64) -> Value {
    json!({
        "progress": progress,
        "downloads": {"total": obj_progress_zero(), "objects": null},
        "status-msg": "",
        "status": status,
        "log": "",
    })
}

pub fn obj_progress_zero() -> Value {
    json!({"total_size": 0, "start_time": 0, "current_time": 0, "total_downloaded": 0})
}

/// The device as the hub sends it. `secret` and `challenge` are left out when empty (the
/// hub blanks the secret on every GET); `owner-nick` appears once the device is owned.
pub fn device_json(d: &Device, with_secret: bool) -> Value {
    let mut v = json!({
        "id": d.id,
        "prn": d.prn,
        "nick": d.nick,
        "owner": d.owner,
        "time-created": d.created,
        "time-modified": d.modified,
        "public": false,
        "user-meta": d.user_meta,
        "device-meta": unquote_keys(&d.device_meta),
        "garbage": false,
        "mark_public_processed": false,
    });
    if with_secret && !d.secret.is_empty() {
        v["secret"] = json!(d.secret);
    }
    if !d.challenge.is_empty() {
        v["challenge"] = json!(d.challenge);
    }
    if !d.owner.is_empty() {
        let nick = d.owner.rsplit('/').next().unwrap_or("");
        v["owner-nick"] = json!(nick);
    }
    v
}

pub fn trail_json(t: &Trail) -> Value {
    json!({
        "id": t.id,
        "owner": t.owner,
        "device": t.device,
        "last-insync": t.last_insync,
        "last-touched": t.last_touched,
        "factory-state": t.factory_state,
        "used_objects": t.used_objects,
    })
}

pub fn step_json(s: &Step) -> Value {
    json!({
        "id": format!("{}-{}", s.trail_id, s.rev),
        "owner": s.owner,
        "device": s.device,
        "committer": s.owner,
        "trail-id": s.trail_id,
        "rev": s.rev,
        "commit-msg": s.commit_msg,
        "state": s.state,
        "state-sha": s.state_sha,
        "progress": s.progress,
        "step-time": s.step_time,
        "progress-time": s.progress_time,
        "meta": {},
        "used_objects": s.used_objects,
        "mark_public_processed": false,
        "garbage": false,
        "time-created": s.created,
        "time-modified": s.modified,
    })
}
