//! Groups: the default table (data, root, platform, app), group entries of `device.json`
//! (or legacy `groups.json`) with their parser defaults, and the rule that puts a container
//! without a group into one. Pure data; the start order and goal checks are `engine::group`.

use serde_json::Value;

use super::fields::Obj;
use super::recovery::{AutoRecovery, BackoffPolicy, RecoveryPolicy};
use super::{RestartPolicy, SpecError, StatusGoal};

/// `PV_UPDATER_GOALS_TIMEOUT`'s default: the timeout of a group entry without `timeout`.
pub const DEFAULT_GOALS_TIMEOUT: u32 = 120;

/// One group, in start order within [`super::State::groups`].
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: String,
    /// Default status goal of its containers.
    pub status_goal: StatusGoal,
    /// Default restart policy of its containers.
    pub restart_policy: RestartPolicy,
    /// Seconds a container of this group has to reach its goal once started.
    pub timeout: u32,
    /// Default auto-recovery of its containers ([`AutoRecovery::NONE`] when it has none).
    pub auto_recovery: AutoRecovery,
}

/// Where the groups of a state came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupSource {
    /// No `device.json` and no `groups.json`: Pantavisor's built-in table, with the runlevel
    /// assignment rule (first unassigned container to `root`, the rest to `platform`).
    Default,
    /// `device.json`'s `groups`; unassigned containers go to the last group.
    DeviceJson,
    /// Legacy `groups.json` (only when there is no `device.json`).
    GroupsJson,
}

/// Pantavisor's `defaults/groups.json`.
pub fn default_groups() -> Vec<Group> {
    let g = |name: &str, goal, policy, auto_recovery| Group {
        name: name.to_string(),
        status_goal: goal,
        restart_policy: policy,
        timeout: 30,
        auto_recovery,
    };
    vec![
        g(
            "data",
            StatusGoal::Mounted,
            RestartPolicy::System,
            AutoRecovery::NONE,
        ),
        g(
            "root",
            StatusGoal::Started,
            RestartPolicy::System,
            AutoRecovery::NONE,
        ),
        g(
            "platform",
            StatusGoal::Started,
            RestartPolicy::System,
            AutoRecovery::NONE,
        ),
        g(
            "app",
            StatusGoal::Started,
            RestartPolicy::Container,
            AutoRecovery {
                policy: RecoveryPolicy::OnFailure,
                max_retries: 5,
                retry_delay: 5,
                backoff_factor: 2.0,
                reset_window: 0,
                stable_timeout: 30,
                backoff_policy: BackoffPolicy::Reboot,
            },
        ),
    ]
}

/// Parse a `groups` array found at `field` (`groups` in device.json, empty for the
/// top-level array of groups.json) of `artifact`. Entry defaults: status_goal STARTED,
/// restart_policy container, timeout `goals_timeout`, no auto_recovery.
pub fn parse_groups(
    artifact: &str,
    field: &str,
    value: &Value,
    goals_timeout: u32,
) -> Result<Vec<Group>, SpecError> {
    let Value::Array(items) = value else {
        return Err(SpecError::new(
            artifact,
            field,
            "expected an array of groups",
        ));
    };
    if items.is_empty() {
        return Err(SpecError::new(
            artifact,
            field,
            "empty array (at least one group is needed)",
        ));
    }
    let mut groups: Vec<Group> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("{field}[{i}]");
        let root = Obj {
            artifact,
            path: "",
            map: &serde_json::Map::new(),
        };
        let o = root.nested(&path, item)?;
        let g = parse_group(o, goals_timeout)?;
        if groups.iter().any(|x| x.name == g.name) {
            return Err(o.err("name", format!("group '{}' is defined twice", g.name)));
        }
        groups.push(g);
    }
    Ok(groups)
}

fn parse_group(o: Obj, goals_timeout: u32) -> Result<Group, SpecError> {
    let name = match o.str("name")? {
        Some(n) if !n.is_empty() => n.to_string(),
        Some(_) => return Err(o.err("name", "must not be empty")),
        None => return Err(o.err("name", "missing (every group needs a name)")),
    };
    let status_goal = match o.str("status_goal")? {
        None => StatusGoal::Started,
        Some(s) => {
            StatusGoal::parse(s).ok_or_else(|| o.err("status_goal", StatusGoal::invalid(s)))?
        }
    };
    let restart_policy = match o.str("restart_policy")? {
        None => RestartPolicy::Container,
        Some(s) => RestartPolicy::parse(s)
            .ok_or_else(|| o.err("restart_policy", RestartPolicy::invalid(s)))?,
    };
    let timeout = o.count("timeout")?.unwrap_or(goals_timeout);
    let auto_recovery = match o.get("auto_recovery") {
        None => AutoRecovery::NONE,
        Some(v) => {
            let path = o.field("auto_recovery");
            AutoRecovery::parse(o.nested(&path, v)?)?
        }
    };
    Ok(Group {
        name,
        status_goal,
        restart_policy,
        timeout,
        auto_recovery,
    })
}

/// Put every container without a group (`None`) into one; `Some(i)` are indices into
/// `groups`. With the default table (`source == Default`): the first unassigned container
/// goes to `root` when no container is in `root`, the rest to `platform`. With custom groups:
/// to the last group (Pantavisor's `pv_state_set_default_groups`). `Err` names the first
/// container that cannot be placed.
pub fn assign(
    wanted: &[Option<usize>],
    groups: &[Group],
    source: GroupSource,
) -> Result<Vec<usize>, usize> {
    let index = |n: &str| groups.iter().position(|g| g.name == n);
    let first_unassigned = wanted.iter().position(Option::is_none);
    let Some(first) = first_unassigned else {
        return Ok(wanted.iter().map(|w| w.unwrap_or(0)).collect());
    };
    let (root_pick, rest) = match source {
        GroupSource::Default => {
            let (Some(root), Some(platform)) = (index("root"), index("platform")) else {
                return Err(first);
            };
            let root_taken = wanted.contains(&Some(root));
            let pick = if root_taken { None } else { Some(root) };
            (pick, platform)
        }
        GroupSource::DeviceJson | GroupSource::GroupsJson => match groups.len() {
            0 => return Err(first),
            n => (None, n - 1),
        },
    };
    Ok(wanted
        .iter()
        .enumerate()
        .map(|(i, w)| match (w, root_pick) {
            (Some(g), _) => *g,
            (None, Some(root)) if i == first => root,
            (None, _) => rest,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn groups(v: Value) -> Result<Vec<Group>, String> {
        parse_groups("device.json", "groups", &v, DEFAULT_GOALS_TIMEOUT).map_err(|e| e.to_string())
    }

    #[test]
    fn default_table_matches_pantavisor() {
        let d = default_groups();
        let rows: Vec<_> = d
            .iter()
            .map(|g| {
                (
                    g.name.as_str(),
                    g.status_goal,
                    g.restart_policy,
                    g.timeout,
                    g.auto_recovery.policy,
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                (
                    "data",
                    StatusGoal::Mounted,
                    RestartPolicy::System,
                    30,
                    RecoveryPolicy::No
                ),
                (
                    "root",
                    StatusGoal::Started,
                    RestartPolicy::System,
                    30,
                    RecoveryPolicy::No
                ),
                (
                    "platform",
                    StatusGoal::Started,
                    RestartPolicy::System,
                    30,
                    RecoveryPolicy::No
                ),
                (
                    "app",
                    StatusGoal::Started,
                    RestartPolicy::Container,
                    30,
                    RecoveryPolicy::OnFailure
                ),
            ]
        );
        let app = &d[3].auto_recovery;
        assert_eq!(
            (
                app.max_retries,
                app.retry_delay,
                app.backoff_factor,
                app.stable_timeout,
                app.backoff_policy
            ),
            (5, 5, 2.0, 30, BackoffPolicy::Reboot)
        );
    }

    #[test]
    fn group_entry_defaults_are_started_container_and_goals_timeout() {
        let g = groups(json!([{"name":"System"}]));
        assert_eq!(
            g,
            Ok(vec![Group {
                name: "System".into(),
                status_goal: StatusGoal::Started,
                restart_policy: RestartPolicy::Container,
                timeout: 120,
                auto_recovery: AutoRecovery::NONE,
            }])
        );
    }

    #[test]
    fn group_entry_takes_every_field() {
        let g = groups(
            json!([{"name":"net","description":"x","status_goal":"READY",
            "restart_policy":"system","timeout":"45","auto_recovery":{"policy":"always"}}]),
        );
        let g = g.ok().and_then(|v| v.into_iter().next());
        let g = g.map(|g| {
            (
                g.status_goal,
                g.restart_policy,
                g.timeout,
                g.auto_recovery.policy,
            )
        });
        assert_eq!(
            g,
            Some((
                StatusGoal::Ready,
                RestartPolicy::System,
                45,
                RecoveryPolicy::Always
            ))
        );
    }

    #[test]
    fn groups_keep_their_order() {
        let g = groups(json!([{"name":"b"},{"name":"a"},{"name":"c"}]));
        let names: Vec<String> = g.unwrap_or_default().into_iter().map(|g| g.name).collect();
        assert_eq!(names, ["b", "a", "c"]);
    }

    #[test]
    fn invalid_group_entries_are_named() {
        let cases = [
            (
                json!({}),
                "device.json: groups: expected an array of groups",
            ),
            (
                json!([]),
                "device.json: groups: empty array (at least one group is needed)",
            ),
            (
                json!([5]),
                "device.json: groups[0]: expected an object, got a number",
            ),
            (
                json!([{"status_goal":"READY"}]),
                "device.json: groups[0].name: missing (every group needs a name)",
            ),
            (
                json!([{"name":""}]),
                "device.json: groups[0].name: must not be empty",
            ),
            (
                json!([{"name":"a"},{"name":"a"}]),
                "device.json: groups[1].name: group 'a' is defined twice",
            ),
            (
                json!([{"name":"a","status_goal":"RUNNING"}]),
                "device.json: groups[0].status_goal: 'RUNNING' is not MOUNTED, STARTED or READY",
            ),
            (
                json!([{"name":"a","restart_policy":"always"}]),
                "device.json: groups[0].restart_policy: 'always' is not system or container",
            ),
            (
                json!([{"name":"a","timeout":-1}]),
                "device.json: groups[0].timeout: -1 is not a whole number >= 0",
            ),
            (
                json!([{"name":"a","auto_recovery":{"policy":"x"}}]),
                "device.json: groups[0].auto_recovery.policy: 'x' is not no, always, on-failure or unless-stopped",
            ),
            (
                json!([{"name":"a","auto_recovery":[]}]),
                "device.json: groups[0].auto_recovery: expected an object, got an array",
            ),
        ];
        for (v, want) in cases {
            assert_eq!(groups(v.clone()), Err(want.to_string()), "{v}");
        }
    }

    #[test]
    fn default_assignment_puts_first_unassigned_in_root_and_rest_in_platform() {
        let d = default_groups();
        let got = assign(&[None, None, Some(3), None], &d, GroupSource::Default);
        assert_eq!(got, Ok(vec![1, 2, 3, 2]));
    }

    #[test]
    fn default_assignment_skips_root_when_root_is_taken() {
        let d = default_groups();
        let got = assign(&[None, Some(1), None], &d, GroupSource::Default);
        assert_eq!(got, Ok(vec![2, 1, 2]));
    }

    #[test]
    fn default_assignment_root_pick_is_first_unassigned_not_first_container() {
        let d = default_groups();
        let got = assign(&[Some(0), None, None], &d, GroupSource::Default);
        assert_eq!(got, Ok(vec![0, 1, 2]));
    }

    #[test]
    fn custom_groups_put_unassigned_containers_in_the_last_group() {
        let g = groups(json!([{"name":"a"},{"name":"b"}])).unwrap_or_default();
        assert_eq!(
            assign(&[None, Some(0), None], &g, GroupSource::DeviceJson),
            Ok(vec![1, 0, 1])
        );
    }

    #[test]
    fn unassigned_container_without_any_group_fails() {
        assert_eq!(
            assign(&[Some(0), None], &[], GroupSource::DeviceJson),
            Err(1)
        );
    }

    #[test]
    fn fully_assigned_containers_are_kept() {
        let d = default_groups();
        assert_eq!(
            assign(&[Some(3), Some(0)], &d, GroupSource::Default),
            Ok(vec![3, 0])
        );
        assert_eq!(assign(&[], &d, GroupSource::Default), Ok(vec![]));
    }
}
