//! The JSON shapes against Pantavisor's golden outputs (meta-pantavisor pvtests, quoted in
//! research §1.4 and `pantavisor-golden/`).

use std::time::Duration;

use super::*;
use crate::engine::container::{Config, DEFAULT_STOP_GRACE};
use crate::spec::{AutoRecovery, BackoffPolicy, RecoveryPolicy, StatusGoal, default_groups};

/// `jq -M` pretty output back to compact form (drops whitespace outside strings).
fn minify(pretty: &str) -> String {
    let mut out = String::new();
    let mut in_str = false;
    let mut escaped = false;
    for ch in pretty.chars() {
        if in_str {
            out.push(ch);
            match (escaped, ch) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
        } else if ch == '"' {
            in_str = true;
            out.push(ch);
        } else if !ch.is_whitespace() {
            out.push(ch);
        }
    }
    out
}

fn container(
    name: &str,
    group: &str,
    policy: RestartPolicy,
    mgmt: bool,
    status: Status,
) -> Container {
    let mut c = Container::new(Config {
        name: name.into(),
        group: group.into(),
        goal: StatusGoal::Started,
        restart_policy: policy,
        mgmt,
        recovery: AutoRecovery::NONE,
        goal_timeout: Duration::from_secs(30),
        stop_grace: DEFAULT_STOP_GRACE,
    });
    c.status = status;
    c
}

/// `pvtest:control/basic-endpoints`, `pvcontrol groups ls | jq -M`.
const GOLDEN_GROUPS: &str = r#"[
  {
    "name": "data",
    "status_goal": "MOUNTED",
    "restart_policy": "system",
    "status": "READY"
  },
  {
    "name": "root",
    "status_goal": "STARTED",
    "restart_policy": "system",
    "status": "READY"
  },
  {
    "name": "platform",
    "status_goal": "STARTED",
    "restart_policy": "system",
    "status": "READY"
  },
  {
    "name": "app",
    "status_goal": "STARTED",
    "restart_policy": "container",
    "status": "READY",
    "auto_recovery": {
      "max_retries": 5,
      "stable_timeout": 30,
      "backoff_policy": "reboot"
    }
  }
]"#;

/// `pvtest:control/basic-endpoints`, `pvcontrol ls | jq -M`.
const GOLDEN_CONTAINERS: &str = r#"[
  {
    "name": "pvr-sdk",
    "group": "platform",
    "status": "STARTED",
    "status_goal": "STARTED",
    "restart_policy": "system",
    "roles": [
      "mgmt"
    ]
  }
]"#;

/// `pvtest:security/container-roles`, raw (compact) output.
const GOLDEN_ROLES: &str = r#"[{"name":"pv-example-norole","group":"root","status":"STARTED","status_goal":"STARTED","restart_policy":"system","roles":[]},{"name":"pvr-sdk","group":"platform","status":"STARTED","status_goal":"STARTED","restart_policy":"system","roles":["mgmt"]}]"#;

#[test]
fn default_groups_render_like_basic_endpoints_golden() {
    let groups = default_groups();
    let got = groups_json(groups.iter().map(|g| (g, Status::Ready)));
    assert_eq!(got, minify(GOLDEN_GROUPS));
}

#[test]
fn app_group_renders_like_research_example() {
    let groups = default_groups();
    assert_eq!(
        group_json(&groups[3], Status::Ready),
        r#"{"name":"app","status_goal":"STARTED","restart_policy":"container","status":"READY","auto_recovery":{"max_retries":5,"stable_timeout":30,"backoff_policy":"reboot"}}"#
    );
}

#[test]
fn group_status_is_the_live_status() {
    let groups = default_groups();
    assert_eq!(
        group_json(&groups[1], Status::Starting),
        r#"{"name":"root","status_goal":"STARTED","restart_policy":"system","status":"STARTING"}"#
    );
}

#[test]
fn group_backoff_duration_renders_pantavisor_style() {
    let mut g = default_groups().remove(3);
    g.auto_recovery.backoff_policy = BackoffPolicy::Wait(600);
    assert!(group_json(&g, Status::Ready).ends_with(r#""backoff_policy":"10min"}}"#));
}

#[test]
fn system_container_renders_like_basic_endpoints_golden() {
    let c = container(
        "pvr-sdk",
        "platform",
        RestartPolicy::System,
        true,
        Status::Started,
    );
    assert_eq!(containers_json([&c]), minify(GOLDEN_CONTAINERS));
}

#[test]
fn roles_render_like_container_roles_golden() {
    let norole = container(
        "pv-example-norole",
        "root",
        RestartPolicy::System,
        false,
        Status::Started,
    );
    let sdk = container(
        "pvr-sdk",
        "platform",
        RestartPolicy::System,
        true,
        Status::Started,
    );
    assert_eq!(containers_json([&norole, &sdk]), GOLDEN_ROLES);
}

#[test]
fn container_policy_adds_user_stopped_as_a_string() {
    let mut c = container(
        "app1",
        "app",
        RestartPolicy::Container,
        false,
        Status::Stopped,
    );
    c.user_stopped = true;
    assert_eq!(
        container_json(&c),
        r#"{"name":"app1","group":"app","status":"STOPPED","status_goal":"STARTED","restart_policy":"container","roles":[],"user_stopped":"true"}"#
    );
    c.user_stopped = false;
    assert!(container_json(&c).ends_with(r#""user_stopped":"false"}"#));
}

#[test]
fn auto_recovery_renders_between_roles_and_user_stopped() {
    let mut c = container(
        "app1",
        "app",
        RestartPolicy::Container,
        false,
        Status::Recovering,
    );
    c.cfg.recovery = AutoRecovery {
        policy: RecoveryPolicy::OnFailure,
        max_retries: 5,
        retry_delay: 5,
        backoff_factor: 2.0,
        reset_window: 60,
        stable_timeout: 30,
        backoff_policy: BackoffPolicy::Wait(600),
    };
    c.tracker.current_retries = 2;
    assert_eq!(
        container_json(&c),
        concat!(
            r#"{"name":"app1","group":"app","status":"RECOVERING","status_goal":"STARTED","restart_policy":"container","roles":[],"#,
            r#""auto_recovery":{"policy":"on-failure","max_retries":5,"current_retries":2,"stable_timeout":30,"is_stable":"false","backoff_policy":"10min"},"#,
            r#""user_stopped":"false"}"#
        )
    );
    c.tracker.is_stable = true;
    assert!(container_json(&c).contains(r#""is_stable":"true""#));
}

#[test]
fn policy_no_has_no_auto_recovery_object() {
    let c = container("a", "app", RestartPolicy::Container, true, Status::Started);
    assert!(!container_json(&c).contains("auto_recovery"));
}

#[test]
fn every_status_and_goal_renders_by_name() {
    for (goal, name) in [
        (StatusGoal::Mounted, "MOUNTED"),
        (StatusGoal::Started, "STARTED"),
        (StatusGoal::Ready, "READY"),
    ] {
        let mut c = container("a", "g", RestartPolicy::System, true, Status::Blocked);
        c.cfg.goal = goal;
        assert!(
            container_json(&c).contains(&format!(r#""status":"BLOCKED","status_goal":"{name}""#))
        );
    }
}

#[test]
fn empty_lists_render_as_empty_arrays() {
    assert_eq!(containers_json(std::iter::empty::<&Container>()), "[]");
    assert_eq!(groups_json(std::iter::empty()), "[]");
}

#[test]
fn strings_are_escaped() {
    assert_eq!(quote("a\"b\\c\nd\u{1}é"), r#""a\"b\\c\nd\u0001é""#);
    let c = container(
        "we\"ird",
        "g",
        RestartPolicy::System,
        true,
        Status::Installed,
    );
    let v: Result<serde_json::Value, _> = serde_json::from_str(&container_json(&c));
    assert_eq!(
        v.ok()
            .and_then(|v| v["name"].as_str().map(String::from))
            .as_deref(),
        Some("we\"ird")
    );
}

#[test]
fn minify_keeps_spaces_inside_strings() {
    assert_eq!(minify("{ \"a b\": [ 1 ] }"), "{\"a b\":[1]}");
}
