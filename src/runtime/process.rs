//! Plain child processes of the daemon: its helper daemons and one-shot commands (a module
//! loader), started through `std::process::Command` with default signal dispositions and an
//! empty mask. A container's init in process mode is cloned by [`super::child`] instead,
//! straight into its cgroup, like an isolated one. Nothing here waits for a child beyond
//! `exec` itself; the loop reaps them through SIGCHLD.
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
use nix::unistd::Pid;

use super::error::RuntimeError;

/// Spawn and let go: dropping `Child` neither kills nor reaps; the loop reaps through SIGCHLD.
fn start(mut cmd: Command, what: &str) -> Result<Pid, RuntimeError> {
    let child = cmd.spawn().map_err(RuntimeError::io(what.to_string()))?;
    let pid = i32::try_from(child.id())
        .map_err(|_| RuntimeError::InvalidSpec("pid out of range".into()))?;
    Ok(Pid::from_raw(pid))
}

/// Between fork and exec: default dispositions and an empty mask (the daemon blocks the
/// signals it reads through its signalfd, and a child would inherit that).
///
/// # Safety
/// Only between fork and exec: it makes system calls and nothing else.
unsafe fn reset_signals() -> std::io::Result<()> {
    for sig in 1..65 {
        // EINVAL for SIGKILL/SIGSTOP/reserved numbers is fine.
        // SAFETY: signal(2) with SIG_DFL touches no memory of ours.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
    Ok(())
}

/// A one-shot helper (a module loader): `argv` run directly, no shell, output appended to
/// `log`, signals reset. Returns its pid; the loop reaps it.
pub fn spawn_command(argv: &[String], log: &std::path::Path) -> Result<Pid, RuntimeError> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| RuntimeError::InvalidSpec("empty command".into()))?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    with_log(&mut cmd, log)?;
    start(cmd, &format!("spawn {program}"))
}

/// stdin from /dev/null, stdout and stderr appended to `log`, a fresh process group, signals
/// reset, only PATH in the environment.
fn with_log(cmd: &mut Command, log: &std::path::Path) -> Result<(), RuntimeError> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)
            .map_err(RuntimeError::io(format!("create {}", dir.display())))?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(RuntimeError::io(format!("open {}", log.display())))?;
    let err = out
        .try_clone()
        .map_err(RuntimeError::io("duplicate log descriptor"))?;
    cmd.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0);
    // SAFETY: the hook only resets signal state with system calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| reset_signals());
    }
    Ok(())
}

/// A board daemon: `/bin/sh -c command` in its own process group, output appended to `log`,
/// signals reset, nothing else inherited. Returns its pid; the loop reaps it.
///
/// It dies with Tern: nothing else finds it again after a crash, and the next start would
/// run a second copy beside it (an orderly stop, reboots included, stops it first).
pub fn spawn_daemon(command: &str, log: &std::path::Path) -> Result<Pid, RuntimeError> {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", command]);
    with_log(&mut cmd, log)?;
    let parent = nix::unistd::getpid().as_raw();
    // SAFETY: the hook only makes system calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || die_with_parent(parent));
    }
    start(cmd, &format!("spawn daemon {command:?}"))
}

/// Between fork and exec: SIGKILL when the process `parent` (this one's parent) dies.
///
/// # Safety
/// Only between fork and exec, or in a cloned child: it makes system calls and nothing else.
pub(super) unsafe fn die_with_parent(parent: libc::pid_t) -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The parent may have died before the prctl took effect: then it never will fire.
    // SAFETY: getppid and _exit take no pointers.
    if unsafe { libc::getppid() } != parent {
        unsafe { libc::_exit(1) };
    }
    Ok(())
}
