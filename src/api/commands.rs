//! `POST /commands` (research §1.6): the body `{"op":…,"payload":…}`, Pantavisor's prefix
//! matching of op names, its rejections in its order, and the single command slot. Accepted
//! commands wait in [`Api::command`] for the reactor, which carries them out right after the
//! answer.

use super::{Api, ApiError};
use crate::http::Response;

/// The ops in Pantavisor's order (the order prefix matching walks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    UpdateMetadata,
    RebootDevice,
    PoweroffDevice,
    TryOnce,
    LocalRun,
    MakeFactory,
    RunGc,
    EnableSsh,
    DisableSsh,
    GoRemote,
    DeferReboot,
    LocalRunCommit,
    LocalApply,
    XconnectGraph,
    Unclaim,
}

const OPS: [(&str, Op); 15] = [
    ("UPDATE_METADATA", Op::UpdateMetadata),
    ("REBOOT_DEVICE", Op::RebootDevice),
    ("POWEROFF_DEVICE", Op::PoweroffDevice),
    ("TRY_ONCE", Op::TryOnce),
    ("LOCAL_RUN", Op::LocalRun),
    ("MAKE_FACTORY", Op::MakeFactory),
    ("RUN_GC", Op::RunGc),
    ("ENABLE_SSH", Op::EnableSsh),
    ("DISABLE_SSH", Op::DisableSsh),
    ("GO_REMOTE", Op::GoRemote),
    ("DEFER_REBOOT", Op::DeferReboot),
    ("LOCAL_RUN_COMMIT", Op::LocalRunCommit),
    ("LOCAL_APPLY", Op::LocalApply),
    ("XCONNECT_GRAPH", Op::XconnectGraph),
    ("UNCLAIM", Op::Unclaim),
];

/// Pantavisor compares `strncmp(op, name, strlen(op))`: the first name `op` is a prefix of.
pub fn parse_op(op: &str) -> Option<Op> {
    OPS.iter()
        .find(|(name, _)| name.starts_with(op))
        .map(|(_, o)| *o)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub op: Op,
    pub payload: String,
}

fn bad_format() -> ApiError {
    ApiError::bad_request("Command has bad format")
}

pub fn parse(body: &[u8]) -> Result<Command, ApiError> {
    let doc: serde_json::Value = serde_json::from_slice(body).map_err(|_| bad_format())?;
    let op = doc
        .get("op")
        .and_then(|v| v.as_str())
        .ok_or_else(bad_format)?;
    let payload = doc
        .get("payload")
        .and_then(|v| v.as_str())
        .ok_or_else(bad_format)?;
    let op = parse_op(op).ok_or_else(bad_format)?;
    Ok(Command {
        op,
        payload: payload.to_string(),
    })
}

fn busy(message: &str, retry_after: &str) -> Response {
    Response::error(503, message).with_header("Retry-After", retry_after.to_string())
}

/// Accept a command into the slot, or refuse it as Pantavisor does, in its order.
pub fn post(api: &mut Api, body: &[u8]) -> Result<Response, ApiError> {
    let cmd = parse(body)?;
    let local = !api.remote_mode();
    if cmd.op == Op::UpdateMetadata && local {
        return Err(ApiError::new(
            409,
            "Cannot do this operation while on local mode",
        ));
    }
    let blocked_by_update = matches!(
        cmd.op,
        Op::RebootDevice
            | Op::PoweroffDevice
            | Op::LocalRun
            | Op::LocalRunCommit
            | Op::MakeFactory
            | Op::Unclaim
            | Op::TryOnce
            | Op::LocalApply
    );
    if blocked_by_update && api.update_in_progress() {
        return Ok(busy(
            "Cannot do this operation while update is ongoing",
            "600",
        ));
    }
    if cmd.op == Op::GoRemote && !api.device.config.get_bool("PV_CONTROL_REMOTE") {
        return Err(ApiError::new(
            409,
            "Cannot do this operation when remote mode is disabled by config",
        ));
    }
    if cmd.op == Op::DeferReboot && !api.device.config.get_bool("PV_DEBUG_SHELL") {
        return Err(ApiError::new(
            409,
            "Cannot do this operation when debug shell is not active",
        ));
    }
    // Pantavisor words these 204s ("Already in remote mode", "Device is already
    // unclaimed"), but a 204 has no body in HTTP; the status says it.
    if cmd.op == Op::GoRemote && !local {
        return Ok(Response::empty(204));
    }
    if cmd.op == Op::Unclaim
        && api
            .device
            .hub_meta
            .get("pantahub.claimed")
            .map(String::as_str)
            != Some("1")
    {
        return Ok(Response::empty(204));
    }
    if api.command.is_some() {
        return Ok(busy("A command is already in progress. Try again", "120"));
    }
    api.command = Some(cmd);
    Ok(Response::ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_match_by_prefix_in_pantavisor_order() {
        assert_eq!(parse_op("LOCAL_RUN"), Some(Op::LocalRun));
        assert_eq!(parse_op("LOCAL_RUN_COMMIT"), Some(Op::LocalRunCommit));
        assert_eq!(parse_op("LOCAL"), Some(Op::LocalRun));
        assert_eq!(parse_op(""), Some(Op::UpdateMetadata));
        assert_eq!(parse_op("R"), Some(Op::RebootDevice));
        assert_eq!(parse_op("RUN"), Some(Op::RunGc));
        assert_eq!(parse_op("LOCAL_APPLY"), Some(Op::LocalApply));
        assert_eq!(parse_op("NOPE"), None);
        assert_eq!(parse_op("local_run"), None);
    }

    #[test]
    fn payload_is_required_and_must_be_a_string() {
        let ok = parse(br#"{"op":"LOCAL_RUN","payload":"locals/a"}"#);
        assert_eq!(
            ok,
            Ok(Command {
                op: Op::LocalRun,
                payload: "locals/a".into()
            })
        );
        for bad in [
            &br#"{"op":"LOCAL_RUN"}"#[..],
            br#"{"op":"LOCAL_RUN","payload":1}"#,
            br#"{"payload":""}"#,
            br#"{"op":"BOGUS","payload":""}"#,
            b"not json",
        ] {
            assert_eq!(
                parse(bad).map_err(|e| e.message),
                Err("Command has bad format".into())
            );
        }
    }
}
