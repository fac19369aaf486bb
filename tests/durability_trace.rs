//! Every write a client is told succeeded is durable before the answer leaves: the daemon is
//! run under strace and, for every rename it makes, the trace must show the renamed file (or
//! directory) fsynced before the rename and its parent directory fsynced after it, all before
//! the next `HTTP/1.1 200` is sent. This checks the order of the syscalls themselves, which a
//! kill -9 test alone cannot see (the page cache survives a killed process, not a power cut).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Traced {
    strace: std::process::Child,
    trace: std::path::PathBuf,
    socket: std::path::PathBuf,
    _dir: TempDir,
}

fn start_traced() -> Option<Traced> {
    if Command::new("strace")
        .env("TERN_HUB", "off")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("skipped: strace is not installed");
        return None;
    }
    let dir = TempDir::new("trace");
    let trace = dir.path().join("trace");
    let socket = dir.path().join("run/pv-ctrl");
    let strace = Command::new("strace")
        .env("TERN_HUB", "off")
        .args(["-f", "-qq", "-s", "256", "-o"])
        .arg(&trace)
        .args([
            "-e",
            "trace=openat,fsync,fdatasync,rename,renameat,renameat2,symlink,symlinkat,sendto,close",
        ])
        .arg(tern_bin())
        .arg("daemon")
        .arg("--storage")
        .arg(dir.path().join("storage"))
        .arg("--rundir")
        .arg(dir.path().join("run"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn strace");
    let until = Instant::now() + Duration::from_secs(30);
    while UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < until, "traced daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(Traced {
        strace,
        trace,
        socket,
        _dir: dir,
    })
}

fn request(socket: &Path, method: &str, path: &str, body: &[u8]) -> u16 {
    let mut s = UnixStream::connect(socket).unwrap();
    send_request(&mut s, method, path, body);
    read_reply(&mut s).status
}

/// One syscall line of `strace -f -qq`: `PID name(args) = ret`.
fn parse_line(line: &str) -> Option<(&str, &str, &str)> {
    // strace pads the pid column: `4216  write(…)` as well as `14129 write(…)`.
    let rest = line.split_once(' ')?.1.trim_start();
    let open = rest.find('(')?;
    let eq = rest.rfind(" = ")?;
    let close = rest[..eq].rfind(')')?;
    Some((
        &rest[..open],
        &rest[open + 1..close],
        rest[eq + 3..].split_whitespace().next()?,
    ))
}

fn quoted(args: &str) -> Vec<String> {
    args.split('"')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect()
}

fn parent(p: &str) -> String {
    Path::new(p)
        .parent()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[test]
fn every_acknowledged_write_is_fsynced_renamed_and_dir_synced_before_the_answer() {
    let Some(mut t) = start_traced() else { return };
    let object = b"durable object payload\n";
    let sha = sha256_hex(object);
    let state = br##"{"#spec":"pantavisor-service-system@1"}"##;
    let steps: Vec<(&str, String, &[u8])> = vec![
        ("PUT", "/user-meta/color".into(), b"blue"),
        ("PUT", "/device-meta/site".into(), b"lab"),
        ("DELETE", "/user-meta/color".into(), b""),
        ("PUT", format!("/objects/{sha}"), object),
        ("PUT", "/steps/locals/durable".into(), state),
        ("PUT", "/steps/locals/durable/commitmsg".into(), b"first"),
        ("PUT", "/steps/locals/durable".into(), state),
    ];
    for (method, path, body) in &steps {
        assert_eq!(
            request(&t.socket, method, path, body),
            200,
            "{method} {path}"
        );
    }
    // Stop the daemon (the traced child of strace) and let strace finish the trace.
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", t.strace.id())).unwrap();
    let pid = children.split_whitespace().next().expect("daemon pid");
    assert!(
        Command::new("kill")
            .args(["-TERM", pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(t.strace.wait().unwrap().success());

    let trace = std::fs::read_to_string(&t.trace).unwrap();
    let run_dir = t.socket.parent().unwrap().to_path_buf();
    let mut fds: HashMap<String, String> = HashMap::new();
    let mut synced: HashSet<String> = HashSet::new();
    // Symlinks cannot be fsynced: one counts as synced once its directory is, after it exists.
    let mut symlinks: HashSet<String> = HashSet::new();
    let mut dirs_owed: HashSet<String> = HashSet::new();
    let mut renames_since_answer = 0;
    let mut answers = Vec::new();
    for line in trace.lines() {
        let Some((call, args, ret)) = parse_line(line) else {
            continue;
        };
        let fd = args
            .split(',')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        match call {
            "openat" if ret.parse::<i32>().is_ok_and(|r| r >= 0) => {
                if let Some(p) = quoted(args).into_iter().next() {
                    fds.insert(ret.to_string(), p);
                }
            }
            "close" => {
                fds.remove(&fd);
            }
            "fsync" | "fdatasync" if ret == "0" => {
                if let Some(p) = fds.get(&fd) {
                    synced.insert(p.clone());
                    dirs_owed.remove(p);
                    synced.extend(symlinks.iter().filter(|l| parent(l) == *p).cloned());
                }
            }
            "symlink" | "symlinkat" if ret == "0" => {
                if let Some(link) = quoted(args).pop() {
                    symlinks.insert(link);
                }
            }
            "rename" | "renameat" | "renameat2" if ret == "0" => {
                let q = quoted(args);
                let (src, dst) = (&q[0], &q[1]);
                // The run dir holds views rebuilt at every start (metadata files for
                // containers, on a tmpfs on devices): atomic, deliberately not durable.
                if Path::new(dst).starts_with(&run_dir) {
                    continue;
                }
                assert!(
                    synced.contains(src),
                    "renamed {src} -> {dst} without fsyncing it first"
                );
                dirs_owed.insert(parent(dst));
                renames_since_answer += 1;
            }
            "sendto" if args.contains("\"HTTP/1.1 200") => {
                assert!(
                    dirs_owed.is_empty(),
                    "answered 200 before fsyncing directories {dirs_owed:?}"
                );
                answers.push(renames_since_answer);
                renames_since_answer = 0;
            }
            _ => {}
        }
    }
    assert_eq!(
        answers.len(),
        steps.len(),
        "every request was answered 200 in the trace"
    );
    for ((method, path, _), renames) in steps.iter().zip(&answers) {
        assert!(
            *renames >= 1,
            "{method} {path} was acknowledged without a durable rename"
        );
    }
}
