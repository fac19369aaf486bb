//! The hub client fed event by event with fake time and a fake device.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use super::*;

#[derive(Default)]
struct Fake {
    running: Option<String>,
    objects: Vec<(String, String, u64)>,
    have: HashSet<String>,
    free: u64,
    progress: HashMap<String, Progress>,
    meta: BTreeMap<String, String>,
    trying: Option<(String, bool)>,
    step_objects: Vec<(String, String)>,
    bad_state: Option<String>,
    /// The secureboot refusal a step's signatures get.
    refused_signatures: Option<&'static str>,
}

impl DeviceView for Fake {
    fn running_rev(&self) -> Option<String> {
        self.running.clone()
    }
    fn running_state(&self) -> Option<Vec<u8>> {
        Some(br##"{"#spec":"pantavisor-service-system@1"}"##.to_vec())
    }
    fn running_objects(&self) -> Vec<(String, String, u64)> {
        self.objects.clone()
    }
    fn has_object(&self, sha: &str) -> bool {
        self.have.contains(sha)
    }
    fn free_bytes(&self) -> u64 {
        self.free
    }
    fn progress(&self, rev: &str) -> Option<Progress> {
        self.progress.get(rev).cloned()
    }
    fn check_state(&self, _state: &[u8]) -> Result<Vec<(String, String)>, String> {
        match &self.bad_state {
            Some(m) => Err(m.clone()),
            None => Ok(self.step_objects.clone()),
        }
    }
    fn refuse_signatures(&self, _rev: &str, _state: &[u8]) -> Option<&'static str> {
        self.refused_signatures
    }
    fn device_meta(&self) -> BTreeMap<String, String> {
        self.meta.clone()
    }
    fn trying(&self) -> Option<(String, bool)> {
        self.trying.clone()
    }
}

struct T {
    c: HubClient,
    dev: Fake,
    now: Instant,
    /// What the last event gave, and everything since the start.
    acts: Vec<HubAction>,
    all: Vec<HubAction>,
    /// The call on the API connection, until it is answered.
    pending: Option<(CallId, Call)>,
}

fn settings() -> Settings {
    Settings {
        host: "hub.test".into(),
        port: 443,
        updater_interval: Duration::from_secs(5),
        usrmeta_interval: Duration::from_secs(5),
        devmeta_interval: Duration::from_secs(10),
        transfer_max: 2,
        network_timeout: Duration::from_secs(120),
        online_threshold: 0,
        autotok: None,
        revision_retries: 10,
        seed: 42,
        // Off: these tests pin the schedule to the second; the jitter has its own tests.
        jitter_percent: 0,
    }
}

fn creds() -> Creds {
    Creds {
        id: "d1".into(),
        prn: "prn:::devices:/d1".into(),
        secret: "s".into(),
    }
}

impl T {
    fn new(creds: Creds, claimed: bool, dev: Fake) -> T {
        T::with(settings(), creds, claimed, dev)
    }
    fn with(settings: Settings, creds: Creds, claimed: bool, dev: Fake) -> T {
        let mut c = HubClient::new(settings, creds, claimed);
        let now = Instant::now();
        let acts = c.start(now, 1_000, &dev);
        let mut t = T {
            c,
            dev,
            now,
            acts: Vec::new(),
            all: Vec::new(),
            pending: None,
        };
        t.took(acts);
        t
    }
    fn claimed() -> T {
        let dev = Fake {
            running: Some("0".into()),
            free: 1 << 30,
            ..Fake::default()
        };
        T::new(creds(), true, dev)
    }
    fn took(&mut self, acts: Vec<HubAction>) {
        for a in &acts {
            if let HubAction::Call { id, call } = a {
                self.pending = Some((*id, call.clone()));
            }
        }
        self.all.extend(acts.iter().cloned());
        self.acts = acts;
    }
    /// The call in flight.
    fn call(&self) -> Option<(CallId, Call)> {
        self.pending.clone()
    }
    fn ever(&self, f: impl Fn(&HubAction) -> bool) -> bool {
        self.all.iter().any(f)
    }
    fn path(&self) -> String {
        self.call()
            .map(|(_, c)| format!("{} {}", c.method, c.path))
            .unwrap_or_default()
    }
    fn answer(&mut self, status: u16, body: &str) {
        self.answer_tagged(status, body, None);
    }
    /// 200 with what an idle hub says: no steps, an empty map for anything else.
    fn answer_idle(&mut self) {
        let body = if self.path().contains("steps") {
            "[]"
        } else {
            "{}"
        };
        self.answer(200, body);
    }
    fn answer_tagged(&mut self, status: u16, body: &str, etag: Option<&str>) {
        let (id, _) = self.pending.take().expect("a call in flight");
        let ev = HubEvent::Answer {
            id,
            answer: Answer::Http {
                status,
                body: body.as_bytes().to_vec(),
                etag: etag.map(str::to_string),
            },
        };
        let acts = self.c.handle(ev, self.now, 1_000, &self.dev);
        self.took(acts);
    }
    fn fail(&mut self) {
        let (id, _) = self.pending.take().expect("a call in flight");
        let ev = HubEvent::Answer {
            id,
            answer: Answer::Failed("connection refused".into()),
        };
        let acts = self.c.handle(ev, self.now, 1_000, &self.dev);
        self.took(acts);
    }
    fn event(&mut self, ev: HubEvent) {
        let acts = self.c.handle(ev, self.now, 1_000, &self.dev);
        self.took(acts);
    }
    fn advance(&mut self, secs: u64) {
        self.now += Duration::from_secs(secs);
        self.event(HubEvent::Timer);
    }
    fn has(&self, f: impl Fn(&HubAction) -> bool) -> bool {
        self.acts.iter().any(f)
    }
    /// Log in and get to idle with a trail on the hub.
    fn reach_idle(&mut self) {
        assert_eq!(self.path(), "POST /auth/login");
        self.answer(200, r#"{"token":"t1"}"#);
        assert_eq!(self.path(), "GET /trails/");
        self.answer(200, r#"[{"id":"d1"}]"#);
        assert_eq!(self.c.stage(), Stage::Idle);
    }
    /// Answer device meta and user meta calls until the steps poll goes out.
    fn until_steps(&mut self) {
        for _ in 0..6 {
            let p = self.path();
            if p.contains("/steps?") {
                return;
            }
            if p.contains("device-meta") {
                self.answer(200, r#"{"status":"ok"}"#);
            } else if p.contains("user-meta") {
                self.answer(200, "{}");
            } else {
                panic!("unexpected call {p}");
            }
        }
        panic!("no steps poll");
    }
}

fn step(rev: u32, status: &str) -> String {
    format!(
        r##"{{"rev":{rev},"state":{{"#spec":"pantavisor-service-system@1"}},"progress":{{"status":"{status}"}},"commit-msg":"m{rev}"}}"##
    )
}

#[test]
fn a_new_device_registers_then_waits_for_its_claim_then_syncs() {
    let dev = Fake {
        running: Some("0".into()),
        objects: vec![
            ("bsp/kernel".into(), "aa".into(), 10),
            ("app/root.squashfs".into(), "bb".into(), 20),
        ],
        free: 1 << 30,
        ..Fake::default()
    };
    let mut t = T::new(Creds::default(), false, dev);
    assert_eq!(t.c.stage(), Stage::Register);
    let (_, call) = t.call().unwrap();
    assert_eq!(
        (call.method, call.path.as_str(), call.auth),
        ("POST", "/devices/", false)
    );
    t.answer(
        200,
        r#"{"id":"d1","prn":"prn:::devices:/d1","secret":"s","challenge":"x"}"#,
    );
    assert!(
        t.has(|a| matches!(a, HubAction::SaveCreds { claimed: false, creds } if creds.id == "d1"))
    );
    assert!(t.has(|a| matches!(a, HubAction::Hint { name: "device-id", value } if value == "d1")));
    assert_eq!(t.path(), "POST /auth/login");
    t.answer(200, r#"{"token":"t0"}"#);
    assert_eq!(t.path(), "GET /devices/d1");
    t.answer(
        200,
        r#"{"id":"d1","owner":"","challenge":"duly-helped-bat"}"#,
    );
    assert!(t.has(
        |a| matches!(a, HubAction::Hint { name: "challenge", value } if value == "duly-helped-bat")
    ));
    assert!(t.call().is_none(), "nothing more until the next interval");
    t.advance(4);
    assert!(t.call().is_none());
    t.advance(1);
    assert_eq!(t.path(), "GET /devices/d1");
    t.answer(
        200,
        r#"{"id":"d1","owner":"prn:::accounts:/u","challenge":""}"#,
    );
    assert!(t.c.is_claimed());
    assert!(t.has(|a| matches!(a, HubAction::SaveCreds { claimed: true, .. })));
    assert!(
        t.has(|a| matches!(a, HubAction::Hint { name: "challenge", value } if value.is_empty()))
    );
    assert!(
        t.has(|a| matches!(a, HubAction::Meta { key: "pantahub.claimed", value } if value == "1"))
    );
    // The unclaimed token has no owner: a fresh login.
    assert_eq!(t.path(), "POST /auth/login");
    t.answer(200, r#"{"token":"t1"}"#);
    assert_eq!(t.path(), "GET /trails/");
    t.answer(200, "[]");
    assert_eq!(t.c.stage(), Stage::Sync);
    let (_, c) = t.call().unwrap();
    assert_eq!(c.path, "/objects/");
    assert!(String::from_utf8_lossy(&c.body).contains(r#""size":"10""#));
    t.answer(409, "{}");
    assert_eq!(t.path(), "POST /objects/");
    t.answer(200, r#"{"signed-puturl":"https://x:1/local-s3/tok"}"#);
    let (_, c) = t.call().unwrap();
    assert_eq!((c.method, c.path.as_str()), ("PUT", "/local-s3/tok"));
    assert_eq!(c.body_object.as_deref(), Some("bb"));
    t.answer(200, "{}");
    assert_eq!(t.path(), "POST /trails/");
    t.answer(200, "{}");
    assert_eq!(t.c.stage(), Stage::Idle);
}

#[test]
fn a_failing_device_check_never_registers_again() {
    let dev = Fake::default();
    let mut t = T::new(creds(), false, dev);
    assert_eq!(t.c.stage(), Stage::Claim);
    t.answer(200, r#"{"token":"t0"}"#);
    for _ in 0..5 {
        assert_eq!(t.path(), "GET /devices/d1");
        t.answer(503, "");
        assert!(t.call().is_none() || t.path() != "POST /devices/");
        t.advance(120);
    }
    t.fail();
    t.advance(120);
    assert_eq!(t.path(), "GET /devices/d1");
    assert!(!t.has(|a| matches!(a, HubAction::SaveCreds { .. })));
}

#[test]
fn a_claimed_device_whose_login_is_refused_keeps_its_credentials() {
    let mut t = T::claimed();
    for _ in 0..4 {
        assert_eq!(t.path(), "POST /auth/login");
        t.answer(401, "");
        assert!(!t.has(|a| matches!(a, HubAction::SaveCreds { .. })));
        t.advance(120);
    }
    assert_eq!(t.c.stage(), Stage::Login);
}

#[test]
fn an_expired_token_logs_in_again_and_keeps_the_pending_progress() {
    let mut t = T::claimed();
    t.reach_idle();
    t.event(HubEvent::Progress {
        rev: "3".into(),
        progress: Progress::new("TESTING", "x", 75),
    });
    // The progress goes first, or after the call already in flight.
    for _ in 0..4 {
        if t.path().contains("/progress") {
            break;
        }
        t.answer(200, "{}");
    }
    assert_eq!(t.path(), "PUT /trails/d1/steps/3/progress");
    t.answer(401, "");
    assert_eq!(t.c.stage(), Stage::Login);
    assert_eq!(t.path(), "POST /auth/login");
    t.answer(200, r#"{"token":"t2"}"#);
    assert_eq!(t.path(), "PUT /trails/d1/steps/3/progress");
}

#[test]
fn device_meta_goes_whole_after_login_then_only_changes() {
    let mut t = T::claimed();
    t.dev.meta.insert("a".into(), "1".into());
    t.dev.meta.insert("b".into(), "2".into());
    t.reach_idle();
    let (_, c) = t.call().unwrap();
    assert_eq!(c.method, "PATCH");
    let body: serde_json::Value = serde_json::from_slice(&c.body).unwrap();
    assert_eq!(
        (body["a"].as_str(), body["b"].as_str()),
        (Some("1"), Some("2"))
    );
    assert_eq!(body["pantahub.state"], "idle");
    t.answer(200, r#"{"status":"ok"}"#);
    t.until_steps();
    t.answer(200, "[]");
    t.dev.meta.insert("a".into(), "9".into());
    t.dev.meta.remove("b");
    t.advance(10);
    let mut patch = None;
    for _ in 0..4 {
        let Some((_, c)) = t.call() else { break };
        if c.method == "PATCH" {
            patch = Some(c);
            break;
        }
        t.answer(200, if c.path.contains("steps") { "[]" } else { "{}" });
    }
    let c = patch.expect("a PATCH");
    let body: serde_json::Value = serde_json::from_slice(&c.body).unwrap();
    assert_eq!(body["a"], "9");
    assert!(body["b"].is_null() && body.get("b").is_some());
    assert_eq!(
        body.as_object().unwrap().len(),
        2,
        "only the changes: {body}"
    );
    t.answer(200, r#"{"status":"ok"}"#);
    // Nothing changed: no device-meta call at the next interval.
    t.advance(10);
    for _ in 0..4 {
        let Some((_, c)) = t.call() else { break };
        assert!(!c.path.contains("device-meta"), "{c:?}");
        t.answer(200, if c.path.contains("steps") { "[]" } else { "{}" });
    }
}

#[test]
fn user_meta_from_the_hub_replaces_the_device_copy_only_when_it_changed() {
    let mut t = T::claimed();
    t.reach_idle();
    t.answer(200, "{}"); // device meta
    assert!(t.path().contains("user-meta"));
    t.answer(200, r#"{"k":"v"}"#);
    assert!(t.has(
        |a| matches!(a, HubAction::UserMeta(m) if m == &vec![("k".to_string(), "v".to_string())])
    ));
    t.answer(200, "[]"); // steps
    t.advance(5);
    while !t.path().contains("user-meta") {
        t.answer_idle();
    }
    t.answer(200, r#"{"k":"v"}"#);
    assert!(!t.has(|a| matches!(a, HubAction::UserMeta(_))));
}

#[test]
fn idle_polls_steps_once_per_interval_and_nothing_else() {
    let mut t = T::claimed();
    t.reach_idle();
    t.until_steps();
    t.answer(200, "[]");
    assert!(t.call().is_none());
    t.advance(4);
    assert!(t.call().is_none());
    t.advance(1);
    // steps and user meta are due together; both go out, one after the other.
    let mut seen = Vec::new();
    while let Some((_, c)) = t.call() {
        seen.push(c.path.clone());
        t.answer(200, if c.path.contains("steps") { "[]" } else { "{}" });
        if seen.len() > 4 {
            break;
        }
    }
    assert_eq!(
        seen.iter().filter(|p| p.contains("/steps?")).count(),
        1,
        "{seen:?}"
    );
}

fn to_first_step(t: &mut T, body: &str) {
    t.reach_idle();
    t.until_steps();
    t.answer(200, body);
}

#[test]
fn a_step_already_final_on_the_device_is_reported_from_disk_and_never_tried_again() {
    let mut t = T::claimed();
    t.dev.progress.insert(
        "3".into(),
        Progress::new("ERROR", "Status goal not reached", 100),
    );
    t.dev.step_objects = vec![("a".into(), "aa".into())];
    to_first_step(
        &mut t,
        &format!("[{},{}]", step(3, "TESTING"), step(4, "NEW")),
    );
    assert!(!t.has(|a| matches!(a, HubAction::InstallStep { rev, .. } if rev == "3")));
    assert!(t.has(|a| matches!(a, HubAction::InstallStep { rev, .. } if rev == "4")));
    // The ERROR of 3 goes to the hub first.
    let (_, c) = t.call().unwrap();
    assert_eq!(c.path, "/trails/d1/steps/3/progress");
    assert!(String::from_utf8_lossy(&c.body).contains(r#""status":"ERROR""#));
}

#[test]
fn a_bad_state_is_wontgo_with_the_parser_message() {
    let mut t = T::claimed();
    t.dev.bad_state = Some("run.json: missing root-volume".into());
    to_first_step(&mut t, &format!("[{}]", step(5, "NEW")));
    assert!(
        t.has(|a| matches!(a, HubAction::WriteProgress { rev, progress }
        if rev == "5" && progress.status == "WONTGO"
        && progress.status_msg == "State JSON has bad format"
        && progress.logs.as_deref() == Some("run.json: missing root-volume")))
    );
    assert_eq!(t.c.stage(), Stage::Idle);
}

#[test]
fn a_step_whose_signatures_are_refused_is_wontgo_before_any_object_is_asked_for() {
    let mut t = T::claimed();
    t.dev.step_objects = vec![("a".into(), "aa".into())];
    t.dev.refused_signatures = Some("Signature validation failed");
    to_first_step(&mut t, &format!("[{}]", step(7, "NEW")));
    assert!(
        t.has(|a| matches!(a, HubAction::WriteProgress { rev, progress }
        if rev == "7" && progress.status == "WONTGO"
        && progress.status_msg == "Signature validation failed"))
    );
    assert!(!t.has(|a| matches!(a, HubAction::Fetch { .. })));
    assert_eq!(t.c.stage(), Stage::Idle);
}

/// Drive a step to its downloads; returns the fetches.
fn to_downloads(t: &mut T) -> Vec<(CallId, String)> {
    t.dev.step_objects = vec![
        ("a".into(), "aa".into()),
        ("b".into(), "bb".into()),
        ("c".into(), "cc".into()),
        ("d".into(), "dd".into()),
    ];
    t.dev.have.insert("dd".into());
    to_first_step(t, &format!("[{}]", step(6, "NEW")));
    assert_eq!(t.c.stage(), Stage::PrepDownload);
    assert!(t.has(
        |a| matches!(a, HubAction::WriteProgress { progress, .. } if progress.status == "QUEUED")
    ));
    let mut fetches = Vec::new();
    for _ in 0..8 {
        let p = t.path();
        if let Some(sha) = p.strip_prefix("GET /objects/") {
            let sha = sha.to_string();
            t.answer(
                200,
                &format!(r#"{{"size":"100","signed-geturl":"https://h/local-s3/{sha}"}}"#),
            );
        } else if p.contains("progress") {
            t.answer(200, "{}");
        } else {
            break;
        }
        for a in &t.acts {
            if let HubAction::Fetch { id, sha, .. } = a {
                fetches.push((*id, sha.clone()));
            }
        }
    }
    fetches
}

#[test]
fn missing_objects_download_at_most_transfer_max_at_once_then_the_step_runs() {
    let mut t = T::claimed();
    let fetches = to_downloads(&mut t);
    assert_eq!(t.c.stage(), Stage::Download);
    assert_eq!(fetches.len(), 2, "transfer max is 2: {fetches:?}");
    assert!(
        !fetches.iter().any(|(_, s)| s == "dd"),
        "dd is already here"
    );
    let (id, sha) = fetches[0].clone();
    t.event(HubEvent::Downloaded {
        id,
        result: Ok(sha.clone()),
    });
    assert!(t.has(|a| matches!(a, HubAction::InstallObject { sha: s } if *s == sha)));
    let third: Vec<_> = t
        .acts
        .iter()
        .filter_map(|a| match a {
            HubAction::Fetch { id, sha, .. } => Some((*id, sha.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(third.len(), 1);
    for (id, sha) in [fetches[1].clone(), third[0].clone()] {
        t.event(HubEvent::Downloaded {
            id,
            result: Ok(sha),
        });
    }
    assert!(t.has(|a| matches!(a, HubAction::RunStep { rev } if rev == "6")));
    assert_eq!(t.c.stage(), Stage::Report);
}

#[test]
fn a_wrong_download_is_retried_then_the_update_is_error() {
    let mut t = T::claimed();
    let fetches = to_downloads(&mut t);
    let (mut id, sha) = fetches[0].clone();
    for round in 1..=BAD {
        t.event(HubEvent::Downloaded {
            id,
            result: Ok("ff".into()),
        });
        assert!(t.has(|a| matches!(a, HubAction::DiscardDownload { sha: s } if *s == sha)));
        if round < BAD {
            id = t
                .acts
                .iter()
                .find_map(|a| match a {
                    HubAction::Fetch { id, sha: s, .. } if *s == sha => Some(*id),
                    _ => None,
                })
                .expect("fetched again");
        }
    }
    assert!(
        t.has(|a| matches!(a, HubAction::WriteProgress { progress, .. }
        if progress.status == "ERROR" && progress.status_msg == "Object validation went wrong"))
    );
    assert!(t.has(|a| matches!(a, HubAction::Cancel { .. })));
    assert_eq!(t.c.stage(), Stage::Idle);
}
const BAD: u32 = download::BAD_DOWNLOADS;

#[test]
fn a_cut_download_resumes_after_a_backoff() {
    let mut t = T::claimed();
    let fetches = to_downloads(&mut t);
    let (id, sha) = fetches[0].clone();
    t.event(HubEvent::Fetched { id, bytes: 50 });
    t.event(HubEvent::Downloaded {
        id,
        result: Err("connection closed".into()),
    });
    assert!(!t.has(|a| matches!(a, HubAction::Fetch { .. })));
    t.advance(3);
    assert!(t.has(|a| matches!(a, HubAction::Fetch { sha: s, .. } if *s == sha)));
}

#[test]
fn not_enough_space_is_wontgo_before_any_byte() {
    let mut t = T::claimed();
    t.dev.free = 150;
    let fetches = to_downloads(&mut t);
    assert!(fetches.is_empty());
    assert!(t.ever(|a| matches!(a, HubAction::WriteProgress { progress, .. }
        if progress.status == "WONTGO" && progress.status_msg == "Space required 300 B, available 150 B")));
}

#[test]
fn a_try_that_never_reaches_the_hub_fails_after_the_network_timeout() {
    let mut t = T::claimed();
    t.dev.trying = Some(("7".into(), false));
    t.fail();
    for _ in 0..11 {
        t.advance(10);
        if t.call().is_some() {
            t.fail();
        }
        assert!(!t.has(|a| matches!(a, HubAction::FailTry { .. })));
    }
    t.advance(10);
    assert!(t.has(|a| matches!(a, HubAction::FailTry { reason } if reason == "Hub not reachable")));
}

#[test]
fn a_failed_request_while_testing_fails_the_try_once() {
    let dev = Fake {
        running: Some("7".into()),
        trying: Some(("7".into(), false)),
        ..Fake::default()
    };
    let mut t = T::new(creds(), true, dev);
    t.answer(200, r#"{"token":"t"}"#);
    assert_eq!(t.c.stage(), Stage::Report);
    assert!(t.c.reached_since_try());
    t.dev.trying = Some(("7".into(), true));
    t.fail();
    assert!(t.has(
        |a| matches!(a, HubAction::FailTry { reason } if reason == "Hub communication not stable")
    ));
    t.advance(5);
    if t.call().is_some() {
        t.fail();
    }
    assert!(!t.has(|a| matches!(a, HubAction::FailTry { .. })));
}

#[test]
fn every_stage_change_is_published_as_pantahub_state() {
    let mut t = T::claimed();
    assert!(t.has(
        |a| matches!(a, HubAction::Meta { key: "pantahub.state", value } if value == "login")
    ));
    t.answer(200, r#"{"token":"t"}"#);
    assert!(t.has(
        |a| matches!(a, HubAction::Meta { key: "pantahub.state", value } if value == "wait hub")
    ));
    assert!(
        t.has(|a| matches!(a, HubAction::Meta { key: "pantahub.online", value } if value == "1"))
    );
}

#[test]
fn unclaim_drops_the_credentials_and_registers_anew() {
    let mut t = T::claimed();
    t.reach_idle();
    t.event(HubEvent::Unclaim);
    assert!(t.has(
        |a| matches!(a, HubAction::SaveCreds { claimed: true, creds } if !creds.is_registered())
    ));
    assert_eq!(t.c.stage(), Stage::Register);
}

/// Pantavisor #404: a step the hub already shows INPROGRESS sent its updater into a loop.
#[test]
fn a_step_the_hub_shows_inprogress_is_taken_once_like_any_new_one() {
    let mut t = T::claimed();
    t.dev.step_objects = vec![("a".into(), "aa".into())];
    to_first_step(&mut t, &format!("[{}]", step(5, "INPROGRESS")));
    for _ in 0..5 {
        t.advance(5);
        if let Some((_, c)) = t.call() {
            let body = if c.path.starts_with("/objects/") {
                r#"{"size":"1","signed-geturl":"https://h/local-s3/aa"}"#
            } else {
                "{}"
            };
            t.answer(200, body);
        }
    }
    let installs = t
        .all
        .iter()
        .filter(|a| matches!(a, HubAction::InstallStep { rev, .. } if rev == "5"))
        .count();
    assert_eq!(installs, 1);
    assert!(t.ever(|a| matches!(a, HubAction::Fetch { sha, .. } if sha == "aa")));
}

/// Pantavisor #702: an unclaimed device that boots into a try revision never started its
/// hub client. Here the claim loop does not look at updates at all.
#[test]
fn an_unclaimed_device_trying_a_revision_still_registers_and_waits_for_its_claim() {
    let dev = Fake {
        running: Some("3".into()),
        trying: Some(("3".into(), false)),
        ..Fake::default()
    };
    let mut t = T::new(Creds::default(), false, dev);
    assert_eq!(t.path(), "POST /devices/");
    t.answer(200, r#"{"id":"d1","prn":"prn:::devices:/d1","secret":"s"}"#);
    t.answer(200, r#"{"token":"t0"}"#);
    assert_eq!(t.path(), "GET /devices/d1");
}

/// One console log holding `data`, as a scan sees it.
fn console_stream(data: &[u8]) -> logs::LogStream {
    logs::LogStream {
        path: "0/app/lxc/console.log".into(),
        origin: log_batch::Origin {
            rev: "0".into(),
            plat: "app".into(),
            src: "lxc/console.log".into(),
            own: false,
            mtime: (0, 0),
        },
        live: Some(logs::FileStat {
            ino: 7,
            born: 1,
            len: data.len() as u64,
            mtime: (900, 0),
        }),
        rotated: None,
    }
}

impl T {
    /// Answer the log scans and reads the client asks for from one console log of `data`.
    fn serve_logs(&mut self, data: &[u8]) {
        for _ in 0..10 {
            let io = self.acts.iter().find_map(|a| match a {
                HubAction::ScanLogs => Some(None),
                HubAction::ReadLog(r) => Some(Some(r.clone())),
                _ => None,
            });
            let ev = match io {
                None => return,
                Some(None) => HubEvent::LogsScanned {
                    enabled: true,
                    streams: vec![console_stream(data)],
                },
                Some(Some(r)) => HubEvent::LogRead(logs::Slice {
                    bytes: data[r.offset as usize..].to_vec(),
                    eof: true,
                    mtime: (900, 0),
                }),
            };
            self.event(ev);
        }
    }
    /// Answer every call but a log post (serving log reads meanwhile); the paths answered.
    fn until_logs_post(&mut self, data: &[u8]) -> Vec<String> {
        let mut seen = Vec::new();
        for _ in 0..10 {
            self.serve_logs(data);
            let p = self.path();
            if p == "POST /logs/" {
                return seen;
            }
            assert!(!p.is_empty(), "nothing in flight after {seen:?}");
            let body = if p.contains("/steps?") {
                "[]"
            } else if p == "GET /trails/" {
                r#"[{"id":"d1"}]"#
            } else {
                "{}"
            };
            seen.push(p);
            self.answer(200, body);
        }
        panic!("no log post after {seen:?}");
    }
}

#[test]
fn log_batches_go_after_a_due_steps_poll_and_again_after_a_relogin() {
    let mut t = T::claimed();
    t.reach_idle();
    t.until_steps();
    t.answer(200, "[]");
    t.c.enable_log_push(BTreeMap::new(), t.now);
    t.advance(5);
    let data = b"one\ntwo\n";
    let before = t.until_logs_post(data);
    assert!(before.iter().any(|p| p.contains("/steps?")), "{before:?}");
    let (_, call) = t.call().unwrap();
    let sent: serde_json::Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(
        (sent[0]["msg"].as_str(), sent[1]["msg"].as_str()),
        (Some("one"), Some("two"))
    );
    assert_eq!(
        (sent[0]["plat"].as_str(), sent[0]["tsec"].as_u64()),
        (Some("app"), Some(900))
    );
    t.answer(401, "");
    assert!(!t.ever(|a| matches!(a, HubAction::SaveLogCursor { .. })));
    assert_eq!(t.path(), "POST /auth/login");
    t.answer(200, r#"{"token":"t2"}"#);
    t.until_logs_post(data);
    let (_, again) = t.call().unwrap();
    assert_eq!(again.body, call.body, "the same lines once more");
    t.answer(200, r#"{"status":"ok"}"#);
    assert!(t.has(
        |a| matches!(a, HubAction::SaveLogCursor { log, cursor: Some(c) }
        if log == "0/app/lxc/console.log" && c.offset == data.len() as u64)
    ));
}

#[test]
fn log_server_errors_never_delay_the_steps_poll() {
    let mut t = T::claimed();
    t.reach_idle();
    t.until_steps();
    t.answer(200, "[]");
    t.c.enable_log_push(BTreeMap::new(), t.now);
    t.advance(5);
    t.until_logs_post(b"x\n");
    t.answer(503, "");
    // The log pusher backs off on its own; the next steps poll is on time.
    t.advance(5);
    t.serve_logs(b"x\n");
    let mut seen = Vec::new();
    for _ in 0..4 {
        let p = t.path();
        if p.contains("/steps?") {
            return;
        }
        assert_ne!(p, "POST /logs/", "logs before the steps poll: {seen:?}");
        seen.push(p);
        t.answer(200, "{}");
    }
    panic!("no steps poll on time: {seen:?}");
}

#[test]
fn user_meta_asks_again_with_the_hubs_etag_and_a_304_changes_nothing() {
    let mut t = T::claimed();
    t.reach_idle();
    t.answer(200, "{}"); // device meta
    let (_, c) = t.call().unwrap();
    assert!(c.path.contains("user-meta"));
    assert!(c.headers.iter().all(|(k, _)| k != "If-None-Match"), "{c:?}");
    t.answer_tagged(200, r#"{"k":"v"}"#, Some("\"e1\""));
    assert!(t.has(|a| matches!(a, HubAction::UserMeta(_))));
    t.answer(200, "[]"); // steps
    t.advance(5);
    while !t.path().contains("user-meta") {
        t.answer_idle();
    }
    let (_, c) = t.call().unwrap();
    assert!(
        c.headers
            .iter()
            .any(|(k, v)| k == "If-None-Match" && v == "\"e1\""),
        "{c:?}"
    );
    t.answer_tagged(304, "", Some("\"e1\""));
    assert!(!t.has(|a| matches!(a, HubAction::UserMeta(_))));
    assert!(!t.has(|a| matches!(
        a,
        HubAction::Log {
            level: log::Level::Warn,
            ..
        }
    )));
    // Polled again one interval later, still conditional.
    while t.call().is_some() {
        t.answer_idle();
    }
    t.advance(5);
    while !t.path().contains("user-meta") {
        t.answer_idle();
    }
    // A changed map comes whole with a new tag; a hub that drops ETags gets plain GETs.
    t.answer(200, r#"{"k":"w"}"#);
    assert!(t.has(
        |a| matches!(a, HubAction::UserMeta(m) if m == &vec![("k".to_string(), "w".to_string())])
    ));
    while t.call().is_some() {
        t.answer_idle();
    }
    t.advance(5);
    while !t.path().contains("user-meta") {
        t.answer_idle();
    }
    let (_, c) = t.call().unwrap();
    assert!(c.headers.iter().all(|(k, _)| k != "If-None-Match"), "{c:?}");
}

/// An idle claimed device with jitter on: the instants (since the login) of its calls for
/// `span`, each answered at once, the clock jumping from wake-up to wake-up.
fn idle_call_times(seed: u64, span: Duration) -> Vec<(Duration, String)> {
    let mut s = settings();
    s.seed = seed;
    s.jitter_percent = 10;
    let dev = Fake {
        running: Some("0".into()),
        free: 1 << 30,
        ..Fake::default()
    };
    let mut t = T::with(s, creds(), true, dev);
    let start = t.now;
    let mut seen = Vec::new();
    t.reach_idle();
    while t.now < start + span {
        while let Some((_, c)) = t.call() {
            let kind = if c.path.contains("/steps?") {
                "steps"
            } else if c.path.contains("user-meta") {
                "user-meta"
            } else {
                "device-meta"
            };
            seen.push((t.now - start, kind.to_string()));
            t.answer(200, if kind == "steps" { "[]" } else { "{}" });
        }
        let wake = t
            .all
            .iter()
            .rev()
            .find_map(|a| match a {
                HubAction::Wake { at } => Some(*at),
                _ => None,
            })
            .expect("an idle client asks to be woken");
        assert!(wake > t.now, "a wake-up in the past");
        t.now = wake;
        t.event(HubEvent::Timer);
    }
    seen
}

#[test]
fn idle_polls_are_spread_over_one_interval_and_differ_between_devices() {
    let hour = Duration::from_secs(600);
    let a = idle_call_times(1, hour);
    let steps: Vec<Duration> = a
        .iter()
        .filter(|(_, k)| k == "steps")
        .map(|(t, _)| *t)
        .collect();
    // The first poll waits a phase of at most one interval; then 4.5–5.5 s between polls.
    assert!(steps[0] <= Duration::from_secs(5), "{:?}", steps[0]);
    let gaps: Vec<Duration> = steps.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter()
            .all(|g| *g >= Duration::from_millis(4500) && *g <= Duration::from_millis(5500)),
        "{gaps:?}"
    );
    assert!(gaps.iter().any(|g| *g != gaps[0]), "not jittered: {gaps:?}");
    // As many polls as without jitter, give or take the phase.
    assert!((115..=121).contains(&steps.len()), "{}", steps.len());
    let users: Vec<Duration> = a
        .iter()
        .filter(|(_, k)| k == "user-meta")
        .map(|(t, _)| *t)
        .collect();
    assert!(users[0] <= Duration::from_secs(5));
    assert!(
        users
            .windows(2)
            .all(|w| w[1] - w[0] <= Duration::from_millis(5500))
    );
    // Deterministic per seed; another device polls at other instants.
    assert_eq!(a, idle_call_times(1, hour));
    let b = idle_call_times(2, hour);
    assert_ne!(a, b);
}

#[test]
fn the_whole_device_meta_goes_again_after_an_hour_never_sooner_with_jitter() {
    let calls = idle_call_times(11, Duration::from_secs(3 * 3600));
    let full: Vec<Duration> = calls
        .iter()
        .filter(|(_, k)| k == "device-meta")
        .map(|(t, _)| *t)
        .collect();
    // At login, then once per hour plus up to 6 minutes of spread; nothing changed between.
    assert_eq!(full.len(), 3, "{full:?}");
    assert!(full[0] < Duration::from_secs(1));
    for w in full.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_secs(3600) && gap <= Duration::from_secs(3960 + 6),
            "{full:?}"
        );
    }
}
