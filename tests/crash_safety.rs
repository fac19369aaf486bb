//! Crash safety, end to end with `kill -9` (what a power cut looks like to the storage):
//! an upload cut off half-way leaves no partial object and no temp file, and can be redone;
//! writes the daemon acknowledged (user and device metadata, local steps and their commit
//! messages, objects) are all there after the kill; `.tmp-*` leftovers planted anywhere the
//! store writes (objects/, trails/, trails/locals/, a revision's .pv/ and .pvr/, cache/) are
//! removed at start while everything else is kept; a `trails/current` link to a missing
//! revision is repaired to "0"; a corrupt metadata file does not stop the start.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

const SMALL: &[u8] = b"hello pvctrl object test\n";
const SMALL_SHA: &str = "ff392d69694b5d126342a1631f140b64881e726f9fa6714a3665a8df3b030976";

fn step_names(d: &Daemon) -> Vec<String> {
    d.get("/steps")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

/// Size of the (single) temp file in `dir`, 0 when there is none.
fn temp_size(dir: &Path) -> u64 {
    temp_names(dir)
        .first()
        .and_then(|n| std::fs::metadata(dir.join(n)).ok())
        .map(|m| m.len())
        .unwrap_or(0)
}

#[test]
fn kill9_mid_object_upload_leaves_no_partial_object_and_a_retry_succeeds() {
    let mut d = Daemon::start();
    let data: Vec<u8> = (0..10 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let sha = sha256_hex(&data);
    let objects = d.storage.join("objects");
    let mut s = d.connect();
    write!(
        s,
        "PUT /objects/{sha} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        data.len()
    )
    .unwrap();
    s.write_all(&data[..3 * 1024 * 1024]).unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || temp_size(&objects)
            >= 2 * 1024 * 1024),
        "the daemon was not writing the upload: {:?}",
        dir_names(&objects)
    );
    d.kill9();
    drop(s);
    assert!(
        d.socket.exists(),
        "kill -9 leaves a stale socket file behind"
    );
    d.spawn();
    assert_eq!(d.get("/objects").sb(), (200, "[]".to_string()));
    assert_eq!(
        dir_names(&objects),
        Vec::<String>::new(),
        "partial or temp file left"
    );
    assert_eq!(
        d.get(&format!("/objects/{sha}")).sb(),
        (
            400,
            r#"{"Error":"Request has bad object name"}"#.to_string()
        )
    );
    // The whole upload, again: it goes in.
    assert_eq!(
        d.put(&format!("/objects/{sha}"), &data).sb(),
        (200, String::new())
    );
    assert_eq!(
        d.get("/objects").text(),
        format!(r#"[{{"sha256":"{sha}","size":"10485760"}}]"#)
    );
    assert_eq!(sha256_hex(&d.get(&format!("/objects/{sha}")).body), sha);
    assert_eq!(dir_names(&objects), vec![sha]);
}

#[test]
fn kill9_mid_state_upload_leaves_no_revision_and_no_temp() {
    let mut d = Daemon::start();
    let trails = d.storage.join("trails");
    let mut s = d.connect();
    write!(
        s,
        "PUT /steps/locals/cut HTTP/1.1\r\nHost: localhost\r\nContent-Length: 800000\r\n\r\n"
    )
    .unwrap();
    let mut part = br##"{"#spec":"pantavisor-service-system@1""##.to_vec();
    part.resize(400_000, b' ');
    s.write_all(&part).unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || temp_size(&trails) >= 100_000),
        "the daemon was not spooling the state: {:?}",
        dir_names(&trails)
    );
    d.kill9();
    drop(s);
    d.spawn();
    assert_eq!(temp_names(&trails), Vec::<String>::new());
    assert_eq!(temp_names(&trails.join("locals")), Vec::<String>::new());
    assert!(!trails.join("locals/cut").exists());
    assert_eq!(step_names(&d), ["0"]);
    assert_eq!(
        d.get("/steps/locals/cut").sb(),
        (404, r#"{"Error":"Resource does not exist"}"#.to_string())
    );
}

#[test]
fn kill9_right_after_acknowledged_metadata_writes_keeps_them() {
    let mut d = Daemon::start();
    assert_eq!(d.put("/user-meta/first", b"1").status, 200);
    assert_eq!(d.put("/user-meta/doomed", b"x").status, 200);
    assert_eq!(d.put("/device-meta/site", b"lab").status, 200);
    assert_eq!(d.request("DELETE", "/user-meta/doomed", b"").status, 200);
    assert_eq!(d.put("/user-meta/last", br#"{"b":2,"a":1}"#).status, 200);
    d.kill9();
    d.spawn();
    assert_eq!(
        d.get("/user-meta").text(),
        r#"{"last":{"b":2,"a":1},"first":"1"}"#
    );
    assert_eq!(d.get("/device-meta").json()["site"], "lab");
}

#[test]
fn kill9_right_after_an_acknowledged_local_step_keeps_it() {
    let mut d = Daemon::start();
    let state = "{\"#spec\": \"pantavisor-service-system@1\"}\n";
    assert_eq!(d.put("/steps/locals/acked", state.as_bytes()).status, 200);
    assert_eq!(
        d.put("/steps/locals/acked/commitmsg", b"keep me").status,
        200
    );
    d.kill9();
    d.spawn();
    assert_eq!(d.get("/steps/locals/acked").sb(), (200, state.to_string()));
    assert_eq!(
        d.get("/steps/locals/acked/progress").text(),
        r#"{"status":"NEW","status-msg":"Update ready to be run","progress":0,"retries":0}"#
    );
    let steps = d.get("/steps").json();
    assert_eq!(steps[1]["name"], "locals/acked");
    assert_eq!(steps[1]["commitmsg"], "keep me");
}

#[test]
fn kill9_right_after_an_acknowledged_object_upload_keeps_it() {
    let mut d = Daemon::start();
    assert_eq!(d.put(&format!("/objects/{SMALL_SHA}"), SMALL).status, 200);
    d.kill9();
    d.spawn();
    assert_eq!(
        d.get("/objects").text(),
        format!(r#"[{{"sha256":"{SMALL_SHA}","size":"25"}}]"#)
    );
    assert_eq!(d.get(&format!("/objects/{SMALL_SHA}")).body, SMALL);
}

#[test]
fn leftover_temp_files_are_removed_at_start_and_everything_else_kept() {
    let mut d = Daemon::start();
    assert_eq!(d.put(&format!("/objects/{SMALL_SHA}"), SMALL).status, 200);
    assert_eq!(d.put("/steps/locals/x", EMPTY_STATE.as_bytes()).status, 200);
    assert_eq!(d.put("/steps/locals/x/commitmsg", b"real").status, 200);
    assert_eq!(d.put("/user-meta/k", b"v").status, 200);
    assert!(d.stop().success());
    let st = d.storage.clone();
    let files = [
        format!("objects/.tmp-{SMALL_SHA}-4242-0"),
        format!("objects/.tmp-{}-4242-1", "a".repeat(64)),
        "trails/.tmp-upload-4242-2".to_string(),
        "trails/locals/.tmp-y-4242-3".to_string(),
        "cache/.tmp-usrmeta.json-4242-4".to_string(),
        "cache/.tmp-devmeta.json-4242-5".to_string(),
        "trails/0/.pv/.tmp-progress-4242-6".to_string(),
        "trails/locals/x/.pv/.tmp-commitmsg-4242-7".to_string(),
        "trails/locals/x/.pvr/.tmp-json-4242-8".to_string(),
    ];
    for f in &files {
        std::fs::write(st.join(f), b"partial").unwrap();
    }
    // Half-built revision directories (complete-looking inside) under temp names.
    let dirs = ["trails/.tmp-9-4242-9", "trails/locals/.tmp-z-4242-10"];
    for dir in dirs {
        std::fs::create_dir_all(st.join(dir).join(".pvr")).unwrap();
        std::fs::write(st.join(dir).join(".pvr/json"), EMPTY_STATE).unwrap();
    }
    d.spawn();
    for p in files.iter().map(String::as_str).chain(dirs) {
        assert!(!st.join(p).exists(), "{p} survived the start");
    }
    // Everything real is still there.
    assert_eq!(dir_names(&st.join("objects")), vec![SMALL_SHA.to_string()]);
    assert_eq!(d.get(&format!("/objects/{SMALL_SHA}")).body, SMALL);
    assert_eq!(step_names(&d), ["0", "locals/x"]);
    assert_eq!(d.get("/steps").json()[1]["commitmsg"], "real");
    assert_eq!(d.get("/steps/locals/x").text(), EMPTY_STATE);
    assert_eq!(d.get("/user-meta").text(), r#"{"k":"v"}"#);
    assert_eq!(dir_names(&st.join("trails/locals")), vec!["x".to_string()]);
}

fn current_link(d: &Daemon) -> String {
    std::fs::read_link(d.storage.join("trails/current"))
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn dangling_current_symlink_is_repaired_to_0_at_start() {
    let mut d = Daemon::start();
    assert!(d.stop().success());
    let link = d.storage.join("trails/current");
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink("locals/gone", &link).unwrap();
    d.spawn();
    assert_eq!(current_link(&d), "0");
    assert_eq!(d.get("/steps/current").sb(), (200, EMPTY_STATE.to_string()));
    assert_eq!(d.get("/device-meta").json()["pantavisor.revision"], "0");
    // Missing altogether: recreated the same way.
    assert!(d.stop().success());
    std::fs::remove_file(&link).unwrap();
    d.spawn();
    assert_eq!(current_link(&d), "0");
    assert_eq!(d.get("/steps/current").text(), EMPTY_STATE);
}

#[test]
fn current_pointing_at_an_existing_revision_is_kept_at_start() {
    let mut d = Daemon::start();
    let state = "{\"#spec\":\"pantavisor-service-system@1\" }";
    assert_eq!(d.put("/steps/locals/run", state.as_bytes()).status, 200);
    assert!(d.stop().success());
    let link = d.storage.join("trails/current");
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink("locals/run", &link).unwrap();
    d.spawn();
    assert_eq!(current_link(&d), "locals/run");
    assert_eq!(d.get("/steps/current").text(), state);
    assert_eq!(
        d.get("/device-meta").json()["pantavisor.revision"],
        "locals/run"
    );
}

#[test]
fn corrupt_metadata_file_does_not_stop_the_start_and_is_kept_aside() {
    let mut d = Daemon::start();
    assert_eq!(d.put("/user-meta/k", b"v").status, 200);
    assert!(d.stop().success());
    let cache = d.storage.join("cache");
    let garbage = b"{\"k\": tru";
    std::fs::write(cache.join("usrmeta.json"), garbage).unwrap();
    d.spawn();
    assert_eq!(d.get("/user-meta").sb(), (200, "{}".to_string()));
    assert_eq!(d.put("/user-meta/new", b"1").status, 200);
    assert_eq!(d.get("/user-meta").text(), r#"{"new":"1"}"#);
    // The unreadable bytes are not thrown away.
    let kept = dir_names(&cache)
        .into_iter()
        .any(|n| std::fs::read(cache.join(&n)).is_ok_and(|b| b == garbage));
    assert!(
        kept,
        "corrupt file not kept in cache/: {:?}",
        dir_names(&cache)
    );
}

#[test]
fn sigterm_mid_upload_exits_0_and_leaves_no_temp_file() {
    let mut d = Daemon::start();
    let data = vec![1u8; 4 * 1024 * 1024];
    let sha = sha256_hex(&data);
    let objects = d.storage.join("objects");
    let mut s = d.connect();
    write!(
        s,
        "PUT /objects/{sha} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        data.len()
    )
    .unwrap();
    s.write_all(&data[..1024 * 1024]).unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || temp_size(&objects)
            >= 512 * 1024),
        "the daemon was not writing the upload"
    );
    assert_eq!(d.stop().code(), Some(0), "{}", d.log_text());
    assert_eq!(
        dir_names(&objects),
        Vec::<String>::new(),
        "left in objects/"
    );
    assert!(!d.socket.exists());
    d.spawn();
    assert_eq!(d.get("/objects").text(), "[]");
}
