//! Signals as file-descriptor events: the daemon's signals are blocked in every thread before
//! anything else runs and read from a signalfd that the loop polls, so no handler ever runs
//! asynchronously and nothing is lost between two polls.

use std::os::fd::{AsRawFd, RawFd};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// The signals the loop handles.
pub const HANDLED: [Signal; 4] = [
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
];

pub fn handled_set() -> SigSet {
    let mut set = SigSet::empty();
    for s in HANDLED {
        set.add(s);
    }
    set
}

/// Block the handled signals for this thread (and every thread and child it creates, until a
/// child resets its mask). Call first thing in `main`.
pub fn block_handled() -> nix::Result<()> {
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&handled_set()), None)
}

/// Undo [`block_handled`]: for a child between fork and exec.
pub fn unblock_handled() -> nix::Result<()> {
    sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&handled_set()), None)
}

pub struct Signals {
    fd: SignalFd,
}

impl Signals {
    pub fn new() -> nix::Result<Signals> {
        let fd = SignalFd::with_flags(
            &handled_set(),
            SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
        )?;
        Ok(Signals { fd })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Every pending signal, in arrival order (standard signals coalesce: one SIGCHLD may stand
    /// for many exited children, so the reaper must loop on waitpid).
    pub fn drain(&mut self) -> Vec<Signal> {
        let mut out = Vec::new();
        while let Ok(Some(info)) = self.fd.read_signal() {
            if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
                out.push(sig);
            }
        }
        out
    }
}
