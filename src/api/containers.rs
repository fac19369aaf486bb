//! `/containers`, `/groups`, `/signal` and the mgmt role check every other endpoint needs.
//! The engine decides (which action a container accepts, what it leads to); these handlers
//! find the machines, turn refusals into answers and queue the engine's actions for the
//! reactor.

use std::time::Instant;

use super::{Api, ApiError, Owner, Running};
use crate::engine::api::Refusal;
use crate::http::Response;

/// Largest `PUT /containers/{name}` body (Pantavisor's cap).
pub const MAX_ACTION_BYTES: usize = 1024;

const NOT_LOADED: &str = "State not loaded yet";

fn refused((status, message): Refusal) -> ApiError {
    ApiError::new(status, message)
}

/// The host may call everything; a container only with role `mgmt`.
pub fn check_mgmt(api: &Api, owner: &Owner) -> Result<(), ApiError> {
    let Owner::Container(name) = owner else {
        return Ok(());
    };
    let container = api
        .device
        .running
        .as_ref()
        .and_then(|r| r.state.containers.iter().find(|c| &c.name == name));
    match container {
        Some(c) if c.mgmt => Ok(()),
        Some(_) => Err(ApiError::new(403, "Request not sent from a mgmt platform")),
        // A cgroup or ancestry naming no container of this revision: a leftover of another
        // revision, or a forged cgroup path. Pantavisor answers the same.
        None => Err(ApiError::new(500, "Internal error, unknown caller")),
    }
}

impl Api {
    /// Whether `owner` may call the management endpoints (admission reserves slots for it).
    pub fn may_manage(&self, owner: &Owner) -> bool {
        check_mgmt(self, owner).is_ok()
    }
}

fn running(api: &Api) -> Result<&Running, ApiError> {
    api.device
        .running
        .as_ref()
        .ok_or_else(|| ApiError::new(500, NOT_LOADED))
}

pub fn list(api: &Api) -> Result<Response, ApiError> {
    Ok(Response::json(
        200,
        running(api)?.supervisor.containers_json(),
    ))
}

pub fn groups(api: &Api) -> Result<Response, ApiError> {
    Ok(Response::json(200, running(api)?.supervisor.groups_json()))
}

pub fn put(api: &mut Api, name: &str, body: &[u8]) -> Result<Response, ApiError> {
    let run = api
        .device
        .running
        .as_mut()
        .ok_or_else(|| ApiError::new(500, NOT_LOADED))?;
    let actions = run
        .supervisor
        .api(name, body, Instant::now())
        .map_err(refused)?;
    api.actions.extend(actions);
    Ok(Response::empty(200))
}

/// `POST /signal {"type":"ready","payload":…}` from a container of the running revision.
pub fn signal(api: &mut Api, owner: &Owner, body: &[u8]) -> Result<Response, ApiError> {
    let kind = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("type")?.as_str().map(str::to_string))
        .ok_or_else(|| ApiError::bad_request("Signal has bad format"))?;
    let run = api
        .device
        .running
        .as_mut()
        .ok_or_else(|| ApiError::new(500, NOT_LOADED))?;
    let not_expected = || refused(crate::engine::api::SIGNAL_NOT_EXPECTED);
    let Owner::Container(name) = owner else {
        return Err(not_expected());
    };
    if kind != "ready" {
        return Err(not_expected());
    }
    let actions = run
        .supervisor
        .ready(name, Instant::now())
        .map_err(refused)?;
    api.actions.extend(actions);
    Ok(Response::empty(200))
}
