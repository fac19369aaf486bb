//! Whole-state tests: the real example states of research §2.4 (A–D, the first three as
//! hand-written example states in `testdata/`), every default rule and every refusal.

use super::*;
use serde_json::json;

const INITIAL_STATE: &str = include_str!("testdata/device_json_groups.json");
const STATE_1: &str = include_str!("testdata/webui_no_group.json");
const BSP_INIT_GROUPS: &str = include_str!("testdata/fit_bsp_legacy_groups.json");
const AWCONNECT: &str = include_str!("testdata/netcfg_single.json");

fn sha(c: char) -> String {
    c.to_string().repeat(64)
}

fn state(v: serde_json::Value) -> Result<State, String> {
    parse_state(v.to_string().as_bytes()).map_err(|e| e.to_string())
}

fn ok(v: serde_json::Value) -> State {
    match state(v) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

fn ok_text(s: &str) -> State {
    match parse_state(s.as_bytes()) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

fn base(extra: serde_json::Value) -> serde_json::Value {
    let mut m = json!({"#spec": SYSTEM_SPEC});
    if let (Some(o), serde_json::Value::Object(e)) = (m.as_object_mut(), extra) {
        o.extend(e);
    }
    m
}

fn names(s: &State) -> Vec<(&str, &str)> {
    s.containers
        .iter()
        .map(|c| (c.name.as_str(), c.group.as_str()))
        .collect()
}

// ---- validate_state (the daemon's entry) keeps its behaviour ----

#[test]
fn empty_state_is_valid() {
    assert!(validate_state(br##"{"#spec":"pantavisor-service-system@1"}"##).is_ok());
    let s = parse_state(br##"{"#spec":"pantavisor-service-system@1"}"##);
    let s = s.map(|s| (s.containers.len(), s.groups.len(), s.group_source));
    assert_eq!(s, Ok((0, 4, GroupSource::Default)));
}

#[test]
fn real_example_state_is_valid() {
    let sha = "a".repeat(64);
    let s = format!(
        r##"{{"#spec":"pantavisor-service-system@1","nginx/root.squashfs":"{sha}","nginx/run.json":{{"name":"nginx","type":"lxc","volumes":[]}},"bsp/run.json":{{"linux":"kernel.img"}}}}"##
    );
    assert!(validate_state(s.as_bytes()).is_ok());
}

#[test]
fn bad_states_say_why() {
    let cases: [(&[u8], &str); 6] = [
        (b"{not json", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b"{}", "missing #spec"),
        (br##"{"#spec":"other@1"}"##, "unsupported #spec"),
        (
            br##"{"#spec":"pantavisor-service-system@1","a/b":"short"}"##,
            "64 character",
        ),
        (
            br##"{"#spec":"pantavisor-service-system@1","../x":{}}"##,
            "bad artifact path",
        ),
    ];
    for (input, want) in cases {
        let err = validate_state(input).err().unwrap_or_default();
        assert!(
            err.contains(want),
            "{:?}: {err}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn validate_state_refuses_what_the_typed_parser_refuses() {
    let s = base(json!({"nginx/run.json": {"name":"nginx","status_goal":"RUNNING"}}));
    assert_eq!(
        validate_state(s.to_string().as_bytes()).err().as_deref(),
        Some("nginx/run.json: status_goal: 'RUNNING' is not MOUNTED, STARTED or READY")
    );
}

#[test]
fn outer_shape_errors() {
    let cases: [(&[u8], &str); 6] = [
        (br##"{"#spec":5}"##, "#spec must be a string"),
        (
            br##"{"#spec":"pantavisor-service-system@1","":{}}"##,
            "bad artifact path ''",
        ),
        (
            br##"{"#spec":"pantavisor-service-system@1","/abs":{}}"##,
            "bad artifact path '/abs'",
        ),
        (
            br##"{"#spec":"pantavisor-service-system@1","a//b":{}}"##,
            "bad artifact path 'a//b'",
        ),
        (
            br##"{"#spec":"pantavisor-service-system@1","a/b":5}"##,
            "a/b: value must be an object id or a JSON document",
        ),
        (
            br##"{"#spec":"pantavisor-service-system@1","a/x":{},"a/x":{}}"##,
            "a/x: appears twice in the state",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(
            parse_state(input).map(|_| ()).map_err(|e| e.to_string()),
            Err(want.to_string()),
            "{}",
            String::from_utf8_lossy(input)
        );
    }
}

// ---- real example states ----

#[test]
fn example_a_awconnect_with_bsp_parses() {
    let s = ok(base(json!({
        "awconnect/lxc.container.conf": sha('1'),
        "awconnect/root.squashfs": sha('2'),
        "awconnect/run.json": {"#spec":"service-manifest-run@1","config":"lxc.container.conf","name":"awconnect",
            "root-volume":"root.squashfs","storage":{"docker--etc-NetworkManager-system-connections":{"persistence":"permanent"},
            "lxc-overlay":{"persistence":"boot"}},"type":"lxc","volumes":[]},
        "bsp/kernel.img": sha('3'),
        "bsp/pantavisor": sha('4'),
        "bsp/run.json": {"addons":["addon-plymouth.cpio.xz4"],"firmware":"firmware.squashfs","initrd":"pantavisor",
            "initrd_config":"","linux":"kernel.img","modules":"modules.squashfs"}
    })));
    assert_eq!(
        names(&s),
        [("awconnect", "root")],
        "alone and ungrouped: root"
    );
    let c = &s.containers[0];
    assert_eq!(c.status_goal, StatusGoal::Started);
    assert_eq!(c.restart_policy, RestartPolicy::System);
    assert!(c.mgmt);
    assert_eq!(c.auto_recovery, AutoRecovery::NONE);
    assert_eq!(s.bsp.as_ref().map(Bsp::has_boot_image), Some(true));
    let objs: Vec<&str> = s.objects.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        objs,
        [
            "awconnect/lxc.container.conf",
            "awconnect/root.squashfs",
            "bsp/kernel.img",
            "bsp/pantavisor"
        ]
    );
}

#[test]
fn single_container_with_config_files_and_signatures_parses() {
    let s = ok_text(AWCONNECT);
    assert_eq!(names(&s), [("netcfg", "root")]);
    let c = &s.containers[0];
    assert_eq!(c.drivers.optional, ["wifi", "usbnet", "bluetooth"]);
    assert!(
        s.objects
            .iter()
            .any(|(p, _)| p == "_config/netcfg/etc/nftables/ruleset")
    );
    assert!(!s.objects.iter().any(|(p, _)| p.starts_with("_sigs/")));
}

#[test]
fn container_without_group_parses() {
    let s = ok_text(STATE_1);
    assert_eq!(names(&s), [("webui", "root")]);
    let c = &s.containers[0];
    assert_eq!(c.config.as_deref(), Some("lxc.container.conf"));
    assert_eq!(c.root_volume.as_deref(), Some("root.squashfs"));
    assert_eq!(c.storage.len(), 1);
    let objs: Vec<&str> = s.objects.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        objs,
        [
            "_config/webui/srv/www/index.html",
            "webui/lxc.container.conf",
            "webui/root.squashfs",
            "webui/root.squashfs.docker-digest"
        ]
    );
    assert_eq!(
        s.objects[0].1,
        "0eb547304658805aad788d320f10bf1f292797b5e6d745a3bf617584da017051"
    );
}

#[test]
fn example_c_fit_bsp_with_legacy_groups_parses() {
    let s = ok_text(BSP_INIT_GROUPS);
    assert_eq!(s.group_source, GroupSource::GroupsJson);
    let g: Vec<(&str, StatusGoal, RestartPolicy, u32)> = s
        .groups
        .iter()
        .map(|g| (g.name.as_str(), g.status_goal, g.restart_policy, g.timeout))
        .collect();
    assert_eq!(g.len(), 10);
    assert_eq!(
        g[0],
        ("core", StatusGoal::Started, RestartPolicy::System, 120)
    );
    assert_eq!(
        g[1],
        ("data", StatusGoal::Mounted, RestartPolicy::System, 120)
    );
    assert_eq!(
        g[9],
        (
            "customer",
            StatusGoal::Started,
            RestartPolicy::Container,
            120
        )
    );
    let bsp = s.bsp.clone().unwrap_or_default();
    assert_eq!(bsp.fit.as_deref(), Some("tern.fit"));
    let d = s.drivers.clone().unwrap_or_default();
    assert_eq!(
        d.modules_of("usbnet", |_| false),
        ["g_ether host_addr=${user-meta:usb.hostmac}"]
    );
    assert!(d.modules_of("usbncm", |_| false).is_empty());
    assert_eq!(d.sections.len(), 2, "all and an empty fitconfig section");
    assert!(s.containers.is_empty());
}

#[test]
fn example_c_groups_follow_the_goals_timeout_option() {
    let s = parse_state_with(
        BSP_INIT_GROUPS.as_bytes(),
        &ParseOptions { goals_timeout: 10 },
    );
    assert_eq!(s.map(|s| s.groups[0].timeout), Ok(10));
}

#[test]
fn initial_state_with_device_json_groups_parses() {
    let s = ok_text(INITIAL_STATE);
    assert_eq!(s.group_source, GroupSource::DeviceJson);
    assert_eq!(
        names(&s),
        [
            ("devtools", "platform"),
            ("mdns", "platform"),
            ("netcfg", "root")
        ]
    );
    let sdk = &s.containers[0];
    assert_eq!(sdk.root_volume.as_deref(), Some("dm:root.squashfs"));
    assert!(sdk.mgmt);
    assert_eq!(sdk.storage.len(), 5);
    assert!(s.groups.iter().all(|g| g.timeout == 30));
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
}

fn example_d() -> serde_json::Value {
    base(json!({
        "pv-example-recovery/run.json": {"#spec":"service-manifest-run@1","name":"pv-example-recovery",
            "type":"lxc","config":"lxc.container.conf","root-volume":"root.squashfs","group":"app",
            "restart_policy":"container","auto_recovery":{"policy":"on-failure","max_retries":5,"retry_delay":5,
            "backoff_factor":2.0,"reset_window":60,"stable_timeout":30,"backoff_policy":"10min"}},
        "pv-example-stabilize/run.json": {"name":"pv-example-stabilize","group":"app","restart_policy":"container",
            "auto_recovery":{"policy":"on-failure","max_retries":5,"retry_delay":2,"backoff_factor":1.5,
            "reset_window":300,"stable_timeout":15,"backoff_policy":"reboot"}},
        "pv-example-rest-server/run.json": {"name":"pv-example-rest-server","group":"app"},
        "pv-example-rest-server/services.json": [{"name":"network-manager","type":"rest","socket":"/run/nm/api.sock"}],
        "pv-example-rest-client/run.json": {"name":"pv-example-rest-client","group":"app",
            "services":{"required":[{"name":"network-manager","type":"rest","target":"/run/pv/services/network-manager.sock"}]}},
        "nm/run.json": {"name":"nm"},
        "nm/services.json": {"#spec":"service-manifest-xconnect@1","services":[{"name":"network-manager","type":"rest","socket":"/run/nm/api.sock"}]}
    }))
}

fn by<'a>(s: &'a State, name: &str) -> &'a Container {
    match s.containers.iter().find(|c| c.name == name) {
        Some(c) => c,
        None => panic!("no container {name}"),
    }
}

#[test]
fn example_d_pvr_args_become_run_json_fields() {
    // json! sorts keys, so look containers up by name here.
    let s = ok(example_d());
    let rec = by(&s, "pv-example-recovery");
    assert_eq!(rec.restart_policy, RestartPolicy::Container);
    assert!(!rec.auto_recovery_from_group);
    assert_eq!(rec.auto_recovery.backoff_policy, BackoffPolicy::Wait(600));
    assert_eq!(rec.auto_recovery.reset_window, 60);
    let stab = by(&s, "pv-example-stabilize");
    assert_eq!(stab.auto_recovery.backoff_factor, 1.5);
    let server = by(&s, "pv-example-rest-server");
    assert!(
        server.auto_recovery_from_group,
        "no own auto_recovery: app's"
    );
    assert_eq!(server.auto_recovery.max_retries, 5);
    assert_eq!(server.exports.len(), 1);
    let client = by(&s, "pv-example-rest-client");
    assert_eq!(client.services.required[0].name, "network-manager");
    let nm = by(&s, "nm");
    assert_eq!(nm.group, "root", "the only ungrouped container");
    assert_eq!(nm.exports[0].socket.as_deref(), Some("/run/nm/api.sock"));
}

#[test]
fn containers_keep_state_order_not_alphabetical_order() {
    let text = format!(
        r##"{{"#spec":"{SYSTEM_SPEC}","zeta/run.json":{{"name":"zeta"}},"alpha/run.json":{{"name":"alpha"}}}}"##
    );
    let s = ok_text(&text);
    assert_eq!(names(&s), [("zeta", "root"), ("alpha", "platform")]);
}

// ---- default rules ----

#[test]
fn default_groups_first_unassigned_goes_to_root_rest_to_platform() {
    let s = ok(base(json!({
        "a/run.json": {"name":"a"}, "b/run.json": {"name":"b"}, "c/run.json": {"name":"c","group":"app"}
    })));
    assert_eq!(names(&s), [("a", "root"), ("b", "platform"), ("c", "app")]);
}

#[test]
fn default_groups_with_root_taken_send_all_unassigned_to_platform() {
    let s = ok(base(json!({
        "a/run.json": {"name":"a"}, "b/run.json": {"name":"b","group":"root"}
    })));
    assert_eq!(names(&s), [("a", "platform"), ("b", "root")]);
}

#[test]
fn runlevel_is_an_alias_for_group() {
    let s = ok(base(json!({"a/run.json": {"name":"a","runlevel":"data"}})));
    assert_eq!(names(&s), [("a", "data")]);
    assert_eq!(s.containers[0].status_goal, StatusGoal::Mounted);
    assert!(s.warnings.iter().any(|w| w.contains("deprecated")));
}

#[test]
fn custom_groups_put_unassigned_containers_in_the_last_group() {
    let s = ok(base(json!({
        "device.json": {"groups":[{"name":"first"},{"name":"last","restart_policy":"system"}]},
        "a/run.json": {"name":"a"}
    })));
    assert_eq!(names(&s), [("a", "last")]);
    assert_eq!(s.containers[0].restart_policy, RestartPolicy::System);
}

#[test]
fn missing_goal_policy_and_recovery_are_inherited_from_the_group() {
    let s = ok(base(json!({
        "a/run.json": {"name":"a","group":"app"},
        "b/run.json": {"name":"b","group":"data"}
    })));
    let a = &s.containers[0];
    assert_eq!(
        (a.status_goal, a.restart_policy),
        (StatusGoal::Started, RestartPolicy::Container)
    );
    assert_eq!(a.auto_recovery.policy, RecoveryPolicy::OnFailure);
    assert!(a.auto_recovery_from_group);
    let b = &s.containers[1];
    assert_eq!(
        (b.status_goal, b.restart_policy),
        (StatusGoal::Mounted, RestartPolicy::System)
    );
    assert!(!b.auto_recovery.is_active());
    assert!(!b.auto_recovery_from_group);
}

#[test]
fn explicit_fields_win_over_the_group() {
    let s = ok(base(
        json!({"a/run.json": {"name":"a","group":"app","status_goal":"READY",
        "restart_policy":"system","auto_recovery":{"policy":"no"}}}),
    ));
    let a = &s.containers[0];
    assert_eq!(
        (a.status_goal, a.restart_policy),
        (StatusGoal::Ready, RestartPolicy::System)
    );
    assert_eq!(
        a.auto_recovery,
        AutoRecovery::NONE,
        "own auto_recovery, all or nothing"
    );
    assert!(!a.auto_recovery_from_group);
}

#[test]
fn partial_own_auto_recovery_is_not_merged_with_the_group() {
    let s = ok(base(
        json!({"a/run.json": {"name":"a","group":"app","auto_recovery":{"policy":"always"}}}),
    ));
    let ar = s.containers[0].auto_recovery;
    assert_eq!(
        (ar.policy, ar.max_retries, ar.retry_delay, ar.stable_timeout),
        (RecoveryPolicy::Always, 0, 0, 0)
    );
}

#[test]
fn group_auto_recovery_from_device_json_is_inherited() {
    let s = ok(base(json!({
        "device.json": {"groups":[{"name":"apps","auto_recovery":{"policy":"always","retry_delay":3}}]},
        "a/run.json": {"name":"a"}
    })));
    let ar = s.containers[0].auto_recovery;
    assert_eq!((ar.policy, ar.retry_delay), (RecoveryPolicy::Always, 3));
}

#[test]
fn legacy_groups_json_is_used_without_device_json() {
    let s = ok(base(
        json!({"groups.json": [{"name":"only","status_goal":"READY"}], "a/run.json": {"name":"a"}}),
    ));
    assert_eq!(s.group_source, GroupSource::GroupsJson);
    assert_eq!(names(&s), [("a", "only")]);
    assert_eq!(s.containers[0].status_goal, StatusGoal::Ready);
}

#[test]
fn legacy_groups_json_is_ignored_with_a_warning_when_device_json_exists() {
    let s = ok(base(json!({
        "device.json": {"groups":[{"name":"dev"}]},
        "groups.json": [{"name":"legacy"}],
        "a/run.json": {"name":"a"}
    })));
    assert_eq!(names(&s), [("a", "dev")]);
    assert!(
        s.warnings
            .iter()
            .any(|w| w == "groups.json ignored: device.json is present")
    );
}

#[test]
fn device_json_without_groups_is_fine_when_there_are_no_containers() {
    let s = ok(base(json!({"device.json": {"disks":[]}})));
    assert!(s.groups.is_empty());
    assert!(s.warnings.iter().any(|w| w.contains("no groups")));
}

#[test]
fn services_json_of_a_missing_container_is_a_warning() {
    let s = ok(base(json!({"ghost/services.json": {"services":[]}})));
    assert!(s.warnings.iter().any(|w| w.contains("ghost")));
}

#[test]
fn name_different_from_directory_is_a_warning() {
    let s = ok(base(json!({"dir/run.json": {"name":"other"}})));
    assert_eq!(s.containers[0].dir, "dir");
    assert!(s.warnings.iter().any(|w| w.contains("differs")));
}

#[test]
fn skipped_and_inline_documents_are_not_objects_or_containers() {
    let s = ok(base(json!({
        "a/run.json": {"name":"a"},
        "a/src.json": {"x":1},
        "a/build.json": {"x":1},
        "_sigs/a.json": {"#spec":"pvs@2"},
        "network-mapping.json": {},
        "disks.json": [],
        "a/root.squashfs": sha('f')
    })));
    assert_eq!(s.containers.len(), 1);
    assert_eq!(s.objects, vec![("a/root.squashfs".to_string(), sha('f'))]);
}

// ---- refusals ----

#[test]
fn invalid_states_are_refused_naming_artifact_and_field() {
    let cases = [
        (
            json!({"nginx/run.json": {"name":"nginx","status_goal":"RUNNING"}}),
            "nginx/run.json: status_goal: 'RUNNING' is not MOUNTED, STARTED or READY",
        ),
        (
            json!({"a/run.json": {"name":"a","group":"apps"}}),
            "a/run.json: group: 'apps' is not a group of this state (data, root, platform, app)",
        ),
        (
            json!({"device.json": {"groups":[{"name":"x"}]}, "a/run.json": {"name":"a","runlevel":"root"}}),
            "a/run.json: runlevel: 'root' is not a group of this state (x)",
        ),
        (
            json!({"device.json": {}, "a/run.json": {"name":"a"}}),
            "a/run.json: group: missing, and the state defines no group to put it in",
        ),
        (
            json!({"a/run.json": {"name":"same"}, "b/run.json": {"name":"same"}}),
            "b/run.json: name: container 'same' is already defined by a/run.json",
        ),
        (
            json!({"a/run.json": sha('a')}),
            "a/run.json: must be an inline JSON object, not a string",
        ),
        (
            json!({"device.json": []}),
            "device.json: must be an inline JSON object, not an array",
        ),
        (
            json!({"device.json": {"groups":[{"name":"g","status_goal":"UP"}]}}),
            "device.json: groups[0].status_goal: 'UP' is not MOUNTED, STARTED or READY",
        ),
        (
            json!({"groups.json": {"name":"x"}}),
            "groups.json: expected an array of groups",
        ),
        (
            json!({"groups.json": [{}]}),
            "groups.json: [0].name: missing (every group needs a name)",
        ),
        (
            json!({"bsp/run.json": []}),
            "bsp/run.json: must be an inline JSON object, not an array",
        ),
        (
            json!({"bsp/drivers.json": {"#spec":"driver-aliases@2"}}),
            "bsp/drivers.json: #spec: 'driver-aliases@2' is not 'driver-aliases@1'",
        ),
        (
            json!({"a/run.json": {"name":"a"}, "a/services.json": {"services":[{"type":"rest"}]}}),
            "a/services.json: services[0].name: missing (a service needs a name, or 'owns')",
        ),
        (
            json!({"a/run.json": {"name":"a","restart_policy":"never"}}),
            "a/run.json: restart_policy: 'never' is not system or container",
        ),
        (
            json!({"a/run.json": {"name":"a","auto_recovery":{"backoff_policy":"later"}}}),
            "a/run.json: auto_recovery.backoff_policy: 'later' is not reboot, never or a duration (<N>s, <N>min, <N>h)",
        ),
    ];
    for (extra, want) in cases {
        assert_eq!(
            state(base(extra.clone())).map(|_| ()),
            Err(want.to_string()),
            "{extra}"
        );
    }
}
