//! What a daemon that died without stopping its containers (kill -9, a crash; not a reboot,
//! which takes everything with it) leaves behind, cleaned up before this start runs anything:
//! the processes of the containers it ran (found by their directories in the work dir, then
//! killed through their cgroups), mounts under the work dir, and the directories. Containers
//! that ran as plain processes have no directory and are not found.
//!
//! Never recursive over something still mounted: directories are removed only once no mount
//! is left under the work dir, so a bind of a host path can never be walked into.

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, umount2};

use super::caps::Capabilities;
use super::cgroup::ContainerCgroup;

/// Mount points under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir) && p != dir)
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}

/// The containers the previous run left: those with a directory in this run dir's work dir
/// (other daemons on the same host, with other run dirs, are none of this one's business).
fn leftover_names(work_dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(work_dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Kill and unmount what a previous run left; returns how many cgroups and mounts it found.
pub fn sweep(work_dir: &Path, caps: &Capabilities, cgroup_parent: &str) -> usize {
    if !caps.root {
        return 0;
    }
    let mut found = 0;
    for name in leftover_names(work_dir) {
        let Some(cg) = ContainerCgroup::locate(&caps.cgroup, cgroup_parent, &name) else {
            continue;
        };
        found += 1;
        log::warn!("sweep: container {name} outlived the previous daemon; killing it");
        if let Err(e) = cg.kill_all() {
            log::warn!("sweep: {name}: {e}");
        }
        // Emptying is asynchronous; a cgroup still busy is reused by the next start.
        let _ = cg.remove();
    }
    for target in mounts_under(work_dir) {
        found += 1;
        if let Err(e) = umount2(&target, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
            log::warn!("sweep: cannot detach {}: {e}", target.display());
        }
    }
    if mounts_under(work_dir).is_empty() {
        if let Ok(entries) = fs::read_dir(work_dir) {
            for e in entries.flatten() {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    } else {
        log::error!(
            "sweep: mounts remain under {}; leaving its directories alone",
            work_dir.display()
        );
    }
    found
}
