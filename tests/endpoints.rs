//! Every pv-ctrl endpoint of the core and its errors, with Pantavisor's exact bodies; the
//! command line and configuration; restart persistence and crash leftovers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::process::Command;

use common::*;

const EMPTY_STATE: &str = r##"{"#spec":"pantavisor-service-system@1"}"##;
const SMALL: &[u8] = b"hello pvctrl object test\n";
const SMALL_SHA: &str = "ff392d69694b5d126342a1631f140b64881e726f9fa6714a3665a8df3b030976";

fn objects_dir_entries(d: &Daemon) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d.storage.join("objects"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

// ---- objects ----

#[test]
fn object_upload_list_download_round_trip() {
    let d = Daemon::start();
    assert_eq!(d.get("/objects").text(), "[]");
    assert_eq!(
        d.put(&format!("/objects/{SMALL_SHA}"), SMALL).sb(),
        (200, String::new())
    );
    assert_eq!(
        d.get("/objects").text(),
        format!(r#"[{{"sha256":"{SMALL_SHA}","size":"25"}}]"#)
    );
    let r = d.get(&format!("/objects/{SMALL_SHA}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.body, SMALL);
}

#[test]
fn object_download_to_http10_is_close_delimited() {
    let d = Daemon::start();
    d.put(&format!("/objects/{SMALL_SHA}"), SMALL);
    let raw = d.raw(format!("GET /objects/{SMALL_SHA} HTTP/1.0\r\n\r\n").as_bytes());
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
    assert!(!text.contains("chunked"), "{text}");
    assert!(
        text.ends_with("\r\n\r\nhello pvctrl object test\n"),
        "{text}"
    );
}

#[test]
fn object_with_wrong_checksum_is_422_and_leaves_nothing() {
    let d = Daemon::start();
    let r = d.put(
        &format!("/objects/{}", "a".repeat(64)),
        b"checksum mismatch payload\n",
    );
    assert_eq!(
        r.sb(),
        (422, r#"{"Error":"Object has bad checksum"}"#.into())
    );
    assert!(
        objects_dir_entries(&d).is_empty(),
        "{:?}",
        objects_dir_entries(&d)
    );
}

#[test]
fn reupload_of_an_existing_object_is_200_and_changes_nothing() {
    let d = Daemon::start();
    d.put(&format!("/objects/{SMALL_SHA}"), SMALL);
    // Even a wrong body: the object is already there, the body is only drained.
    assert_eq!(d.put(&format!("/objects/{SMALL_SHA}"), SMALL).status, 200);
    assert_eq!(d.get("/objects").json().as_array().unwrap().len(), 1);
    assert_eq!(objects_dir_entries(&d), vec![SMALL_SHA.to_string()]);
}

#[test]
fn bad_or_missing_object_names_are_400() {
    let d = Daemon::start();
    let bad = r#"{"Error":"Request has bad object name"}"#.to_string();
    assert_eq!(d.put("/objects/abc", SMALL).sb(), (400, bad.clone()));
    assert_eq!(
        d.get(&format!("/objects/{}", "z".repeat(64))).sb(),
        (400, bad.clone())
    );
    // Pantavisor answers a missing object with the same 400, not 404.
    assert_eq!(
        d.get(&format!("/objects/{}", "b".repeat(64))).sb(),
        (400, bad)
    );
}

#[test]
fn object_larger_than_free_space_is_507_before_a_byte_is_written() {
    let d = Daemon::start();
    let mut s = d.connect();
    write!(
        s,
        "PUT /objects/{} HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        "c".repeat(64),
        1u64 << 60
    )
    .unwrap();
    let r = read_reply(&mut s);
    assert_eq!(
        r.sb(),
        (507, r#"{"Error":"Not enough disk space available"}"#.into())
    );
    assert!(is_closed(&mut s));
    assert!(objects_dir_entries(&d).is_empty());
}

#[test]
fn disk_full_while_writing_is_507_and_cleans_up() {
    let dir = TempDir::new("enospc");
    let storage = dir.path().join("small");
    std::fs::create_dir_all(&storage).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tern-enospc"])
        .arg(&storage)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a small tmpfs (needs root)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _guard = Unmount(storage.clone());
    let d = Daemon::start_with(
        Opts::default()
            .arg("--storage")
            .arg(storage.to_str().unwrap()),
    );
    let data = vec![5u8; 2 * 1024 * 1024];
    let sha = sha256_hex(&data);
    let mut s = d.connect();
    write!(
        s,
        "PUT /objects/{sha} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .unwrap();
    let mut writer = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        for piece in data.chunks(64 * 1024) {
            if write!(writer, "{:x}\r\n", piece.len()).is_err() || writer.write_all(piece).is_err()
            {
                return;
            }
            let _ = writer.write_all(b"\r\n");
        }
        let _ = writer.write_all(b"0\r\n\r\n");
    });
    let r = read_reply(&mut s);
    let _ = sender.join();
    assert_eq!(
        r.sb(),
        (507, r#"{"Error":"Not enough disk space available"}"#.into())
    );
    let left: Vec<_> = std::fs::read_dir(storage.join("objects"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "temp file left behind");
    assert_eq!(d.get("/steps").status, 200);
}

#[test]
fn a_200_mb_object_streams_in_and_out_in_bounded_memory() {
    let d = Daemon::start();
    let block: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 253) as u8).collect();
    let blocks = 200 * 16; // 200 MiB
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    for _ in 0..blocks {
        sha2::Digest::update(&mut hasher, &block);
    }
    let sha = tern::store::objects::hex(&sha2::Digest::finalize(hasher));
    let total = block.len() as u64 * blocks as u64;
    let mut s = d.connect();
    write!(
        s,
        "PUT /objects/{sha} HTTP/1.1\r\nContent-Length: {total}\r\n\r\n"
    )
    .unwrap();
    for _ in 0..blocks {
        s.write_all(&block).unwrap();
    }
    assert_eq!(read_reply(&mut s).status, 200);
    assert_eq!(d.get("/objects").json()[0]["size"], total.to_string());
    // Download it back, hashing as it arrives.
    let mut s = d.connect();
    write!(s, "GET /objects/{sha} HTTP/1.0\r\n\r\n").unwrap();
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut head = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut in_body = false;
    let mut body_len = 0u64;
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        let mut chunk = &buf[..n];
        if !in_body {
            head.extend_from_slice(chunk);
            if let Some(p) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                chunk = &head[p + 4..];
                sha2::Digest::update(&mut hasher, chunk);
                body_len += chunk.len() as u64;
                in_body = true;
            }
            continue;
        }
        sha2::Digest::update(&mut hasher, chunk);
        body_len += chunk.len() as u64;
    }
    assert_eq!(body_len, total);
    assert_eq!(
        tern::store::objects::hex(&sha2::Digest::finalize(hasher)),
        sha
    );
    let peak = d.status_kb("VmHWM:");
    assert!(
        peak < 20 * 1024,
        "daemon peak RSS {peak} kB while moving 200 MiB"
    );
}

// ---- steps ----

#[test]
fn fresh_storage_has_factory_revision_0() {
    let d = Daemon::start();
    let steps = d.get("/steps").json();
    assert_eq!(steps.as_array().unwrap().len(), 1);
    assert_eq!(steps[0]["name"], "0");
    assert_eq!(steps[0]["commitmsg"], "");
    let progress =
        r#"{"status":"DONE","status-msg":"Factory revision","progress":100,"retries":0}"#;
    assert_eq!(
        steps[0]["progress"],
        serde_json::from_str::<serde_json::Value>(progress).unwrap()
    );
    assert_eq!(d.get("/steps/0").sb(), (200, EMPTY_STATE.into()));
    assert_eq!(d.get("/steps/current").sb(), (200, EMPTY_STATE.into()));
    assert_eq!(d.get("/steps/0/progress").sb(), (200, progress.into()));
    assert!(d.storage.join("trails/0/.pv/done").is_file());
}

#[test]
fn local_revision_put_list_progress_and_commit_message() {
    let d = Daemon::start();
    assert_eq!(d.put("/steps/locals/x", EMPTY_STATE.as_bytes()).status, 200);
    let steps = d.get("/steps").json();
    assert_eq!(steps[1]["name"], "locals/x");
    assert_eq!(
        d.get("/steps/locals/x/progress").text(),
        r#"{"status":"NEW","status-msg":"Update ready to be run","progress":0,"retries":0}"#
    );
    assert_eq!(d.get("/steps/locals/x").text(), EMPTY_STATE);
    assert_eq!(d.put("/steps/locals/x/commitmsg", b"my change").status, 200);
    assert_eq!(d.get("/steps").json()[1]["commitmsg"], "my change");
    assert_eq!(d.put("/steps/0/commitmsg", b"factory").status, 200);
    assert_eq!(d.get("/steps").json()[0]["commitmsg"], "factory");
}

#[test]
fn bad_state_json_is_422_and_stores_nothing() {
    let d = Daemon::start();
    for bad in [
        &b"{not json"[..],
        b"[]",
        br##"{"#spec":"other@1"}"##,
        br##"{"#spec":"pantavisor-service-system@1","a/b":"short"}"##,
    ] {
        let r = d.put("/steps/locals/x", bad);
        assert_eq!(
            r.sb(),
            (
                422,
                r#"{"Error":"Parser: State JSON has bad format"}"#.into()
            )
        );
    }
    assert!(!d.storage.join("trails/locals/x").exists());
    let leftovers: Vec<_> = std::fs::read_dir(d.storage.join("trails"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        leftovers
            .iter()
            .all(|n| !n.to_string_lossy().starts_with(".tmp")),
        "{leftovers:?}"
    );
}

#[test]
fn step_names_are_checked() {
    let d = Daemon::start();
    let bad = r#"{"Error":"Request has bas step name"}"#.to_string();
    assert_eq!(
        d.put(
            &format!("/steps/locals/{}", "a".repeat(65)),
            EMPTY_STATE.as_bytes()
        )
        .sb(),
        (400, bad.clone())
    );
    assert_eq!(
        d.put("/steps/7", EMPTY_STATE.as_bytes()).sb(),
        (400, bad.clone())
    );
    assert_eq!(
        d.put("/steps/locals/..", EMPTY_STATE.as_bytes()).sb(),
        (400, bad)
    );
    assert_eq!(
        d.put(
            &format!("/steps/locals/{}", "a".repeat(64)),
            EMPTY_STATE.as_bytes()
        )
        .status,
        200
    );
}

#[test]
fn unknown_revisions_are_404() {
    let d = Daemon::start();
    let missing = (404, r#"{"Error":"Resource does not exist"}"#.to_string());
    assert_eq!(d.get("/steps/9").sb(), missing);
    assert_eq!(d.get("/steps/locals/none").sb(), missing);
    assert_eq!(d.get("/steps/9/progress").sb(), missing);
    assert_eq!(d.put("/steps/9/commitmsg", b"m").sb(), missing);
    assert_eq!(d.get("/steps/..").sb(), missing);
}

#[test]
fn commit_messages_must_be_present_and_short() {
    let d = Daemon::start();
    assert_eq!(
        d.put("/steps/0/commitmsg", b"").sb(),
        (400, r#"{"Error":"No commit message"}"#.into())
    );
    assert_eq!(d.put("/steps/0/commitmsg", &[b'm'; 257]).status, 413);
    assert_eq!(d.put("/steps/0/commitmsg", &[b'm'; 256]).status, 200);
}

#[test]
fn state_over_one_mib_is_413() {
    let d = Daemon::start();
    let big = format!(
        r##"{{"#spec":"pantavisor-service-system@1","pad":"{}"}}"##,
        "x".repeat(1024 * 1024)
    );
    assert_eq!(d.put("/steps/locals/big", big.as_bytes()).status, 413);
    assert!(!d.storage.join("trails/locals/big").exists());
}

#[test]
fn the_running_revision_cannot_be_overwritten() {
    let d = Daemon::start();
    std::os::unix::fs::symlink("locals/x", d.storage.join("trails/current.new")).unwrap();
    d.put("/steps/locals/x", EMPTY_STATE.as_bytes());
    std::fs::rename(
        d.storage.join("trails/current.new"),
        d.storage.join("trails/current"),
    )
    .unwrap();
    assert_eq!(d.put("/steps/locals/x", EMPTY_STATE.as_bytes()).status, 409);
}

// ---- metadata ----

#[test]
fn device_meta_crud_like_pantavisor() {
    let d = Daemon::start();
    assert_eq!(
        d.put("/device-meta/test-key", b"test-value-123").status,
        200
    );
    assert_eq!(d.get("/device-meta").json()["test-key"], "test-value-123");
    assert_eq!(
        d.put("/device-meta/test-key", b"updated-value-456").status,
        200
    );
    assert_eq!(
        d.get("/device-meta").json()["test-key"],
        "updated-value-456"
    );
    assert_eq!(
        d.request("DELETE", "/device-meta/test-key", b"").status,
        200
    );
    assert!(d.get("/device-meta").json().get("test-key").is_none());
    assert_eq!(
        d.request("DELETE", "/device-meta/nonexistent-key-xyz", b"")
            .sb(),
        (404, r#"{"Error":"Device meta does not exist"}"#.into())
    );
}

#[test]
fn user_meta_crud_order_and_limits() {
    let d = Daemon::start();
    assert_eq!(d.get("/user-meta").text(), "{}");
    d.put("/user-meta/a", b"1");
    d.put("/user-meta/obj", br#"{"x":[1,2]}"#);
    d.put("/user-meta/a", b"2");
    assert_eq!(d.get("/user-meta").text(), r#"{"obj":{"x":[1,2]},"a":"2"}"#);
    assert_eq!(
        d.put("/user-meta/e", b"").sb(),
        (400, r#"{"Error":"Cannot add or update user meta"}"#.into())
    );
    assert_eq!(d.put("/user-meta/big", &[b'v'; 4097]).status, 413);
    assert_eq!(d.put("/user-meta/max", &[b'v'; 4096]).status, 200);
    assert_eq!(
        d.request("DELETE", "/user-meta/none", b"").sb(),
        (404, r#"{"Error":"User meta does not exist"}"#.into())
    );
}

#[test]
fn metadata_survives_a_restart() {
    let mut d = Daemon::start();
    d.put("/user-meta/color", b"blue");
    d.put("/device-meta/site", b"lab");
    d.put("/steps/locals/keep", EMPTY_STATE.as_bytes());
    assert!(d.stop().success());
    d.spawn();
    assert_eq!(d.get("/user-meta").text(), r#"{"color":"blue"}"#);
    assert_eq!(d.get("/device-meta").json()["site"], "lab");
    assert_eq!(d.get("/steps/locals/keep").status, 200);
}

#[test]
fn device_meta_reports_tern_keys_which_are_read_only() {
    let d = Daemon::start();
    let text = d.get("/device-meta").text();
    let meta: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(meta["pantavisor.revision"], "0");
    assert_eq!(meta["pantavisor.status"], "READY");
    assert_eq!(meta["pantahub.claimed"], "0");
    assert_eq!(meta["pantahub.online"], "0");
    assert!(meta["pantavisor.arch"].as_str().unwrap().contains('/'));
    assert!(
        meta["pantavisor.version"]
            .as_str()
            .unwrap()
            .starts_with("tern-")
    );
    assert!(matches!(
        meta["pantavisor.mode"].as_str(),
        Some("local" | "remote")
    ));
    let storage = &text[text.find(r#""storage":{"#).unwrap()..];
    let order: Vec<usize> = ["\"total\"", "\"free\"", "\"reserved\"", "\"real_free\""]
        .iter()
        .map(|k| storage.find(k).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{storage}");
    assert!(meta["storage"]["total"].is_string());
    assert_eq!(d.put("/device-meta/pantavisor.revision", b"9").status, 403);
    assert_eq!(d.request("DELETE", "/device-meta/storage", b"").status, 403);
}

// ---- info ----

#[test]
fn buildinfo_config_and_config2() {
    let d = Daemon::start();
    let r = d.get("/buildinfo");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert!(
        r.text()
            .starts_with(&format!("tern {}", env!("CARGO_PKG_VERSION"))),
        "{}",
        r.text()
    );
    let config = d.get("/config").json();
    assert_eq!(config["storage.mntpoint"], d.storage.to_str().unwrap());
    assert!(config["log.level"].is_number());
    let r = d.get("/config2");
    assert!(
        r.text().starts_with(r#"[{"key":""#),
        "key order: {}",
        &r.text()[..60]
    );
    let entry = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "PV_STORAGE_MNTPOINT")
        .cloned()
        .unwrap();
    assert_eq!(entry["modified"], "args");
}

#[test]
fn unknown_paths_and_methods() {
    let d = Daemon::start();
    assert_eq!(
        d.get("/nope").sb(),
        (400, r#"{"Error":"unknown endpoint: /nope"}"#.into())
    );
    let wrong = (
        400,
        r#"{"Error":"Method not supported for this endpoint"}"#.to_string(),
    );
    assert_eq!(d.request("HEAD", "/steps", b"").status, 400);
    assert_eq!(d.request("POST", "/steps", b"").sb(), wrong);
    assert_eq!(d.request("DELETE", "/objects", b"").sb(), wrong);
    assert_eq!(
        d.get("/steps/").sb(),
        (400, r#"{"Error":"unknown endpoint: /steps/"}"#.into())
    );
}

// ---- command line and configuration ----

fn tern(args: &[&str]) -> std::process::Output {
    Command::new(tern_bin())
        .env("TERN_HUB", "off")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn version_and_help() {
    let v = tern(&["--version"]);
    assert!(v.status.success());
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("tern "));
    for args in [&["--help"][..], &["daemon", "--help"], &["ctl", "--help"]] {
        let o = tern(args);
        assert!(o.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("Usage:"),
            "{args:?}"
        );
    }
    assert_eq!(tern(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(tern(&["daemon", "--bogus"]).status.code(), Some(2));
}

#[test]
fn bad_config_line_names_file_line_and_key_and_exits_2() {
    let dir = TempDir::new("cfg");
    let conf = dir.path().join("board.conf");
    std::fs::write(
        &conf,
        "# board\nPV_UPDATER_COMMIT_DELAY=5\nPV_LOG_LEVEL=abc\n",
    )
    .unwrap();
    let o = tern(&[
        "daemon",
        "--config",
        conf.to_str().unwrap(),
        "--storage",
        dir.path().join("s").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("board.conf") && err.contains(":3") && err.contains("PV_LOG_LEVEL"),
        "{err}"
    );
    std::fs::write(&conf, "just words\n").unwrap();
    let o = tern(&[
        "daemon",
        "--config",
        conf.to_str().unwrap(),
        "--storage",
        dir.path().join("s").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
}

fn config2_entry(d: &Daemon, key: &str) -> (String, String) {
    let all = d.get("/config2").json();
    let e = all
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == key)
        .cloned()
        .unwrap();
    (
        e["value"].as_str().unwrap().to_string(),
        e["modified"].as_str().unwrap().to_string(),
    )
}

#[test]
fn config_precedence_file_then_env_then_flags() {
    let dir = TempDir::new("cfg");
    let conf = dir.path().join("pv.conf");
    std::fs::write(&conf, "log.level=2\nPV_UPDATER_COMMIT_DELAY=7\n").unwrap();
    let c = conf.to_str().unwrap().to_string();
    let d = Daemon::start_with(Opts::default().arg("--config").arg(c.clone()));
    assert_eq!(
        config2_entry(&d, "PV_LOG_LEVEL"),
        ("2".into(), "pv conf file".into())
    );
    let d = Daemon::start_with(
        Opts::default()
            .arg("--config")
            .arg(c.clone())
            .env("PV_LOG_LEVEL", "4"),
    );
    assert_eq!(
        config2_entry(&d, "PV_LOG_LEVEL"),
        ("4".into(), "env".into())
    );
    let d = Daemon::start_with(
        Opts::default()
            .arg("--config")
            .arg(c)
            .env("PV_LOG_LEVEL", "4")
            .set("PV_LOG_LEVEL=5"),
    );
    assert_eq!(
        config2_entry(&d, "PV_LOG_LEVEL"),
        ("5".into(), "args".into())
    );
    assert_eq!(
        config2_entry(&d, "PV_UPDATER_COMMIT_DELAY"),
        ("7".into(), "pv conf file".into())
    );
}

#[test]
fn sighup_rereads_the_config_file() {
    let dir = TempDir::new("cfg");
    let conf = dir.path().join("pv.conf");
    std::fs::write(&conf, "PV_UPDATER_COMMIT_DELAY=7\n").unwrap();
    let d = Daemon::start_with(Opts::default().arg("--config").arg(conf.to_str().unwrap()));
    assert_eq!(config2_entry(&d, "PV_UPDATER_COMMIT_DELAY").0, "7");
    std::fs::write(&conf, "PV_UPDATER_COMMIT_DELAY=9\n").unwrap();
    d.signal(1);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while config2_entry(&d, "PV_UPDATER_COMMIT_DELAY").0 != "9" {
        assert!(
            std::time::Instant::now() < until,
            "SIGHUP did not reload:\n{}",
            d.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn sigterm_and_sigint_exit_0_and_remove_the_socket() {
    for sig in [15, 2] {
        let mut d = Daemon::start();
        d.signal(sig);
        assert!(d.wait().success(), "signal {sig}:\n{}", d.log_text());
        assert!(!d.socket.exists());
    }
}

#[test]
fn a_second_daemon_on_a_live_socket_exits_1_and_leaves_the_first_alone() {
    let d = Daemon::start();
    let o = Command::new(tern_bin())
        .env("TERN_HUB", "off")
        .args(["daemon", "--storage"])
        .arg(d.dir.path().join("other"))
        .arg("--rundir")
        .arg(&d.rundir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(d.get("/steps").status, 200);
}

#[test]
fn factory_folder_seeds_revision_0() {
    let dir = TempDir::new("factory");
    let f = dir.path().join("factory");
    std::fs::create_dir_all(f.join("objects")).unwrap();
    std::fs::write(f.join("objects").join(SMALL_SHA), SMALL).unwrap();
    let state = format!(
        r##"{{"#spec":"pantavisor-service-system@1","app/lxc.container.conf":"{SMALL_SHA}"}}"##
    );
    std::fs::write(f.join("json"), &state).unwrap();
    let d = Daemon::start_with(Opts::default().arg("--factory").arg(f.to_str().unwrap()));
    assert_eq!(d.get("/steps/0").text(), state);
    assert_eq!(d.get(&format!("/objects/{SMALL_SHA}")).body, SMALL);
}

#[test]
fn factory_object_that_does_not_match_its_name_stops_the_start() {
    let dir = TempDir::new("factory");
    let f = dir.path().join("factory");
    std::fs::create_dir_all(f.join("objects")).unwrap();
    std::fs::write(f.join("objects").join("a".repeat(64)), b"not that").unwrap();
    std::fs::write(f.join("json"), EMPTY_STATE).unwrap();
    let o = Command::new(tern_bin())
        .env("TERN_HUB", "off")
        .arg("daemon")
        .arg("--storage")
        .arg(dir.path().join("s"))
        .arg("--rundir")
        .arg(dir.path().join("r"))
        .arg("--factory")
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("does not match"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

// ---- crash safety ----

#[test]
fn kill_9_mid_upload_leaves_no_partial_object() {
    let mut d = Daemon::start();
    let data = vec![9u8; 10 * 1024 * 1024];
    let sha = sha256_hex(&data);
    let mut s = d.connect();
    write!(
        s,
        "PUT /objects/{sha} HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        data.len()
    )
    .unwrap();
    s.write_all(&data[..3 * 1024 * 1024]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    d.kill9();
    d.spawn();
    assert_eq!(d.get("/objects").text(), "[]");
    assert!(
        objects_dir_entries(&d).is_empty(),
        "{:?}",
        objects_dir_entries(&d)
    );
    assert_eq!(d.put(&format!("/objects/{sha}"), &data).status, 200);
}

#[test]
fn kill_9_right_after_acknowledged_writes_loses_nothing() {
    let mut d = Daemon::start();
    assert_eq!(d.put("/user-meta/k", b"v").status, 200);
    assert_eq!(
        d.put("/steps/locals/acked", EMPTY_STATE.as_bytes()).status,
        200
    );
    assert_eq!(d.put(&format!("/objects/{SMALL_SHA}"), SMALL).status, 200);
    d.kill9();
    d.spawn();
    assert_eq!(d.get("/user-meta").text(), r#"{"k":"v"}"#);
    assert_eq!(d.get("/steps/locals/acked").status, 200);
    assert_eq!(d.get(&format!("/objects/{SMALL_SHA}")).body, SMALL);
}

#[test]
fn start_removes_crash_leftovers_and_repairs_current() {
    let mut d = Daemon::start();
    d.put("/steps/locals/x", EMPTY_STATE.as_bytes());
    assert!(d.stop().success());
    let plant = [
        "objects/.tmp-abc-1-2",
        "trails/.tmp-locals-1-3",
        "trails/locals/.tmp-y-1-4",
        "cache/.tmp-usrmeta.json-1-5",
        "trails/locals/x/.pv/.tmp-progress-1-6",
    ];
    for p in plant {
        std::fs::write(d.storage.join(p), b"partial").unwrap();
    }
    std::fs::remove_file(d.storage.join("trails/current")).unwrap();
    std::os::unix::fs::symlink("locals/gone", d.storage.join("trails/current")).unwrap();
    d.spawn();
    for p in plant {
        assert!(!d.storage.join(p).exists(), "{p} survived the start");
    }
    assert_eq!(
        std::fs::read_link(d.storage.join("trails/current"))
            .unwrap()
            .to_str(),
        Some("0")
    );
    assert_eq!(d.get("/steps/current").text(), EMPTY_STATE);
}
