//! A container's cgroup: one directory per hierarchy (`<root>/<parent>/<name>`), created
//! before the child runs, joined by the child's pid before it is released, killed as a whole,
//! removed at teardown. It never sets resource limits (the spec has none yet) and never
//! touches a cgroup outside its own directories.

use std::fs;
use std::io::ErrorKind;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::caps::CgroupSupport;
use super::error::RuntimeError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// The cgroup directories of one container (one per joined hierarchy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerCgroup {
    version: Version,
    dirs: Vec<PathBuf>,
}

impl ContainerCgroup {
    /// Where the cgroup of `name` under `parent` lives on this host (nothing is created).
    /// `None` when the host has no usable cgroup hierarchy.
    pub fn locate(support: &CgroupSupport, parent: &str, name: &str) -> Option<ContainerCgroup> {
        let leaf = |root: &Path| root.join(parent.trim_matches('/')).join(name);
        match support {
            CgroupSupport::V2 { root } => Some(ContainerCgroup {
                version: Version::V2,
                dirs: vec![leaf(root)],
            }),
            CgroupSupport::V1 { roots } if !roots.is_empty() => Some(ContainerCgroup {
                version: Version::V1,
                dirs: roots.iter().map(|r| leaf(r)).collect(),
            }),
            CgroupSupport::V1 { .. } | CgroupSupport::None => None,
        }
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// The container's directory in each hierarchy (the first is the one read for pids).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The `cgroup.procs` files a process writes to join (one per hierarchy).
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Creates the directories. True when none existed: a fresh cgroup, never killed before.
    pub fn create(&self) -> Result<bool, RuntimeError> {
        let fresh = !self.dirs.iter().any(|d| d.exists());
        for d in &self.dirs {
            fs::create_dir_all(d)
                .map_err(RuntimeError::io(format!("create cgroup {}", d.display())))?;
        }
        Ok(fresh)
    }

    /// The cgroup's directory opened for clone3's CLONE_INTO_CGROUP: v2 only (a v1 container
    /// joins several hierarchies, which only `cgroup.procs` writes can do). `None` when it
    /// cannot be opened; the caller then moves the child with [`Self::add`].
    pub fn open_v2_dir(&self) -> Option<OwnedFd> {
        if self.version != Version::V2 {
            return None;
        }
        let dir = self.dirs.first()?;
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(dir)
            .ok()
            .map(OwnedFd::from)
    }

    /// Moves `pid` (and its future children) into the cgroup, in every hierarchy.
    pub fn add(&self, pid: Pid) -> Result<(), RuntimeError> {
        for f in self.procs_files() {
            fs::write(&f, pid.as_raw().to_string())
                .map_err(RuntimeError::io(format!("join {}", f.display())))?;
        }
        Ok(())
    }

    /// The live pids in the cgroup (an absent cgroup has none).
    pub fn pids(&self) -> Result<Vec<Pid>, RuntimeError> {
        let Some(dir) = self.dirs.first() else {
            return Ok(Vec::new());
        };
        let f = dir.join("cgroup.procs");
        match fs::read_to_string(&f) {
            Ok(text) => Ok(text
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .map(Pid::from_raw)
                .collect()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(RuntimeError::io(format!("read {}", f.display()))(e)),
        }
    }

    /// True when no process is left (v2 reads `populated` from `cgroup.events`).
    pub fn is_empty(&self) -> Result<bool, RuntimeError> {
        if self.version == Version::V2
            && let Some(dir) = self.dirs.first()
            && let Ok(events) = fs::read_to_string(dir.join("cgroup.events"))
        {
            return Ok(events.lines().any(|l| l.trim() == "populated 0"));
        }
        Ok(self.pids()?.is_empty())
    }

    /// SIGKILL to every process: v2 `cgroup.kill` (Linux 5.14+) when present, else each pid
    /// of `cgroup.procs`, a few passes to catch processes forked meanwhile. Never waits.
    pub fn kill_all(&self) -> Result<(), RuntimeError> {
        if self.version == Version::V2
            && let Some(dir) = self.dirs.first()
            && dir.join("cgroup.kill").exists()
        {
            let kill_file = dir.join("cgroup.kill");
            return fs::write(&kill_file, "1")
                .map_err(RuntimeError::io(format!("write {}", kill_file.display())));
        }
        for _ in 0..3 {
            let pids = self.pids()?;
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                // ESRCH: it exited between the read and the kill; nothing to do.
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
        Ok(())
    }

    /// Removes the directories; fails with `EBUSY` while a process is left.
    pub fn remove(&self) -> Result<(), RuntimeError> {
        for d in &self.dirs {
            match fs::remove_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(RuntimeError::io(format!("remove cgroup {}", d.display()))(
                        e,
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn v2_leaf_is_root_parent_name() {
        let cg = ContainerCgroup::locate(
            &CgroupSupport::V2 {
                root: "/sys/fs/cgroup".into(),
            },
            "tern",
            "nginx",
        )
        .unwrap();
        assert_eq!(cg.dirs(), [PathBuf::from("/sys/fs/cgroup/tern/nginx")]);
        assert_eq!(
            cg.procs_files(),
            [PathBuf::from("/sys/fs/cgroup/tern/nginx/cgroup.procs")]
        );
    }

    #[test]
    fn v1_has_one_leaf_per_hierarchy_and_none_has_no_cgroup() {
        let cg = ContainerCgroup::locate(
            &CgroupSupport::V1 {
                roots: vec!["/cg/pids".into(), "/cg/memory".into()],
            },
            "/tern/",
            "a",
        )
        .unwrap();
        assert_eq!(cg.version(), Version::V1);
        assert_eq!(
            cg.dirs(),
            [
                PathBuf::from("/cg/pids/tern/a"),
                PathBuf::from("/cg/memory/tern/a")
            ]
        );
        assert!(ContainerCgroup::locate(&CgroupSupport::None, "tern", "a").is_none());
        assert!(
            ContainerCgroup::locate(&CgroupSupport::V1 { roots: vec![] }, "tern", "a").is_none()
        );
    }

    #[test]
    fn absent_cgroup_reads_as_empty_and_removes_cleanly() {
        let cg = ContainerCgroup::locate(
            &CgroupSupport::V1 {
                roots: vec!["/nonexistent-tern-test".into()],
            },
            "tern",
            "a",
        )
        .unwrap();
        assert!(cg.is_empty().unwrap());
        assert!(cg.remove().is_ok());
    }
}
