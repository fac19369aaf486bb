//! `/steps` end to end: the factory revision 0 of a fresh storage (state, progress, the
//! hand-built `GET /steps` list with Pantavisor's ", " separators and key order), local
//! revisions (`PUT /steps/locals/<name>`: validation → 422, name checks → 400 "bas step name"
//! (sic), size cap → 413), progress, commit messages, 404 for unknown revisions, routing errors
//! (trailing slash, wrong method, `..`), and that nothing refused leaves a directory or temp
//! file under `trails/`. Revisions and commit messages survive a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

const FACTORY_PROGRESS: &str =
    r#"{"status":"DONE","status-msg":"Factory revision","progress":100,"retries":0}"#;
const NEW_PROGRESS: &str =
    r#"{"status":"NEW","status-msg":"Update ready to be run","progress":0,"retries":0}"#;
const BAD_STATE: &str = r#"{"Error":"Parser: State JSON has bad format"}"#;
const BAD_STEP: &str = r#"{"Error":"Request has bas step name"}"#;
const NOT_FOUND: &str = r#"{"Error":"Resource does not exist"}"#;
const WRONG_METHOD: &str = r#"{"Error":"Method not supported for this endpoint"}"#;

/// A valid state that is not byte-identical to revision 0's (spacing kept as sent).
const LOCAL_STATE: &str = "{ \"#spec\": \"pantavisor-service-system@1\" }\n";

fn step_names(d: &Daemon) -> Vec<String> {
    d.get("/steps")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

/// No temp file or directory anywhere the trails code writes.
fn assert_no_trail_temps(d: &Daemon) {
    for sub in ["trails", "trails/locals"] {
        let left = temp_names(&d.storage.join(sub));
        assert!(left.is_empty(), "temp entries left in {sub}: {left:?}");
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
fn is_pv_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[test]
fn fresh_storage_lists_only_factory_revision_0() {
    let d = Daemon::start();
    let r = d.get("/steps");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let text = r.text();
    // Hand-built like Pantavisor's: keys in this order, ", " between members.
    let prefix = r#"[{"name":"0", "date":""#;
    let suffix = format!(r#"", "commitmsg":"", "progress":{FACTORY_PROGRESS}}}]"#);
    assert!(
        text.starts_with(prefix) && text.ends_with(&suffix),
        "{text}"
    );
    let date = &text[prefix.len()..text.len() - suffix.len()];
    assert!(is_pv_date(date), "date {date:?}");
    let steps = ordered_array(&text);
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].keys(), ["name", "date", "commitmsg", "progress"]);
    assert!(d.storage.join("trails/0/.pv/done").is_file());
}

#[test]
fn revision_0_and_current_return_the_empty_factory_state() {
    let d = Daemon::start();
    for path in ["/steps/0", "/steps/current"] {
        let r = d.get(path);
        assert_eq!(r.sb(), (200, EMPTY_STATE.to_string()), "{path}");
        assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
    }
    assert_eq!(
        std::fs::read_link(d.storage.join("trails/current"))
            .unwrap()
            .to_str(),
        Some("0")
    );
}

#[test]
fn progress_of_revision_0_is_done_factory_revision() {
    let d = Daemon::start();
    for path in ["/steps/0/progress", "/steps/current/progress"] {
        let r = d.get(path);
        assert_eq!(r.sb(), (200, FACTORY_PROGRESS.to_string()), "{path}");
        assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
    }
}

#[test]
fn put_local_step_is_listed_after_0_with_progress_new() {
    let d = Daemon::start();
    assert_eq!(
        d.put("/steps/locals/x", LOCAL_STATE.as_bytes()).sb(),
        (200, String::new())
    );
    assert_eq!(step_names(&d), ["0", "locals/x"]);
    let steps = d.get("/steps").text();
    assert!(
        steps.contains(r#"{"name":"locals/x", "date":""#)
            && steps.ends_with(&format!(
                r#", "commitmsg":"", "progress":{NEW_PROGRESS}}}]"#
            )),
        "{steps}"
    );
    assert_eq!(
        d.get("/steps/locals/x/progress").sb(),
        (200, NEW_PROGRESS.to_string())
    );
    // The state comes back exactly as sent, and lies where Pantavisor keeps it.
    assert_eq!(
        d.get("/steps/locals/x").sb(),
        (200, LOCAL_STATE.to_string())
    );
    let rev = d.storage.join("trails/locals/x");
    assert_eq!(
        std::fs::read_to_string(rev.join(".pvr/json")).unwrap(),
        LOCAL_STATE
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rev.join(".pvr/config")).unwrap()).unwrap();
    assert_eq!(
        config["ObjectsDir"],
        d.storage.join("objects").to_str().unwrap()
    );
    // The running revision is still 0.
    assert_eq!(d.get("/steps/current").text(), EMPTY_STATE);
    assert_no_trail_temps(&d);
}

#[test]
fn put_over_an_existing_local_step_replaces_its_state() {
    let d = Daemon::start();
    assert_eq!(d.put("/steps/locals/x", LOCAL_STATE.as_bytes()).status, 200);
    assert_eq!(d.put("/steps/locals/x", EMPTY_STATE.as_bytes()).status, 200);
    assert_eq!(d.get("/steps/locals/x").text(), EMPTY_STATE);
    assert_eq!(step_names(&d), ["0", "locals/x"]);
    assert_no_trail_temps(&d);
}

#[test]
fn put_over_the_running_revision_is_409_and_changes_nothing() {
    let mut d = Daemon::start();
    assert_eq!(
        d.put("/steps/locals/run", LOCAL_STATE.as_bytes()).status,
        200
    );
    assert!(d.stop().success());
    let link = d.storage.join("trails/current");
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink("locals/run", &link).unwrap();
    d.spawn();
    let r = d.put("/steps/locals/run", EMPTY_STATE.as_bytes());
    assert_eq!(r.status, 409, "{r:?}");
    assert!(r.json()["Error"].is_string(), "{r:?}");
    assert_eq!(d.get("/steps/locals/run").text(), LOCAL_STATE);
    assert_eq!(d.get("/steps/current").text(), LOCAL_STATE);
    assert_no_trail_temps(&d);
}

#[test]
fn invalid_state_json_is_422_and_creates_no_revision() {
    let d = Daemon::start();
    let bad: [&[u8]; 6] = [
        b"{not json",
        b"[]",
        b"{}",
        br##"{"#spec":"pantavisor-multi-platform@1"}"##,
        br##"{"#spec":1}"##,
        br##"{"#spec":"pantavisor-service-system@1","../evil":{}}"##,
    ];
    for body in bad {
        assert_eq!(
            d.put("/steps/locals/x", body).sb(),
            (422, BAD_STATE.to_string()),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    assert!(!d.storage.join("trails/locals/x").exists());
    assert!(!d.storage.join("evil").exists());
    assert_eq!(step_names(&d), ["0"]);
    assert_no_trail_temps(&d);
}

#[test]
fn bad_step_names_are_400_bas_step_name() {
    let d = Daemon::start();
    let long = format!("/steps/locals/{}", "a".repeat(65));
    for path in [
        "/steps/locals/..",
        "/steps/locals/.",
        "/steps/locals/.hidden",
        long.as_str(),
        "/steps/7",
        "/steps/0",
        "/steps/current",
    ] {
        assert_eq!(
            d.put(path, EMPTY_STATE.as_bytes()).sb(),
            (400, BAD_STEP.to_string()),
            "PUT {path}"
        );
    }
    assert_eq!(step_names(&d), ["0"]);
    assert_eq!(
        dir_names(&d.storage.join("trails/locals")),
        Vec::<String>::new()
    );
    // 64 characters is still a good name.
    let name64 = "a".repeat(64);
    assert_eq!(
        d.put(&format!("/steps/locals/{name64}"), EMPTY_STATE.as_bytes())
            .status,
        200
    );
    assert_eq!(
        step_names(&d),
        ["0".to_string(), format!("locals/{name64}")]
    );
}

#[test]
fn dotdot_in_a_step_path_is_400_and_writes_nothing_outside() {
    let d = Daemon::start();
    let r = d.put("/steps/locals/../x", EMPTY_STATE.as_bytes());
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        r.text(),
        r#"{"Error":"unknown endpoint: /steps/locals/../x"}"#
    );
    assert!(!d.storage.join("trails/x").exists());
    // A commit message cannot be aimed outside a revision either.
    for path in ["/steps/locals/../commitmsg", "/steps/../commitmsg"] {
        assert_eq!(
            d.put(path, b"escape").sb(),
            (404, NOT_FOUND.to_string()),
            "{path}"
        );
    }
    assert!(!d.storage.join("trails/.pv").exists());
    assert!(!d.storage.join(".pv").exists());
    assert_eq!(step_names(&d), ["0"]);
}

#[test]
fn unknown_revision_is_404_resource_does_not_exist() {
    let d = Daemon::start();
    for path in [
        "/steps/9",
        "/steps/locals/none",
        "/steps/9/progress",
        "/steps/locals/none/progress",
        "/steps/..",
    ] {
        let r = d.get(path);
        assert_eq!(r.sb(), (404, NOT_FOUND.to_string()), "GET {path}");
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    assert_eq!(
        d.put("/steps/locals/none/commitmsg", b"m").sb(),
        (404, NOT_FOUND.to_string())
    );
    assert!(!d.storage.join("trails/locals/none").exists());
}

#[test]
fn commit_message_is_stored_and_shown_in_steps() {
    let d = Daemon::start();
    assert_eq!(d.put("/steps/locals/x", EMPTY_STATE.as_bytes()).status, 200);
    let msg = "fix \"quoted\" thing\nsecond line";
    assert_eq!(
        d.put("/steps/locals/x/commitmsg", msg.as_bytes()).sb(),
        (200, String::new())
    );
    let steps = d.get("/steps").json();
    assert_eq!(steps[1]["name"], "locals/x");
    assert_eq!(steps[1]["commitmsg"], msg);
    assert_eq!(steps[0]["commitmsg"], "");
    assert_eq!(
        std::fs::read_to_string(d.storage.join("trails/locals/x/.pv/commitmsg")).unwrap(),
        msg
    );
    // Revision 0 takes one too, and a second message replaces the first.
    assert_eq!(d.put("/steps/0/commitmsg", b"factory").status, 200);
    assert_eq!(d.put("/steps/0/commitmsg", b"factory 2").status, 200);
    assert_eq!(d.get("/steps").json()[0]["commitmsg"], "factory 2");
    assert_no_trail_temps(&d);
}

#[test]
fn empty_commit_message_is_400_no_commit_message() {
    let d = Daemon::start();
    let r = d.put("/steps/0/commitmsg", b"");
    assert_eq!(
        r.sb(),
        (400, r#"{"Error":"No commit message"}"#.to_string())
    );
    assert!(!d.storage.join("trails/0/.pv/commitmsg").exists());
}

#[test]
fn commit_message_over_256_bytes_is_413() {
    let d = Daemon::start();
    let (r, _s) = send_racing(
        &d,
        "PUT /steps/0/commitmsg HTTP/1.1\r\nHost: localhost\r\nContent-Length: 257\r\n\r\n",
        vec![b'm'; 257],
    );
    assert_eq!(r.status, 413, "{r:?}");
    assert!(r.json()["Error"].is_string(), "{r:?}");
    assert!(!d.storage.join("trails/0/.pv/commitmsg").exists());
    assert_eq!(d.get("/steps").json()[0]["commitmsg"], "");
    // Exactly 256 is fine.
    let max = "m".repeat(256);
    assert_eq!(d.put("/steps/0/commitmsg", max.as_bytes()).status, 200);
    assert_eq!(d.get("/steps").json()[0]["commitmsg"], max.as_str());
}

/// A valid state of exactly `len` bytes (padded with spaces inside the object).
fn state_of_len(len: usize) -> Vec<u8> {
    let head = br##"{"#spec":"pantavisor-service-system@1""##;
    let mut v = head.to_vec();
    v.resize(len - 1, b' ');
    v.push(b'}');
    v
}

#[test]
fn state_over_1_mib_is_413_and_stores_nothing() {
    let d = Daemon::start();
    let big = state_of_len(1024 * 1024 + 1);
    // Declared by Content-Length: refused from the head.
    let (r, mut s) = send_racing(
        &d,
        &format!(
            "PUT /steps/locals/big HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
            big.len()
        ),
        big.clone(),
    );
    assert_eq!(r.status, 413, "{r:?}");
    assert!(r.json()["Error"].is_string(), "{r:?}");
    assert!(daemon_closed(&mut s));
    // Chunked: found out while receiving.
    let mut body = Vec::new();
    for piece in big.chunks(100_000) {
        body.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        body.extend_from_slice(piece);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let (r, mut s) = send_racing(
        &d,
        "PUT /steps/locals/big HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
        body,
    );
    assert_eq!(r.status, 413, "{r:?}");
    assert!(daemon_closed(&mut s));
    assert!(!d.storage.join("trails/locals/big").exists());
    assert!(
        wait_for(std::time::Duration::from_secs(2), || temp_names(
            &d.storage.join("trails")
        )
        .is_empty()),
        "{:?}",
        temp_names(&d.storage.join("trails"))
    );
    // Exactly 1 MiB is accepted.
    assert_eq!(
        d.put("/steps/locals/big", &state_of_len(1024 * 1024))
            .status,
        200
    );
    assert_eq!(step_names(&d), ["0", "locals/big"]);
}

#[test]
fn trailing_slash_is_400_unknown_endpoint() {
    let d = Daemon::start();
    for path in [
        "/steps/",
        "/steps/0/",
        "/steps/locals/",
        "/steps/0/progress/",
    ] {
        assert_eq!(
            d.get(path).sb(),
            (400, format!(r#"{{"Error":"unknown endpoint: {path}"}}"#)),
            "{path}"
        );
    }
    assert_eq!(
        d.put("/steps/locals/x/", EMPTY_STATE.as_bytes()).sb(),
        (
            400,
            r#"{"Error":"unknown endpoint: /steps/locals/x/"}"#.to_string()
        )
    );
    assert_eq!(
        d.get("/steps/0/nope").sb(),
        (
            400,
            r#"{"Error":"unknown endpoint: /steps/0/nope"}"#.to_string()
        )
    );
}

#[test]
fn wrong_method_on_steps_is_400_method_not_supported() {
    let d = Daemon::start();
    for (method, path) in [
        ("POST", "/steps"),
        ("PUT", "/steps"),
        ("DELETE", "/steps/0"),
        ("POST", "/steps/locals/x"),
        ("DELETE", "/steps/locals/x"),
        ("PUT", "/steps/0/progress"),
        ("GET", "/steps/0/commitmsg"),
    ] {
        assert_eq!(
            d.request(method, path, b"").sb(),
            (400, WRONG_METHOD.to_string()),
            "{method} {path}"
        );
    }
    assert_eq!(step_names(&d), ["0"]);
}

#[test]
fn steps_survive_a_restart() {
    let mut d = Daemon::start();
    assert_eq!(d.put("/steps/locals/x", LOCAL_STATE.as_bytes()).status, 200);
    assert_eq!(d.put("/steps/locals/x/commitmsg", b"kept").status, 200);
    assert_eq!(d.put("/steps/locals/y", EMPTY_STATE.as_bytes()).status, 200);
    let before = d.get("/steps").text();
    assert!(d.stop().success());
    d.spawn();
    assert_eq!(d.get("/steps").text(), before);
    assert_eq!(d.get("/steps/locals/x").text(), LOCAL_STATE);
    assert_eq!(d.get("/steps/locals/x/progress").text(), NEW_PROGRESS);
    assert_eq!(d.get("/steps/current").text(), EMPTY_STATE);
}
