//! Pantavisor's rules for `PUT /containers/{name}` and `POST /signal` (`ctrl_containers_ep.c`,
//! `pv_state_interpret_signal`): which action a container in which status accepts, and the
//! exact status and message of every refusal. Pure checks; the container machine carries
//! the accepted action out. The caller's role (403) and the name lookup (404) come first and
//! belong to the API layer; [`NOT_FOUND`] is here so every message lives in one place.

use serde_json::Value;

use super::Status;
use crate::spec::{RestartPolicy, StatusGoal};

/// An HTTP status and Pantavisor's `{"Error":…}` message.
pub type Refusal = (u16, &'static str);

pub const NOT_FOUND: Refusal = (404, "Container not found");
pub const SYSTEM_POLICY: Refusal = (
    403,
    "Container has restart_policy 'system' and cannot be controlled via API",
);
pub const NO_DATA: Refusal = (400, "No data");
pub const INVALID_JSON: Refusal = (400, "Invalid JSON");
pub const MISSING_ACTION: Refusal = (400, "Missing 'action' field");
pub const INVALID_ACTION: Refusal = (400, "Invalid action. Use 'start', 'stop', or 'restart'");
pub const START_REFUSED: Refusal = (
    400,
    "Container must be in STOPPED, STOPPING, or RECOVERING state to start",
);
pub const RESTART_REFUSED: Refusal = (400, "Container state does not allow restart");
pub const SIGNAL_NOT_EXPECTED: Refusal = (500, "Signal not expected from this platform");

/// An accepted lifecycle action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiAction {
    Start,
    Stop,
    Restart,
}

impl ApiAction {
    pub fn parse(s: &str) -> Option<ApiAction> {
        match s {
            "start" => Some(ApiAction::Start),
            "stop" => Some(ApiAction::Stop),
            "restart" => Some(ApiAction::Restart),
            _ => None,
        }
    }
}

/// Whether a container in `status` with `policy` accepts `action` (the `action` field's
/// text). Check order as Pantavisor's: restart policy, action name, then status.
pub fn api_action(
    status: Status,
    policy: RestartPolicy,
    action: &str,
) -> Result<ApiAction, Refusal> {
    if policy != RestartPolicy::Container {
        return Err(SYSTEM_POLICY);
    }
    let a = ApiAction::parse(action).ok_or(INVALID_ACTION)?;
    allowed(status, a)?;
    Ok(a)
}

/// The whole check of a request body after the name was found: restart policy, body
/// (`No data`, `Invalid JSON`, `Missing 'action' field`), action, status.
pub fn api_request(
    status: Status,
    policy: RestartPolicy,
    body: &[u8],
) -> Result<ApiAction, Refusal> {
    if policy != RestartPolicy::Container {
        return Err(SYSTEM_POLICY);
    }
    if body.is_empty() {
        return Err(NO_DATA);
    }
    let doc: Value = serde_json::from_slice(body).map_err(|_| INVALID_JSON)?;
    let action = match doc.get("action") {
        None => return Err(MISSING_ACTION),
        Some(Value::String(s)) => s.clone(),
        // Pantavisor compares the raw token text: `1`, `null`, … are unknown actions.
        Some(other) => other.to_string(),
    };
    api_action(status, policy, &action)
}

/// Status rules: stop is always accepted (a no-op when already stopped by the user); start
/// is a no-op while running and refused before the first start; restart needs a running,
/// stopping, stopped or recovering container.
fn allowed(status: Status, a: ApiAction) -> Result<(), Refusal> {
    match (a, status) {
        (ApiAction::Stop, _) => Ok(()),
        (
            ApiAction::Start,
            Status::Starting
            | Status::Started
            | Status::Ready
            | Status::Stopped
            | Status::Recovering
            | Status::Stopping,
        ) => Ok(()),
        (ApiAction::Start, Status::Installed | Status::Mounted | Status::Blocked) => {
            Err(START_REFUSED)
        }
        (
            ApiAction::Restart,
            Status::Starting
            | Status::Started
            | Status::Ready
            | Status::Stopped
            | Status::Recovering
            | Status::Stopping,
        ) => Ok(()),
        (ApiAction::Restart, Status::Installed | Status::Mounted | Status::Blocked) => {
            Err(RESTART_REFUSED)
        }
    }
}

/// `POST /signal {"type":"ready"}` from a container whose goal is `goal`: only READY goals
/// expect it (Pantavisor answers 500 otherwise).
pub fn ready_signal(goal: StatusGoal) -> Result<(), Refusal> {
    match goal {
        StatusGoal::Ready => Ok(()),
        StatusGoal::Mounted | StatusGoal::Started => Err(SIGNAL_NOT_EXPECTED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Status; 9] = [
        Status::Installed,
        Status::Mounted,
        Status::Blocked,
        Status::Starting,
        Status::Started,
        Status::Ready,
        Status::Recovering,
        Status::Stopping,
        Status::Stopped,
    ];

    fn c(status: Status, action: &str) -> Result<ApiAction, Refusal> {
        api_action(status, RestartPolicy::Container, action)
    }

    #[test]
    fn stop_of_system_container_is_403() {
        assert_eq!(
            api_action(Status::Started, RestartPolicy::System, "stop"),
            Err((
                403,
                "Container has restart_policy 'system' and cannot be controlled via API"
            ))
        );
    }

    #[test]
    fn every_action_on_a_system_container_is_403_in_every_status() {
        for s in ALL {
            for a in ["start", "stop", "restart", "dance"] {
                assert_eq!(
                    api_action(s, RestartPolicy::System, a),
                    Err(SYSTEM_POLICY),
                    "{s} {a}"
                );
            }
        }
    }

    #[test]
    fn restart_policy_is_checked_before_the_body() {
        assert_eq!(
            api_request(Status::Started, RestartPolicy::System, b""),
            Err(SYSTEM_POLICY)
        );
        assert_eq!(
            api_request(Status::Started, RestartPolicy::System, b"{"),
            Err(SYSTEM_POLICY)
        );
    }

    #[test]
    fn unknown_action_is_400_with_pantavisor_message() {
        assert_eq!(
            c(Status::Started, "kill"),
            Err((400, "Invalid action. Use 'start', 'stop', or 'restart'"))
        );
        assert_eq!(c(Status::Started, "START"), Err(INVALID_ACTION));
        assert_eq!(
            c(Status::Installed, "kill"),
            Err(INVALID_ACTION),
            "action before status"
        );
    }

    #[test]
    fn stop_is_accepted_in_every_status() {
        for s in ALL {
            assert_eq!(c(s, "stop"), Ok(ApiAction::Stop), "{s}");
        }
    }

    #[test]
    fn start_rules_by_status() {
        let ok = [
            Status::Starting,
            Status::Started,
            Status::Ready,
            Status::Recovering,
            Status::Stopping,
            Status::Stopped,
        ];
        for s in ok {
            assert_eq!(c(s, "start"), Ok(ApiAction::Start), "{s}");
        }
        for s in [Status::Installed, Status::Mounted, Status::Blocked] {
            assert_eq!(
                c(s, "start"),
                Err((
                    400,
                    "Container must be in STOPPED, STOPPING, or RECOVERING state to start"
                )),
                "{s}"
            );
        }
    }

    #[test]
    fn restart_rules_by_status() {
        for s in [
            Status::Starting,
            Status::Started,
            Status::Ready,
            Status::Recovering,
            Status::Stopping,
            Status::Stopped,
        ] {
            assert_eq!(c(s, "restart"), Ok(ApiAction::Restart), "{s}");
        }
        for s in [Status::Installed, Status::Mounted, Status::Blocked] {
            assert_eq!(
                c(s, "restart"),
                Err((400, "Container state does not allow restart")),
                "{s}"
            );
        }
    }

    #[test]
    fn request_bodies_are_checked_in_pantavisor_order() {
        let cases: [(&[u8], Result<ApiAction, Refusal>); 9] = [
            (b"", Err((400, "No data"))),
            (b"{not json", Err((400, "Invalid JSON"))),
            (b"{}", Err((400, "Missing 'action' field"))),
            (br#"{"verb":"stop"}"#, Err(MISSING_ACTION)),
            (br#"{"action":1}"#, Err(INVALID_ACTION)),
            (br#"{"action":null}"#, Err(INVALID_ACTION)),
            (br#"{"action":"stop"}"#, Ok(ApiAction::Stop)),
            (
                br#"{"action":"restart","extra":true}"#,
                Ok(ApiAction::Restart),
            ),
            (br#"{"action":"start"}"#, Ok(ApiAction::Start)),
        ];
        for (body, want) in cases {
            assert_eq!(
                api_request(Status::Started, RestartPolicy::Container, body),
                want,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn request_status_refusals_come_after_the_body() {
        assert_eq!(
            api_request(
                Status::Installed,
                RestartPolicy::Container,
                br#"{"action":"start"}"#
            ),
            Err(START_REFUSED)
        );
        assert_eq!(
            api_request(Status::Installed, RestartPolicy::Container, b"{}"),
            Err(MISSING_ACTION)
        );
    }

    #[test]
    fn ready_signal_needs_a_ready_goal() {
        assert_eq!(ready_signal(StatusGoal::Ready), Ok(()));
        assert_eq!(
            ready_signal(StatusGoal::Started),
            Err((500, "Signal not expected from this platform"))
        );
        assert_eq!(ready_signal(StatusGoal::Mounted), Err(SIGNAL_NOT_EXPECTED));
    }

    #[test]
    fn not_found_message_is_pantavisors() {
        assert_eq!(NOT_FOUND, (404, "Container not found"));
    }
}
