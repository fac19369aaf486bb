//! Stopping and cleaning up, as instant calls the loop makes from its state machine: send a
//! signal now, kill the cgroup later, check emptiness when SIGCHLD says something exited,
//! tear down once empty. None of these waits for a process.

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use super::cgroup::ContainerCgroup;
use super::error::RuntimeError;
use super::mounts::{self, MountPlan};

/// Sends `sig` to `pid`; a pid already gone is not an error. (The init of an isolated
/// container is pid 1 of its namespace: it only receives signals it has a handler for, except
/// SIGKILL, so SIGTERM to a shell init is ignored: that is what [`kill_cgroup`] is for.)
pub fn signal(pid: Pid, sig: Signal) -> Result<(), RuntimeError> {
    match kill(pid, sig) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(RuntimeError::sys(format!("signal {sig} to {pid}"))(e)),
    }
}

/// Sends `sig` to the process group `pgid` (a process-mode container and its children).
pub fn signal_group(pgid: Pid, sig: Signal) -> Result<(), RuntimeError> {
    match killpg(pgid, sig) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(RuntimeError::sys(format!("signal {sig} to group {pgid}"))(
            e,
        )),
    }
}

/// SIGKILL to every process of the cgroup (v2 `cgroup.kill`, else pid by pid).
pub fn kill_cgroup(cgroup: &ContainerCgroup) -> Result<(), RuntimeError> {
    cgroup.kill_all()
}

pub fn cgroup_is_empty(cgroup: &ContainerCgroup) -> Result<bool, RuntimeError> {
    cgroup.is_empty()
}

/// Unmounts everything of the container (lazily as a last resort), frees its loop device,
/// removes its boot tmpfs, cgroup and mount points. Call once the container is empty;
/// calling again after a partial failure retries what is left.
pub fn teardown(plan: &mut MountPlan) -> Result<(), RuntimeError> {
    mounts::teardown(plan)
}
