//! Table tests of run.json parsing (one document at a time).

use super::*;
use crate::spec::{BackoffPolicy, RecoveryPolicy};
use serde_json::json;

fn run(v: Value) -> Result<RunJson, String> {
    parse("c/run.json", &v).map_err(|e| e.to_string())
}

fn ok(v: Value) -> RunJson {
    match parse("c/run.json", &v) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn minimal_run_json_takes_defaults() {
    let r = ok(json!({"name":"c"}));
    assert_eq!(r.name, "c");
    assert_eq!(r.kind, "lxc");
    assert_eq!(r.group, GroupRequest::None);
    assert_eq!(r.status_goal, None);
    assert_eq!(r.restart_policy, None);
    assert_eq!(r.auto_recovery, None);
    assert!(r.mgmt, "no roles key means mgmt");
    assert!(r.automodfw);
    assert!(!r.export);
    assert_eq!(r.dev_log, None);
    assert!(r.volumes.is_empty() && r.storage.is_empty() && r.logs.is_empty());
    assert_eq!(r.network, None);
}

#[test]
fn example_a_awconnect_run_json_parses() {
    let r = ok(
        json!({"#spec":"service-manifest-run@1","config":"lxc.container.conf","name":"awconnect",
        "root-volume":"root.squashfs","storage":{"docker--etc-NetworkManager-system-connections":{"persistence":"permanent"},
        "lxc-overlay":{"persistence":"boot"}},"type":"lxc","volumes":[]}),
    );
    assert_eq!(r.config.as_deref(), Some("lxc.container.conf"));
    assert_eq!(r.root_volume.as_deref(), Some("root.squashfs"));
    assert_eq!(
        r.storage,
        vec![
            Storage {
                path: "docker--etc-NetworkManager-system-connections".into(),
                persistence: Persistence::Permanent,
                disk: None
            },
            Storage {
                path: "lxc-overlay".into(),
                persistence: Persistence::Boot,
                disk: None
            },
        ]
    );
}

#[test]
fn example_b_nginx_drivers_parse_empty() {
    let r = ok(
        json!({"#spec":"service-manifest-run@1","config":"lxc.container.conf",
        "drivers":{"manual":[],"optional":[],"required":[]},"name":"nginx","root-volume":"root.squashfs",
        "storage":{"lxc-overlay":{"persistence":"boot"}},"type":"lxc","volumes":[]}),
    );
    assert_eq!(r.drivers, Drivers::default());
}

#[test]
fn drivers_lists_are_kept() {
    let r = ok(
        json!({"name":"c","drivers":{"required":["wifi"],"optional":["usb","bt"],"manual":["cam"]}}),
    );
    assert_eq!(r.drivers.required, ["wifi"]);
    assert_eq!(r.drivers.optional, ["usb", "bt"]);
    assert_eq!(r.drivers.manual, ["cam"]);
}

#[test]
fn example_d_auto_recovery_and_restart_policy_parse() {
    let r = ok(
        json!({"name":"c","restart_policy":"container","auto_recovery":{"policy":"on-failure",
        "max_retries":5,"retry_delay":5,"backoff_factor":2.0,"reset_window":60,"stable_timeout":30,
        "backoff_policy":"10min"}}),
    );
    assert_eq!(r.restart_policy, Some(RestartPolicy::Container));
    let ar = r.auto_recovery.unwrap_or_default();
    assert_eq!(ar.policy, RecoveryPolicy::OnFailure);
    assert_eq!(ar.backoff_policy, BackoffPolicy::Wait(600));
    assert_eq!(ar.reset_window, 60);
}

#[test]
fn status_goals_parse() {
    for (s, g) in [
        ("MOUNTED", StatusGoal::Mounted),
        ("STARTED", StatusGoal::Started),
        ("READY", StatusGoal::Ready),
    ] {
        assert_eq!(ok(json!({"name":"c","status_goal":s})).status_goal, Some(g));
    }
}

#[test]
fn roles_rules() {
    let cases = [
        (json!({"name":"c"}), true),
        (json!({"name":"c","roles":[]}), false),
        (json!({"name":"c","roles":["nobody"]}), false),
        (json!({"name":"c","roles":["mgmt"]}), true),
        (json!({"name":"c","roles":["nobody","mgmt"]}), true),
        (json!({"name":"c","roles":{}}), false),
    ];
    for (v, mgmt) in cases {
        assert_eq!(ok(v.clone()).mgmt, mgmt, "{v}");
    }
}

#[test]
fn group_and_runlevel_requests() {
    assert_eq!(
        ok(json!({"name":"c","group":"app"})).group,
        GroupRequest::Group("app".into())
    );
    let r = ok(json!({"name":"c","runlevel":"root"}));
    assert_eq!(r.group, GroupRequest::Runlevel("root".into()));
    assert_eq!(r.warnings.len(), 1, "runlevel is deprecated");
    let r = ok(json!({"name":"c","group":"app","runlevel":"root"}));
    assert_eq!(
        r.group,
        GroupRequest::Group("app".into()),
        "group wins over runlevel"
    );
}

#[test]
fn storage_disk_and_persistence_kinds() {
    let r = ok(json!({"name":"c","storage":{"/data":{"persistence":"revision","disk":"crypt"}}}));
    assert_eq!(
        r.storage,
        vec![Storage {
            path: "/data".into(),
            persistence: Persistence::Revision,
            disk: Some("crypt".into())
        }]
    );
}

#[test]
fn logs_become_text_pairs() {
    let r = ok(
        json!({"name":"c","logs":[{"file":"/var/log/syslog","maxsize":102485760,"truncate":true,"name":"alpine-logger"}]}),
    );
    let l = &r.logs[0];
    assert_eq!(l.get("file").map(String::as_str), Some("/var/log/syslog"));
    assert_eq!(l.get("maxsize").map(String::as_str), Some("102485760"));
    assert_eq!(l.get("truncate").map(String::as_str), Some("true"));
}

#[test]
fn network_modes() {
    let host = ok(json!({"name":"c","network":{"mode":"host"}})).network;
    assert_eq!(host.map(|n| n.mode), Some(NetworkMode::Host));
    let pool = ok(json!({"name":"c","network":{"pool":"lan","hostname":"h","ip":"10.0.0.5","mac":"02:00:00:00:00:01"}}))
        .network;
    assert_eq!(
        pool,
        Some(Network {
            mode: NetworkMode::Pool,
            pool: Some("lan".into()),
            hostname: Some("h".into()),
            ip: Some("10.0.0.5".into()),
            mac: Some("02:00:00:00:00:01".into()),
        })
    );
    assert_eq!(ok(json!({"name":"c","network":{}})).network, None);
}

#[test]
fn flags_exports_dev_log_automodfw_share() {
    let r = ok(
        json!({"name":"c","exports":["/www"],"dev-log":false,"automodfw":"no","share":"NETWORK"}),
    );
    assert!(r.export);
    assert_eq!(r.dev_log, Some(false));
    assert!(!r.automodfw);
    assert_eq!(r.share.as_deref(), Some("NETWORK"));
    assert!(ok(json!({"name":"c","automodfw":"yes"})).automodfw);
    assert!(!ok(json!({"name":"c","automodfw":false})).automodfw);
}

#[test]
fn unknown_keys_are_ignored() {
    let r = run(json!({"name":"c","future-key":{"x":1},"src":"whatever"}));
    assert!(r.is_ok());
}

#[test]
fn invalid_run_json_values_are_named() {
    let cases = [
        (
            json!([]),
            "c/run.json: must be an inline JSON object, not an array",
        ),
        (
            json!({}),
            "c/run.json: name: missing (every container needs a name)",
        ),
        (
            json!({"name":""}),
            "c/run.json: name: '' is not a valid container name",
        ),
        (
            json!({"name":"a/b"}),
            "c/run.json: name: 'a/b' is not a valid container name",
        ),
        (
            json!({"name":".."}),
            "c/run.json: name: '..' is not a valid container name",
        ),
        (
            json!({"name":"."}),
            "c/run.json: name: '.' is not a valid container name",
        ),
        (
            json!({"name":7}),
            "c/run.json: name: expected a string, got a number",
        ),
        (
            json!({"name":"c","type":"docker"}),
            "c/run.json: type: 'docker' is not lxc",
        ),
        (
            json!({"name":"c","status_goal":"RUNNING"}),
            "c/run.json: status_goal: 'RUNNING' is not MOUNTED, STARTED or READY",
        ),
        (
            json!({"name":"c","status_goal":"started"}),
            "c/run.json: status_goal: 'started' is not MOUNTED, STARTED or READY",
        ),
        (
            json!({"name":"c","restart_policy":"always"}),
            "c/run.json: restart_policy: 'always' is not system or container",
        ),
        (
            json!({"name":"c","runlevel":"middle"}),
            "c/run.json: runlevel: 'middle' is not data, root, platform or app",
        ),
        (
            json!({"name":"c","group":1}),
            "c/run.json: group: expected a string, got a number",
        ),
        (
            json!({"name":"c","roles":["admin"]}),
            "c/run.json: roles[0]: 'admin' is not mgmt or nobody",
        ),
        (
            json!({"name":"c","roles":"mgmt"}),
            "c/run.json: roles: 'mgmt' is not an array of roles",
        ),
        (
            json!({"name":"c","roles":[1]}),
            "c/run.json: roles[0]: expected a string, got a number",
        ),
        (
            json!({"name":"c","auto_recovery":{"policy":"retry"}}),
            "c/run.json: auto_recovery.policy: 'retry' is not no, always, on-failure or unless-stopped",
        ),
        (
            json!({"name":"c","auto_recovery":"always"}),
            "c/run.json: auto_recovery: expected an object, got a string",
        ),
        (
            json!({"name":"c","storage":{"lxc-overlay":{"persistence":"forever"}}}),
            "c/run.json: storage.lxc-overlay.persistence: 'forever' is not permanent, revision or boot",
        ),
        (
            json!({"name":"c","storage":{"x":{}}}),
            "c/run.json: storage.x.persistence: missing (permanent, revision or boot)",
        ),
        (
            json!({"name":"c","storage":[]}),
            "c/run.json: storage: expected an object, got an array",
        ),
        (
            json!({"name":"c","storage":{"x":"boot"}}),
            "c/run.json: storage.x: expected an object, got a string",
        ),
        (
            json!({"name":"c","volumes":"root.squashfs"}),
            "c/run.json: volumes: expected an array, got a string",
        ),
        (
            json!({"name":"c","root-volume":["a"]}),
            "c/run.json: root-volume: expected a string, got an array",
        ),
        (
            json!({"name":"c","config":{}}),
            "c/run.json: config: expected a string, got an object",
        ),
        (
            json!({"name":"c","drivers":[]}),
            "c/run.json: drivers: expected an object, got an array",
        ),
        (
            json!({"name":"c","drivers":{"required":"wifi"}}),
            "c/run.json: drivers.required: expected an array, got a string",
        ),
        (
            json!({"name":"c","network":{"mode":"bridge"}}),
            "c/run.json: network.mode: 'bridge' is not host or pool",
        ),
        (
            json!({"name":"c","network":{"mode":"host","pool":"lan"}}),
            "c/run.json: network.mode: 'host' cannot be combined with a pool",
        ),
        (
            json!({"name":"c","dev-log":"yes"}),
            "c/run.json: dev-log: expected true or false, got a string",
        ),
        (
            json!({"name":"c","automodfw":1}),
            "c/run.json: automodfw: 1 is not \"no\" or \"yes\"",
        ),
        (
            json!({"name":"c","exports":true}),
            "c/run.json: exports: expected an array, got a boolean",
        ),
        (
            json!({"name":"c","logs":[1]}),
            "c/run.json: logs[0]: expected an object, got a number",
        ),
        (
            json!({"name":"c","logs":[{"file":[]}]}),
            "c/run.json: logs[0].file: [] is not a string, number or boolean",
        ),
        (
            json!({"name":"c","share":1}),
            "c/run.json: share: expected a string, got a number",
        ),
        (
            json!({"name":"c","services":{"required":[{"type":"rest"}]}}),
            "c/run.json: services.required[0].name: missing (a required service needs a name)",
        ),
    ];
    for (v, want) in cases {
        assert_eq!(run(v.clone()), Err(want.to_string()), "{v}");
    }
}
