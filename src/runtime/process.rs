//! Process mode: the init command as a plain child of the daemon, for hosts where a real
//! container is impossible (not root, no loop device, no squashfs).
//!
//! The child gets its own process group (so a stop reaches its children), the spec's
//! environment only, stdin from `/dev/null`, stdout and stderr on the console pipe, default
//! signal dispositions and an empty mask, the conf's working directory when the host has it,
//! and joins the container's cgroup before exec when there is one. It never waits for the
//! child beyond `exec` itself (std reports exec errors through a close-on-exec pipe, which
//! closes as soon as exec succeeds).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
use nix::unistd::Pid;

use super::cgroup::ContainerCgroup;
use super::error::RuntimeError;
use super::spec::LaunchSpec;

/// The host path of the control socket the container's view would show.
fn control_socket(spec: &LaunchSpec) -> Option<std::path::PathBuf> {
    spec.view
        .binds
        .iter()
        .find_map(|b| match b.target.as_str() {
            "pantavisor/pv-ctrl" => Some(b.source.clone()),
            "pantavisor" => Some(b.source.join("pv-ctrl")),
            _ => None,
        })
}

pub fn spawn(
    spec: &LaunchSpec,
    console: OwnedFd,
    cgroup: Option<&ContainerCgroup>,
) -> Result<Pid, RuntimeError> {
    let (program, args) = spec
        .init
        .split_first()
        .ok_or_else(|| RuntimeError::InvalidSpec("empty init command".into()))?;
    let join: Vec<CString> = cgroup
        .map(|cg| cg.procs_files())
        .unwrap_or_default()
        .iter()
        .map(|p| CString::new(p.as_os_str().as_encoded_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| RuntimeError::InvalidSpec("NUL byte in cgroup path".into()))?;
    let console_err = console
        .try_clone()
        .map_err(RuntimeError::io("duplicate console pipe"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)));
    // No /pantavisor view in this mode: tell pv-ctrl clients where the socket is.
    if let Some(socket) = control_socket(spec) {
        cmd.env("TERN_CTRL_SOCKET", socket);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(console))
        .stderr(Stdio::from(console_err))
        .process_group(0);
    // `lxc.init.cwd` names a directory of the container's tree; on the host it may not exist.
    if let Some(cwd) = spec
        .cwd
        .as_ref()
        .filter(|c| std::path::Path::new(c).is_dir())
    {
        cmd.current_dir(cwd);
    }
    // SAFETY: the hook runs between fork and exec and only makes system calls on data built
    // before the fork (`join` paths), allocating nothing and taking no lock.
    unsafe {
        cmd.pre_exec(move || {
            reset_signals()?;
            for path in &join {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0" moves the writing process.
                let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if n != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    start(cmd, &format!("spawn {program}"))
}

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
pub fn spawn_daemon(command: &str, log: &std::path::Path) -> Result<Pid, RuntimeError> {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", command]);
    with_log(&mut cmd, log)?;
    start(cmd, &format!("spawn daemon {command:?}"))
}
