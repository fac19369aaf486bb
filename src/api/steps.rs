//! `/steps`: revisions, their state JSON, progress and commit message.

use super::{Api, ApiError, MAX_STATE_BYTES, Sink, memory_body};
use crate::http::Response;
use crate::spec;
use crate::store::Progress;

fn resolve(api: &Api, rev: &str) -> Result<String, ApiError> {
    api.device
        .storage
        .trails
        .resolve(rev)
        .ok_or_else(ApiError::not_found)
}

pub fn get(api: &Api, rev: &str) -> Result<Response, ApiError> {
    let rev = resolve(api, rev)?;
    let state = api
        .device
        .storage
        .trails
        .read_state(&rev)
        .map_err(|_| ApiError::not_found())?;
    Ok(Response::json(200, state))
}

pub fn progress(api: &Api, rev: &str) -> Result<Response, ApiError> {
    let rev = resolve(api, rev)?;
    let p = api
        .device
        .storage
        .trails
        .read_progress(&rev)
        .map_err(|_| ApiError::not_found())?;
    Ok(Response::json(200, p))
}

pub fn plan_put(api: &Api, declared: Option<u64>) -> Result<Sink, Response> {
    if declared.is_some_and(|n| n > MAX_STATE_BYTES) {
        return Err(super::too_large(MAX_STATE_BYTES).closing());
    }
    let near = api.device.storage.trails.dir().join("upload");
    Sink::spool(near, MAX_STATE_BYTES).map_err(|e| ApiError::internal(e).into_response().closing())
}

pub fn finish_put(api: &mut Api, rev: &str, sink: Sink) -> Result<Response, ApiError> {
    let Sink::Spool(spool) = sink else {
        return Err(ApiError::internal("state body was not spooled"));
    };
    let state = spool.read_all().map_err(ApiError::internal)?;
    drop(spool);
    if let Err(why) = spec::validate_state(&state) {
        log::warn!("steps: refusing {rev}: {why}");
        return Err(ApiError::new(422, "Parser: State JSON has bad format"));
    }
    if api.device.storage.trails.current().as_deref() == Some(rev) {
        return Err(ApiError::new(409, "Cannot overwrite the running revision"));
    }
    // Before anything is written: a refused revision leaves no trace in the storage.
    let sb = &api.device.secureboot;
    let verdict = sb.check(&api.device.config, "PUT /steps", rev, &state);
    if let Some(msg) = verdict.refused() {
        return Err(ApiError::new(422, format!("Secureboot: {msg}")));
    }
    api.device.secureboot.remember(rev, &verdict);
    let progress = Progress::new("NEW", "Update ready to be run", 0);
    api.device
        .storage
        .trails
        .install(rev, &state, &progress)
        .map_err(|e| {
            if crate::store::objects::is_no_space(&e) {
                ApiError::no_space()
            } else {
                ApiError::internal(e)
            }
        })?;
    log::info!("steps: stored revision {rev} ({} bytes)", state.len());
    Ok(Response::ok())
}

pub fn commitmsg(api: &Api, rev: &str, sink: Sink) -> Result<Response, ApiError> {
    let msg = memory_body(&sink);
    if msg.is_empty() {
        return Err(ApiError::bad_request("No commit message"));
    }
    let rev = resolve(api, rev)?;
    api.device
        .storage
        .trails
        .write_commitmsg(&rev, msg)
        .map_err(ApiError::internal)?;
    Ok(Response::ok())
}
