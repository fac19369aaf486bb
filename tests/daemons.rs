//! The board's helper daemons: `GET /daemons`, `PUT /daemons/{name}`, respawn, and the ssh
//! daemon that ENABLE_SSH / DISABLE_SSH drive. Plain processes: no root needed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Daemon, Opts, wait_for};
use serde_json::{Value, json};

fn daemons(d: &Daemon) -> Vec<Value> {
    let r = d.get("/daemons");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().as_array().cloned().unwrap()
}

fn pid_of(d: &Daemon, name: &str) -> i64 {
    daemons(d)
        .iter()
        .find(|x| x["name"] == name)
        .map(|x| x["pid"].as_i64().unwrap())
        .unwrap()
}

fn alive(pid: i64) -> bool {
    pid > 0
        && std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn start() -> Daemon {
    Daemon::start_with(
        Opts::default()
            .set("TERN_DAEMONS=hwrngd:exec sleep 44011;logger:echo started >&2 && exec sleep 44012")
            .set("TERN_SSHD_CMD=exec sleep 44013")
            .set("PV_DEBUG_SSH=0"),
    )
}

#[test]
fn daemons_are_listed_started_and_stopped_like_pantavisor() {
    let mut d = start();
    assert!(wait_for(Duration::from_secs(5), || alive(pid_of(
        &d, "hwrngd"
    ))));
    let list = daemons(&d);
    let names: Vec<&str> = list.iter().map(|x| x["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["sshd", "hwrngd", "logger"]);
    // Keys and their order, as Pantavisor prints them; sshd is off at boot (PV_DEBUG_SSH=0).
    let text = d.get("/daemons").text();
    assert!(
        text.starts_with(r#"[{"name":"sshd","pid":0,"respawn":false},{"name":"hwrngd","pid":"#),
        "{text}"
    );
    // Output lands in its log.
    assert!(wait_for(Duration::from_secs(5), || {
        std::fs::read_to_string(d.storage.join("logs/daemons/logger.log"))
            .unwrap_or_default()
            .contains("started")
    }));

    let pid = pid_of(&d, "hwrngd");
    let put = |action: &str| {
        d.put(
            "/daemons/hwrngd",
            json!({"action": action}).to_string().as_bytes(),
        )
    };
    assert_eq!(put("stop").status, 200);
    assert!(wait_for(Duration::from_secs(5), || !alive(pid)));
    // The listing follows once the daemon has reaped it (a moment later under qemu).
    let entry = || {
        daemons(&d)
            .into_iter()
            .find(|x| x["name"] == "hwrngd")
            .unwrap()
    };
    let stopped = json!({"name":"hwrngd","pid":-1,"respawn":false});
    assert!(
        wait_for(Duration::from_secs(5), || entry() == stopped),
        "{}",
        entry()
    );
    assert_eq!(put("start").status, 200);
    assert!(wait_for(Duration::from_secs(5), || alive(pid_of(
        &d, "hwrngd"
    ))));
    // Unknown or missing actions are accepted and do nothing; unknown daemons are 404.
    assert_eq!(put("jump").status, 200);
    assert_eq!(d.put("/daemons/hwrngd", b"").status, 200);
    assert_eq!(
        d.put("/daemons/nope", br#"{"action":"start"}"#).sb(),
        (404, r#"{"Error":"Daemon not found"}"#.into())
    );

    // A daemon that dies is started again.
    let pid = pid_of(&d, "hwrngd");
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert!(wait_for(Duration::from_secs(5), || {
        let p = pid_of(&d, "hwrngd");
        p != pid && alive(p)
    }));

    // ENABLE_SSH / DISABLE_SSH drive sshd.
    let cmd = |op: &str| {
        d.request(
            "POST",
            "/commands",
            json!({"op": op, "payload": ""}).to_string().as_bytes(),
        )
    };
    assert_eq!(cmd("ENABLE_SSH").status, 200);
    assert!(wait_for(Duration::from_secs(5), || alive(pid_of(
        &d, "sshd"
    ))));
    let ssh = pid_of(&d, "sshd");
    assert_eq!(cmd("DISABLE_SSH").status, 200);
    assert!(wait_for(Duration::from_secs(5), || !alive(ssh)));
    assert_eq!(pid_of(&d, "sshd"), -1);

    // Nothing outlives the daemon.
    let left: Vec<i64> = daemons(&d)
        .iter()
        .map(|x| x["pid"].as_i64().unwrap())
        .filter(|p| *p > 0)
        .collect();
    assert!(d.stop().success());
    assert!(wait_for(Duration::from_secs(5), || left
        .iter()
        .all(|p| !alive(*p))));
}

#[test]
fn programs_selects_components_with_pies_selectors() {
    let d = start();
    assert!(wait_for(Duration::from_secs(5), || alive(pid_of(
        &d, "hwrngd"
    )) && alive(pid_of(
        &d, "logger"
    ))));
    let list = |q: &str| {
        let r = d.get(&format!("/programs{q}"));
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        r.json().as_array().cloned().unwrap()
    };
    let tags = |v: &[Value]| -> Vec<String> {
        v.iter()
            .map(|x| x["tag"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(tags(&list("")), ["sshd", "hwrngd", "logger"]);
    let running = list("?%7B%22op%22%3A%22status%22%2C%22arg%22%3A%22running%22%7D");
    assert_eq!(tags(&running), ["hwrngd", "logger"]);
    let first = &running[0];
    assert_eq!(first["type"], "component");
    assert_eq!(first["mode"], "respawn");
    assert_eq!(first["active"], true);
    assert!(first["pid"].as_i64().unwrap() > 0);
    assert_eq!(first["argv"], json!(["/bin/sh", "-c", "exec sleep 44011"]));
    // Raw JSON in the query works too; nothing matched is an empty array.
    assert!(list(r#"?{"op":"component","arg":"nope"}"#).is_empty());
    assert!(list("?false").is_empty());
    let r = d.get(r#"/programs?{"op":"bogus"}"#);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("bogus"), "{}", r.text());

    // DELETE stops, PUT starts, one result per match.
    let r = d.request("DELETE", "/programs/hwrngd", b"");
    assert_eq!(r.text(), r#"[{"status":"OK","tag":"hwrngd"}]"#);
    assert!(wait_for(Duration::from_secs(5), || pid_of(&d, "hwrngd") == -1));
    assert_eq!(list("/hwrngd")[0]["active"], false);
    let r = d.request("PUT", "/programs", br#"{"op":"component","arg":"hwrngd"}"#);
    assert_eq!(r.text(), r#"[{"status":"OK","tag":"hwrngd"}]"#);
    assert!(wait_for(Duration::from_secs(5), || alive(pid_of(
        &d, "hwrngd"
    ))));
    // POST /programs/restart: a new process.
    let before = pid_of(&d, "logger");
    let r = d.request(
        "POST",
        "/programs/restart",
        br#"{"op":"component","arg":"logger"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(wait_for(Duration::from_secs(5), || {
        let p = pid_of(&d, "logger");
        p != before && alive(p)
    }));

    // Killed outright, Tern takes its daemons with it: the next start would run new copies.
    let left = [pid_of(&d, "hwrngd"), pid_of(&d, "logger")];
    let mut d = d;
    d.kill9();
    assert!(
        wait_for(Duration::from_secs(5), || left.iter().all(|p| !alive(*p))),
        "{left:?} outlived a kill -9 of tern"
    );
}
