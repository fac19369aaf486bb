//! The command line and the configuration, end to end through the real binary: `--version`,
//! `--help` and `daemon --help` (exit 0), usage errors (exit 2), configuration errors (exit 2,
//! naming file, line and key), precedence file < environment < `--set` as `GET /config2`
//! shows it (value and `modified` level), legacy aliases in the file, signals (SIGTERM and
//! SIGINT exit 0 and remove the socket; SIGHUP re-reads the file without a restart), a second
//! daemon on a live run dir (exit 1, first one undisturbed), and `--factory` seeding revision 0
//! (a corrupt factory object stops the start with exit 1).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SMALL: &[u8] = b"hello pvctrl object test\n";
const SMALL_SHA: &str = "ff392d69694b5d126342a1631f140b64881e726f9fa6714a3665a8df3b030976";

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ps(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Run `tern daemon` on fresh storage and run dirs under `dir` with extra args; for runs that
/// are expected to fail at start.
fn daemon_run(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let storage = dir.join("storage");
    let rundir = dir.join("run");
    let mut args = vec!["daemon", "--storage", ps(&storage), "--rundir", ps(&rundir)];
    args.extend_from_slice(extra);
    run_tern(&args, env)
}

// ---- plain command line ----

#[test]
fn version_prints_tern_and_its_version_and_exits_0() {
    for flag in ["--version", "-V"] {
        let o = run_tern(&[flag], &[]);
        assert_eq!(o.status.code(), Some(0), "{flag}");
        let out = stdout(&o);
        assert!(
            out.starts_with(&format!("tern {}", env!("CARGO_PKG_VERSION"))),
            "{flag}: {out}"
        );
        assert!(out.ends_with('\n') && out.lines().count() == 1, "{out:?}");
        assert_eq!(stderr(&o), "", "{flag}");
    }
}

#[test]
fn help_prints_usage_with_the_commands_and_exits_0() {
    for flag in ["--help", "-h"] {
        let o = run_tern(&[flag], &[]);
        assert_eq!(o.status.code(), Some(0), "{flag}");
        let out = stdout(&o);
        assert!(out.contains("Usage: tern"), "{out}");
        assert!(out.contains("daemon"), "{out}");
        assert!(out.contains("--version"), "{out}");
        assert_eq!(stderr(&o), "");
    }
}

#[test]
fn daemon_help_lists_its_options_and_exits_0() {
    let o = run_tern(&["daemon", "--help"], &[]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    for opt in ["--storage", "--rundir", "--config", "--set", "--factory"] {
        assert!(out.contains(opt), "{opt} missing from:\n{out}");
    }
    assert!(out.contains("pv-ctrl"), "{out}");
    assert_eq!(stderr(&o), "");
}

#[test]
fn unknown_command_or_flag_exits_2_and_says_why() {
    for (args, says) in [
        (&["frobnicate"][..], "frobnicate"),
        (&[][..], "missing command"),
        (&["daemon", "--bogus"][..], "--bogus"),
        (&["daemon", "--storage"][..], "--storage"),
        (&["daemon", "--set", "novalue"][..], "novalue"),
    ] {
        let o = run_tern(args, &[]);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
        assert_eq!(stdout(&o), "", "{args:?}");
    }
}

// ---- configuration errors ----

#[test]
fn config_file_with_a_bad_value_exits_2_naming_file_line_and_key() {
    let dir = TempDir::new("cfg-bad");
    let conf = dir.path().join("board.conf");
    std::fs::write(
        &conf,
        "# board config\nPV_UPDATER_COMMIT_DELAY=5\nPV_LOG_LEVEL=abc\nPV_POLICY=x\n",
    )
    .unwrap();
    let o = daemon_run(dir.path(), &["--config", ps(&conf)], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(ps(&conf)), "names the file: {err}");
    assert!(err.contains(":3"), "names line 3: {err}");
    assert!(err.contains("PV_LOG_LEVEL"), "names the key: {err}");
    assert!(err.contains("abc"), "shows the bad value: {err}");
    // Nothing was started: no socket, no storage.
    assert!(!dir.path().join("run/pv-ctrl").exists());
    assert!(!dir.path().join("storage").exists());
}

#[test]
fn config_line_without_equals_exits_2_naming_file_and_line() {
    let dir = TempDir::new("cfg-noeq");
    let conf = dir.path().join("board.conf");
    std::fs::write(&conf, "PV_LOG_LEVEL=2\n\njust some words\n").unwrap();
    let o = daemon_run(dir.path(), &["--config", ps(&conf)], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(ps(&conf)) && err.contains(":3"), "{err}");
    assert!(!dir.path().join("run/pv-ctrl").exists());
}

#[test]
fn missing_config_file_exits_2() {
    let dir = TempDir::new("cfg-missing");
    let conf = dir.path().join("nope.conf");
    let o = daemon_run(dir.path(), &["--config", ps(&conf)], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("nope.conf"), "{}", stderr(&o));
}

#[test]
fn bad_set_or_environment_value_exits_2_naming_the_key() {
    let dir = TempDir::new("cfg-set");
    for (extra, env, says) in [
        (&["--set", "PV_LOG_LEVEL=9"][..], &[][..], "PV_LOG_LEVEL"),
        (&["--set", "NO_SUCH_KEY=1"][..], &[][..], "NO_SUCH_KEY"),
        (&[][..], &[("PV_LOG_LEVEL", "abc")][..], "PV_LOG_LEVEL"),
    ] {
        let o = daemon_run(dir.path(), extra, env);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{extra:?} {env:?}: {}",
            stderr(&o)
        );
        assert!(
            stderr(&o).contains(says),
            "{extra:?} {env:?}: {}",
            stderr(&o)
        );
    }
}

// ---- precedence ----

fn conf_file(dir: &TempDir, text: &str) -> PathBuf {
    let p = dir.path().join("pantavisor.config");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn env_overrides_the_config_file_and_set_overrides_both() {
    let dir = TempDir::new("cfg-prec");
    let conf = conf_file(&dir, "PV_LOG_LEVEL=3\nPV_UPDATER_COMMIT_DELAY=7\n");
    let file_only = Opts::default().arg("--config").arg(ps(&conf));
    let d = Daemon::start_with(file_only.clone());
    assert_eq!(
        config2_entry(&d, "PV_LOG_LEVEL"),
        ("3".into(), "pv conf file".into())
    );
    drop(d);
    let with_env = file_only.env("PV_LOG_LEVEL", "4");
    let d = Daemon::start_with(with_env.clone());
    assert_eq!(
        config2_entry(&d, "PV_LOG_LEVEL"),
        ("4".into(), "env".into())
    );
    drop(d);
    let d = Daemon::start_with(with_env.set("PV_LOG_LEVEL=5"));
    assert_eq!(
        config2_entry(&d, "PV_LOG_LEVEL"),
        ("5".into(), "args".into())
    );
    assert_eq!(d.get("/config").json()["log.level"], 5);
    // Keys only the file sets keep the file's value and level.
    assert_eq!(
        config2_entry(&d, "PV_UPDATER_COMMIT_DELAY"),
        ("7".into(), "pv conf file".into())
    );
    assert_eq!(config2_entry(&d, "PV_POLICY").1, "default");
}

#[test]
fn legacy_alias_in_the_config_file_sets_the_canonical_key() {
    let dir = TempDir::new("cfg-alias");
    let conf = conf_file(
        &dir,
        "# legacy names\nlog.level=2\nupdater.commit.delay = 9\n",
    );
    let d = Daemon::start_with(Opts::default().arg("--config").arg(ps(&conf)));
    assert_eq!(
        config2_entry(&d, "PV_LOG_LEVEL"),
        ("2".into(), "pv conf file".into())
    );
    assert_eq!(d.get("/config").json()["log.level"], 2);
    assert_eq!(
        config2_entry(&d, "PV_UPDATER_COMMIT_DELAY"),
        ("9".into(), "pv conf file".into())
    );
}

// ---- signals ----

#[test]
fn sigterm_exits_0_and_removes_the_socket() {
    let mut d = Daemon::start();
    assert!(d.socket.exists());
    let st = d.stop();
    assert_eq!(st.code(), Some(0), "{}", d.log_text());
    assert!(!d.socket.exists(), "socket file left behind");
}

#[test]
fn sigint_exits_0_and_removes_the_socket() {
    let mut d = Daemon::start();
    d.signal(2);
    let st = d.wait();
    assert_eq!(st.code(), Some(0), "{}", d.log_text());
    assert!(!d.socket.exists(), "socket file left behind");
}

#[test]
fn sighup_after_editing_the_config_file_applies_it_without_restart() {
    let dir = TempDir::new("cfg-hup");
    let conf = conf_file(&dir, "PV_LOG_LEVEL=2\n");
    let d = Daemon::start_with(
        Opts::default()
            .arg("--config")
            .arg(ps(&conf))
            .set("PV_POLICY=fromflag"),
    );
    let pid = d.pid();
    // A keep-alive connection opened before the reload keeps working after it.
    let mut s = d.connect();
    let mut carry = Vec::new();
    send_request(&mut s, "GET", "/steps", b"");
    assert_eq!(read_reply_buffered(&mut s, &mut carry).status, 200);
    assert_eq!(
        config2_entry(&d, "PV_LOG_LEVEL"),
        ("2".into(), "pv conf file".into())
    );

    std::fs::write(&conf, "PV_LOG_LEVEL=5\nPV_UPDATER_COMMIT_DELAY=11\n").unwrap();
    d.signal(1);
    assert!(
        wait_for(Duration::from_secs(5), || config2_entry(&d, "PV_LOG_LEVEL")
            .0
            == "5"),
        "SIGHUP did not reload:\n{}",
        d.log_text()
    );
    assert_eq!(
        config2_entry(&d, "PV_LOG_LEVEL"),
        ("5".into(), "pv conf file".into())
    );
    assert_eq!(config2_entry(&d, "PV_UPDATER_COMMIT_DELAY").0, "11");
    assert_eq!(
        config2_entry(&d, "PV_POLICY"),
        ("fromflag".into(), "args".into())
    );
    assert_eq!(d.pid(), pid);
    send_request(&mut s, "GET", "/user-meta", b"");
    assert_eq!(
        read_reply_buffered(&mut s, &mut carry).sb(),
        (200, "{}".to_string())
    );
    assert_eq!(d.get("/steps").status, 200);
}

#[test]
fn sighup_with_a_broken_config_file_keeps_the_running_config() {
    let dir = TempDir::new("cfg-hup-bad");
    let conf = conf_file(&dir, "PV_LOG_LEVEL=2\n");
    let mut d = Daemon::start_with(Opts::default().arg("--config").arg(ps(&conf)));
    std::fs::write(&conf, "PV_LOG_LEVEL=abc\n").unwrap();
    d.signal(1);
    assert!(
        wait_for(Duration::from_secs(5), || d
            .log_text()
            .contains("reload failed")),
        "no reload error logged:\n{}",
        d.log_text()
    );
    assert_eq!(
        config2_entry(&d, "PV_LOG_LEVEL"),
        ("2".into(), "pv conf file".into())
    );
    assert_eq!(d.get("/steps").status, 200);
    assert_eq!(d.stop().code(), Some(0));
}

#[test]
fn an_unknown_secureboot_mode_stops_the_start_and_is_refused_on_sighup() {
    // Never a silent fall back to a weaker mode.
    let dir = TempDir::new("cfg-sb");
    let conf = dir.path().join("bad.conf");
    std::fs::write(&conf, "secureboot.mode=paranoid\n").unwrap();
    for (extra, env) in [
        (&[][..], &[("PV_SECUREBOOT_MODE", "paranoid")][..]),
        (&["--set", "PV_SECUREBOOT_MODE=Strict!"][..], &[][..]),
        (&["--config", ps(&conf)][..], &[][..]),
    ] {
        let o = daemon_run(dir.path(), extra, env);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{extra:?} {env:?}: {}",
            stderr(&o)
        );
        let err = stderr(&o);
        assert!(
            err.contains("PV_SECUREBOOT_MODE") || err.contains("secureboot.mode"),
            "names the key: {err}"
        );
        assert!(!dir.path().join("run/pv-ctrl").exists());
    }

    let good = conf_file(&dir, "PV_SECUREBOOT_MODE=strict\n");
    let mut d = Daemon::start_with(Opts::default().arg("--config").arg(ps(&good)));
    assert_eq!(config2_entry(&d, "PV_SECUREBOOT_MODE").0, "strict");
    std::fs::write(&good, "PV_SECUREBOOT_MODE=paranoid\n").unwrap();
    d.signal(1);
    assert!(
        wait_for(Duration::from_secs(5), || d
            .log_text()
            .contains("reload failed")),
        "no reload error logged:\n{}",
        d.log_text()
    );
    let log = d.log_text();
    let line = log.lines().find(|l| l.contains("reload failed")).unwrap();
    assert!(line.contains("PV_SECUREBOOT_MODE"), "{line}");
    assert_eq!(config2_entry(&d, "PV_SECUREBOOT_MODE").0, "strict");
    assert_eq!(d.stop().code(), Some(0));
}

/// A build without the verifier defaults to `disabled` and refuses a mode that checks.
#[cfg(not(feature = "sig"))]
#[test]
fn a_build_without_the_verifier_refuses_a_checking_mode() {
    let dir = TempDir::new("cfg-nosig");
    for mode in ["audit", "lenient", "strict"] {
        let o = daemon_run(
            dir.path(),
            &["--set", &format!("PV_SECUREBOOT_MODE={mode}")],
            &[],
        );
        assert_eq!(o.status.code(), Some(2), "{mode}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("PV_SECUREBOOT_MODE") && err.contains("cannot check signatures"),
            "{err}"
        );
    }
    let d = Daemon::start();
    assert_eq!(config2_entry(&d, "PV_SECUREBOOT_MODE").0, "disabled");
}

// ---- one daemon per run dir ----

#[test]
fn second_daemon_on_the_same_rundir_exits_1_and_leaves_the_first_serving() {
    let d = Daemon::start();
    assert_eq!(d.put("/user-meta/k", b"v").status, 200);
    let o = run_tern(
        &[
            "daemon",
            "--storage",
            ps(&d.storage),
            "--rundir",
            ps(&d.rundir),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("pv-ctrl"),
        "names the socket: {}",
        stderr(&o)
    );
    assert!(d.socket.exists(), "the first daemon's socket was removed");
    assert_eq!(d.get("/user-meta").text(), r#"{"k":"v"}"#);
    assert_eq!(d.get("/steps").status, 200);
    // Also with another storage: the run dir alone decides.
    let other = TempDir::new("second");
    let o = run_tern(
        &[
            "daemon",
            "--storage",
            ps(&other.path().join("s")),
            "--rundir",
            ps(&d.rundir),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(d.get("/steps").status, 200);
}

#[test]
fn second_daemon_does_not_disturb_an_upload_in_progress_on_the_first() {
    let d = Daemon::start();
    let data = vec![7u8; 2 * 1024 * 1024];
    let sha = sha256_hex(&data);
    let mut s = d.connect();
    write!(
        s,
        "PUT /objects/{sha} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        data.len()
    )
    .unwrap();
    s.write_all(&data[..1024 * 1024]).unwrap();
    let objects = d.storage.join("objects");
    assert!(
        wait_for(Duration::from_secs(5), || !temp_names(&objects).is_empty()),
        "upload did not start"
    );
    let o = run_tern(
        &[
            "daemon",
            "--storage",
            ps(&d.storage),
            "--rundir",
            ps(&d.rundir),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    s.write_all(&data[1024 * 1024..]).unwrap();
    assert_eq!(read_reply(&mut s).sb(), (200, String::new()));
    assert_eq!(
        d.get("/objects").text(),
        format!(r#"[{{"sha256":"{sha}","size":"2097152"}}]"#)
    );
}

// ---- storage and run dir paths ----

#[test]
fn storage_path_that_is_not_a_directory_fails_the_start_with_exit_1() {
    let dir = TempDir::new("storage-file");
    let file = dir.path().join("storage");
    std::fs::write(&file, b"not a directory").unwrap();
    let o = daemon_run(dir.path(), &[], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(ps(&file)),
        "names the storage: {}",
        stderr(&o)
    );
    assert!(!dir.path().join("run/pv-ctrl").exists());
}

/// Pantavisor's `.pvr/config` names the objects directory by absolute path, which `pvr` on the
/// device uses from any working directory.
#[test]
fn relative_storage_path_gives_an_absolute_objects_dir_in_revision_config() {
    let dir = TempDir::new("storage-rel");
    let cwd = std::env::current_dir().unwrap();
    // A relative path from this process's working directory (which the daemon inherits).
    let up = "../".repeat(cwd.components().count() - 1);
    let rel = format!(
        "{up}{}",
        dir.path()
            .join("s")
            .to_str()
            .unwrap()
            .trim_start_matches('/')
    );
    let d = Daemon::start_with(Opts::default().arg("--storage").arg(rel));
    assert_eq!(d.put("/steps/locals/x", EMPTY_STATE.as_bytes()).status, 200);
    for rev in ["0", "locals/x"] {
        let cfg: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("s/trails").join(rev).join(".pvr/config")).unwrap(),
        )
        .unwrap();
        let objects_dir = cfg["ObjectsDir"].as_str().unwrap();
        assert!(Path::new(objects_dir).is_absolute(), "{rev}: {cfg}");
        assert_eq!(
            std::fs::canonicalize(objects_dir).unwrap(),
            std::fs::canonicalize(dir.path().join("s/objects")).unwrap()
        );
    }
}

// ---- factory ----

fn factory_dir(dir: &TempDir, state: &str, objects: &[(&str, &[u8])]) -> PathBuf {
    let f = dir.path().join("factory");
    std::fs::create_dir_all(f.join("objects")).unwrap();
    std::fs::write(f.join("json"), state).unwrap();
    for (name, data) in objects {
        std::fs::write(f.join("objects").join(name), data).unwrap();
    }
    f
}

fn factory_state() -> String {
    format!(r##"{{"#spec":"pantavisor-service-system@1","app/lxc.container.conf":"{SMALL_SHA}"}}"##)
}

#[test]
fn factory_dir_seeds_revision_0_and_its_objects() {
    let dir = TempDir::new("factory");
    let state = factory_state();
    let f = factory_dir(&dir, &state, &[(SMALL_SHA, SMALL)]);
    let d = Daemon::start_with(Opts::default().arg("--factory").arg(ps(&f)));
    assert_eq!(d.get("/steps/0").sb(), (200, state.clone()));
    assert_eq!(d.get("/steps/current").text(), state);
    assert_eq!(
        d.get("/steps/0/progress").text(),
        r#"{"status":"DONE","status-msg":"Factory revision","progress":100,"retries":0}"#
    );
    assert_eq!(
        d.get("/objects").text(),
        format!(r#"[{{"sha256":"{SMALL_SHA}","size":"25"}}]"#)
    );
    assert_eq!(d.get(&format!("/objects/{SMALL_SHA}")).body, SMALL);
    // The factory folder is only read, never consumed.
    assert!(f.join("objects").join(SMALL_SHA).is_file());
}

#[test]
fn factory_is_ignored_once_revision_0_exists() {
    let dir = TempDir::new("factory-late");
    let mut d = Daemon::start();
    assert!(d.stop().success());
    let f = factory_dir(&dir, &factory_state(), &[(SMALL_SHA, SMALL)]);
    d.opts = Opts::default().arg("--factory").arg(ps(&f));
    d.spawn();
    assert_eq!(d.get("/steps/0").text(), EMPTY_STATE);
}

#[test]
fn factory_object_not_matching_its_name_fails_the_start_with_exit_1() {
    let dir = TempDir::new("factory-bad");
    let f = factory_dir(
        &dir,
        &factory_state(),
        &[(SMALL_SHA, b"not the small object\n")],
    );
    let o = daemon_run(dir.path(), &["--factory", ps(&f)], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(SMALL_SHA), "names the object: {err}");
    assert!(err.contains("does not match"), "says what is wrong: {err}");
    let storage = dir.path().join("storage");
    assert!(!dir.path().join("run/pv-ctrl").exists());
    assert_eq!(dir_names(&storage.join("objects")), Vec::<String>::new());
    assert!(
        !storage.join("trails/0").exists(),
        "no half-seeded revision 0"
    );
    // Fixed, the next start seeds it.
    std::fs::write(f.join("objects").join(SMALL_SHA), SMALL).unwrap();
    let mut d = Daemon {
        child: None,
        dir: TempDir::new("factory-bad-retry"),
        storage: storage.clone(),
        rundir: dir.path().join("run"),
        socket: dir.path().join("run/pv-ctrl"),
        opts: Opts::default().arg("--factory").arg(ps(&f)),
        log: dir.path().join("retry.log"),
    };
    d.spawn();
    assert_eq!(d.get("/steps/0").text(), factory_state());
    assert_eq!(d.get(&format!("/objects/{SMALL_SHA}")).body, SMALL);
}

#[test]
fn factory_with_an_invalid_state_fails_the_start_with_exit_1() {
    let dir = TempDir::new("factory-json");
    let f = factory_dir(&dir, r##"{"#spec":"nope@1"}"##, &[]);
    let o = daemon_run(dir.path(), &["--factory", ps(&f)], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("json"), "{}", stderr(&o));
    assert!(!dir.path().join("run/pv-ctrl").exists());
}
