//! The balena/resin-style v1 API on its TCP listener, driven with the curl examples of the
//! resin supervisor's documentation run verbatim (`$RESIN_SUPERVISOR_ADDRESS` and
//! `$RESIN_SUPERVISOR_API_KEY` set, `<appId>` filled in), and from inside a container with the
//! variables Tern gives it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::device::Device;
use common::rootfs::Spec;
use common::{Daemon, Opts, wait_for};
use serde_json::{Value, json};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `curl -s -w '\n%{http_code}' ARGS…` (or a whole command line through `sh -c`, with the
/// documented variables set): `(status, body)`.
fn curl_sh(cmd: &str, port: u16, key: &str) -> (u16, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{cmd} -s -w '\\n%{{http_code}}'"))
        .env(
            "RESIN_SUPERVISOR_ADDRESS",
            format!("http://127.0.0.1:{port}"),
        )
        .env("RESIN_SUPERVISOR_API_KEY", key)
        .output()
        .unwrap();
    split(&out.stdout)
}

fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    split(&out.stdout)
}

fn split(stdout: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn key_of(storage: &std::path::Path) -> String {
    fs::read_to_string(storage.join("cache/v1-api-key")).unwrap()
}

/// A device running one app container. Names differ per test: tests run side by side and a
/// container's cgroup is named after it.
fn boot(app: &str) -> (Device, u16) {
    let port = common::free_port();
    let addr = format!("TERN_V1_ADDRESS=127.0.0.1:{port}");
    let dev = Device::boot(
        &[Spec::new(
            app,
            "if [ -f /data-mark ]; then echo had-mark; else echo no-mark; fi; touch /data-mark; \
             echo addr=$RESIN_SUPERVISOR_ADDRESS keylen=${#RESIN_SUPERVISOR_API_KEY}; \
             wget -qO- $RESIN_SUPERVISOR_ADDRESS/v1/device?apikey=$RESIN_SUPERVISOR_API_KEY; \
             echo; exec sleep 1000",
            json!({"restart_policy": "container",
                   "storage": {"lxc-overlay": {"persistence": "permanent"}}}),
        )],
        &[&addr, "TERN_STOP_GRACE=1"],
    );
    dev.wait_status(app, "STARTED", secs(20));
    (dev, port)
}

#[test]
fn the_documented_curl_examples_work_verbatim() {
    require_containers!("v1 examples");
    let (dev, port) = boot("v1app");
    let ex = |cmd: &str| curl_sh(cmd, port, &key_of(&dev.d.storage));
    assert_eq!(
        ex(
            r#"curl -X GET --header "Content-Type:application/json" "$RESIN_SUPERVISOR_ADDRESS/ping?apikey=$RESIN_SUPERVISOR_API_KEY""#
        ),
        (200, "OK".into())
    );
    assert_eq!(
        ex(r#"curl "$RESIN_SUPERVISOR_ADDRESS/v1/healthy""#),
        (200, "OK".into())
    );
    assert_eq!(
        ex(
            r#"curl -X POST --header "Content-Type:application/json" "$RESIN_SUPERVISOR_ADDRESS/v1/blink?apikey=$RESIN_SUPERVISOR_API_KEY""#
        ),
        (200, "OK".into())
    );
    assert_eq!(
        ex(
            r#"curl -X POST --header "Content-Type:application/json" --data '{"force": true}' "$RESIN_SUPERVISOR_ADDRESS/v1/update?apikey=$RESIN_SUPERVISOR_API_KEY""#
        ),
        (202, "Accepted".into())
    );
    for method in ["POST", "DELETE"] {
        let cmd = format!(
            r#"curl -X {method} --header "Content-Type:application/json" "$RESIN_SUPERVISOR_ADDRESS/v1/tcp-ping?apikey=$RESIN_SUPERVISOR_API_KEY""#
        );
        assert_eq!(ex(&cmd), (204, String::new()));
    }
    assert_eq!(
        fs::read_to_string(dev.d.storage.join("cache/tcp-ping")).unwrap(),
        "0"
    );
    let (code, body) = ex(
        r#"curl -X GET --header "Content-Type:application/json" "$RESIN_SUPERVISOR_ADDRESS/v1/device?apikey=$RESIN_SUPERVISOR_API_KEY""#,
    );
    assert_eq!(code, 200);
    let d: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(d["api_port"], port);
    assert_eq!(d["commit"], "0");
    assert_eq!(d["status"], "Idle");
    assert_eq!(d["update_pending"], false);
    assert!(
        d["supervisor_version"]
            .as_str()
            .unwrap()
            .starts_with("tern-")
    );

    let (code, body) = ex(
        r#"curl -X GET --header "Content-Type:application/json" "$RESIN_SUPERVISOR_ADDRESS/v1/apps/1?apikey=$RESIN_SUPERVISOR_API_KEY""#,
    );
    assert_eq!(code, 200, "{body}");
    let a: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(a["appId"], "1");
    assert_eq!(a["commit"], "0");
    assert_eq!(a["containerId"].as_str().unwrap().len(), 64);
    assert_eq!(a["imageId"].as_str().unwrap().len(), 64);
    assert!(a["env"]["RESIN_SUPERVISOR_ADDRESS"].is_string(), "{a}");
    assert!(
        a["env"].get("RESIN_SUPERVISOR_API_KEY").is_none(),
        "keys stay secret: {a}"
    );

    let (code, body) = ex(
        r#"curl -X POST --header "Content-Type:application/json" "$RESIN_SUPERVISOR_ADDRESS/v1/apps/1/stop?apikey=$RESIN_SUPERVISOR_API_KEY""#,
    );
    assert_eq!(
        (code, body),
        (200, json!({"containerId": a["containerId"]}).to_string())
    );
    dev.wait_status("v1app", "STOPPED", secs(10));
    let (code, _) = ex(
        r#"curl -X POST --header "Content-Type:application/json" "$RESIN_SUPERVISOR_ADDRESS/v1/apps/v1app/start?apikey=$RESIN_SUPERVISOR_API_KEY""#,
    );
    assert_eq!(code, 200);
    dev.wait_status("v1app", "STARTED", secs(10));
    assert_eq!(
        ex(
            r#"curl -X POST --header "Content-Type:application/json" --data '{"appId": 1}' "$RESIN_SUPERVISOR_ADDRESS/v1/restart?apikey=$RESIN_SUPERVISOR_API_KEY""#
        ),
        (200, "OK".into())
    );
    // Purge: the permanent overlay is wiped, the app comes back without its mark.
    dev.wait_console("v1app", "had-mark", secs(20));
    assert_eq!(
        ex(
            r#"curl -X POST --header "Content-Type:application/json" --data '{"appId": 1}' "$RESIN_SUPERVISOR_ADDRESS/v1/purge?apikey=$RESIN_SUPERVISOR_API_KEY""#
        ),
        (200, r#"{"Data":"OK","Error":""}"#.into())
    );
    assert!(
        wait_for(secs(20), || {
            let c = dev.console("v1app");
            c.rfind("no-mark").unwrap_or(0) > c.rfind("had-mark").unwrap_or(0)
        }),
        "{}",
        dev.console("v1app")
    );
    // From inside the container, with the variables Tern gave it.
    let console = dev.console("v1app");
    assert!(
        console.contains(&format!("addr=http://127.0.0.1:{port} keylen=64")),
        "{console}"
    );
    assert!(console.contains(r#""api_port":"#), "{console}");

    let old = key_of(&dev.d.storage);
    let (code, new) = ex(
        r#"curl -X POST --header "Content-Type:application/json" "$RESIN_SUPERVISOR_ADDRESS/v1/regenerate-api-key?apikey=$RESIN_SUPERVISOR_API_KEY""#,
    );
    assert_eq!(code, 200);
    assert_eq!(new.len(), 64);
    assert_ne!(new, old);
    assert_eq!(key_of(&dev.d.storage), new);
    let url = format!("http://127.0.0.1:{port}/v1/device?apikey={old}");
    assert_eq!(curl(&[&url]).0, 401, "the old key stops working at once");

    // The reboot answers first, then the device goes down (exit 3 on a development host).
    let mut dev = dev;
    assert_eq!(
        curl_sh(
            r#"curl -X POST --header "Content-Type:application/json" "$RESIN_SUPERVISOR_ADDRESS/v1/reboot?apikey=$RESIN_SUPERVISOR_API_KEY""#,
            port,
            &new
        ),
        (202, r#"{"Data":"OK","Error":null}"#.into())
    );
    assert_eq!(dev.d.wait().code(), Some(3));
}

#[test]
fn keys_errors_and_update_locks() {
    require_containers!("v1 keys and locks");
    let (dev, port) = boot("v1keys");
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let key = key_of(&dev.d.storage);
    // No key, a wrong key: 401 `Unauthorized`; /ping and /v1/healthy need none.
    assert_eq!(curl(&[&url("/v1/device")]), (401, "Unauthorized".into()));
    assert_eq!(
        curl(&[&url("/v1/device?apikey=nope")]),
        (401, "Unauthorized".into())
    );
    assert_eq!(curl(&[&url("/ping")]), (200, "OK".into()));
    for scheme in ["Bearer", "ApiKey", "bearer"] {
        let h = format!("Authorization: {scheme} {key}");
        assert_eq!(curl(&["-H", &h, &url("/v1/device")]).0, 200, "{scheme}");
    }
    let basic = format!("Authorization: Basic {key}");
    assert_eq!(curl(&["-H", &basic, &url("/v1/device")]).0, 401);
    // Unknown paths: 401 without a key, 404 with one.
    assert_eq!(curl(&[&url("/nope")]).0, 401);
    assert_eq!(
        curl(&[&url(&format!("/nope?apikey={key}"))]),
        (404, "Cannot GET /nope".into())
    );
    // Bad bodies and unknown apps, with balena's codes.
    let post = |path: &str, body: &str| {
        let target = url(&format!("{path}?apikey={key}"));
        curl(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data",
            body,
            &target,
        ])
    };
    assert_eq!(post("/v1/restart", "{}"), (400, "Missing app id".into()));
    assert_eq!(
        post("/v1/purge", "{}"),
        (400, "Invalid or missing appId".into())
    );
    assert_eq!(
        post("/v1/restart", r#"{"appId": 99}"#),
        (
            503,
            r#"{"message":"Application with ID 99 is not in the current state","status":"failed"}"#
                .into()
        )
    );
    assert_eq!(post("/v1/restart", "{not json").0, 503);
    // An update lock held inside the container holds off a restart until forced.
    let lock = dev.d.rundir.join("locks/v1keys/updates.lock");
    fs::write(&lock, b"").unwrap();
    assert_eq!(post("/v1/restart", r#"{"appId": "v1keys"}"#).0, 423);
    assert!(lock.exists(), "a user lock is never removed without force");
    assert_eq!(post("/v1/reboot", "{}").0, 423);
    assert_eq!(
        post("/v1/restart", r#"{"appId": "v1keys", "force": true}"#),
        (200, "OK".into())
    );
    assert!(!lock.exists());
    dev.wait_status("v1keys", "STARTED", secs(10));

    // An update waits while the lock is held, and goes once it is released.
    fs::write(&lock, b"").unwrap();
    dev.install(
        "v2",
        &[Spec::new(
            "v1keys",
            "echo second-revision; exec sleep 1000",
            json!({"restart_policy": "container"}),
        )],
    );
    assert_eq!(dev.command("LOCAL_RUN", "locals/v2").0, 200);
    std::thread::sleep(secs(3));
    assert_eq!(dev.progress("locals/v2").0, "NEW");
    assert_eq!(dev.current(), "0");
    assert!(dev.d.log_text().contains("v1keys holds its update lock"));
    fs::remove_file(&lock).unwrap();
    dev.wait_progress("locals/v2", "TESTING", secs(20));

    // /programs is served here too, behind the key.
    assert_eq!(curl(&[&url("/programs")]).0, 401);
    let (code, body) = curl(&[&url(&format!(
        "/programs?apikey={key}&%7B%22op%22%3A%22component%22%2C%22arg%22%3A%22v1keys%22%7D"
    ))]);
    assert_eq!(code, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list[0]["tag"], "v1keys");
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Every keyed endpoint refuses a missing or wrong key.
    for (method, path) in [
        ("POST", "/v1/blink"),
        ("POST", "/v1/update"),
        ("POST", "/v1/reboot"),
        ("POST", "/v1/shutdown"),
        ("POST", "/v1/purge"),
        ("POST", "/v1/restart"),
        ("POST", "/v1/tcp-ping"),
        ("DELETE", "/v1/tcp-ping"),
        ("POST", "/v1/regenerate-api-key"),
        ("GET", "/v1/device"),
        ("POST", "/v1/apps/1/stop"),
        ("POST", "/v1/apps/1/start"),
        ("GET", "/v1/apps/1"),
        ("GET", "/programs"),
    ] {
        for q in ["", "?apikey=wrong"] {
            let r = curl(&["-X", method, &url(&format!("{path}{q}"))]);
            assert_eq!(r, (401, "Unauthorized".into()), "{method} {path}{q}");
        }
    }
}

#[test]
fn healthy_turns_500_when_a_heuristic_fails_and_back() {
    let port = common::free_port();
    let dir = common::TempDir::new("v1health");
    let conf = dir.path().join("tern.conf");
    fs::write(&conf, "").unwrap();
    let d = Daemon::start_with(
        Opts::default()
            .arg("--config")
            .arg(conf.to_str().unwrap())
            .set(&format!("TERN_V1_ADDRESS=127.0.0.1:{port}")),
    );
    let url = format!("http://127.0.0.1:{port}/v1/healthy");
    assert_eq!(curl(&[&url]), (200, "OK".into()));
    fs::write(&conf, "TERN_TEST_UNHEALTHY=simulated stalled reports\n").unwrap();
    d.signal(1);
    assert!(wait_for(secs(5), || curl(&[&url]) == (500, "Unhealthy".into())));
    fs::write(&conf, "").unwrap();
    d.signal(1);
    assert!(wait_for(secs(5), || curl(&[&url]) == (200, "OK".into())));
    assert!(d.log_text().contains("simulated stalled reports"));
}
