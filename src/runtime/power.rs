//! Reboot and power-off, once every container is down: flush the file systems, then the
//! board's command, else the kernel when Tern is PID 1, else (a development host) re-execute
//! Tern in place when `TERN_DEV_REBOOT=reexec`, or exit with a documented code for whoever
//! started it.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use nix::sys::reboot::{RebootMode, reboot};

use crate::config::Config;

/// Exit code of a reboot request on a development host.
pub const EXIT_REBOOT: u8 = 3;
/// Exit code of a power-off request on a development host.
pub const EXIT_POWEROFF: u8 = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Power {
    Reboot,
    Poweroff,
}

pub fn power(what: Power, reason: &str, config: &Config) -> ExitCode {
    nix::unistd::sync();
    let (key, mode, code, verb) = match what {
        Power::Reboot => (
            "TERN_REBOOT_CMD",
            RebootMode::RB_AUTOBOOT,
            EXIT_REBOOT,
            "reboot",
        ),
        Power::Poweroff => (
            "TERN_POWEROFF_CMD",
            RebootMode::RB_POWER_OFF,
            EXIT_POWEROFF,
            "poweroff",
        ),
    };
    if let Some(cmd) = config.get(key).filter(|c| !c.is_empty()) {
        log::warn!("daemon: {verb} ({reason}) with: {cmd}");
        match Command::new("/bin/sh").args(["-c", cmd]).status() {
            Ok(s) if s.success() => return ExitCode::from(code),
            Ok(s) => log::error!("daemon: {verb} command failed: {s}"),
            Err(e) => log::error!("daemon: {verb} command failed: {e}"),
        }
    } else if std::process::id() == 1 {
        log::warn!("daemon: {verb} ({reason})");
        // Only returns on failure.
        let Err(e) = reboot(mode);
        log::error!("daemon: {verb} failed: {e}");
    } else if what == Power::Reboot && config.get("TERN_DEV_REBOOT") == Some("reexec") {
        log::warn!("daemon: reboot ({reason}): re-executing in place (TERN_DEV_REBOOT=reexec)");
        // Every descriptor of the loop is close-on-exec; the signal mask carries over, and
        // the new image blocks the same signals first thing anyway.
        let err = Command::new("/proc/self/exe")
            .args(std::env::args_os().skip(1))
            .exec();
        log::error!("daemon: re-exec failed: {err}");
    } else {
        log::warn!("daemon: {verb} requested ({reason}); exiting with code {code}");
    }
    ExitCode::from(code)
}
