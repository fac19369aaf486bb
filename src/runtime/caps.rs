//! What this host can do for containers, probed once ([`capabilities`]), and the choice of
//! [`Mode`] that follows ([`choose_mode`]). Reading `/proc` and `/sys` only; it never mounts,
//! never loads a module and never creates anything.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::error::RuntimeError;
use super::spec::{Mode, ModeRequest, RootSource};

/// How containers get a cgroup on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupSupport {
    /// A cgroup2 hierarchy at `root`: `/sys/fs/cgroup` on unified hosts, or the `unified`
    /// mount of a hybrid host (process tracking and `cgroup.kill` without v1 controllers).
    V2 {
        root: PathBuf,
    },
    /// Cgroup v1 hierarchies a container joins (pids, memory, `name=pantavisor`, `name=tern`).
    V1 {
        roots: Vec<PathBuf>,
    },
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Effective uid 0.
    pub root: bool,
    /// `/dev/loop-control` exists.
    pub loop_devices: bool,
    pub squashfs: bool,
    pub overlay: bool,
    pub cgroup: CgroupSupport,
}

impl Capabilities {
    /// Probes the running host.
    pub fn probe() -> Capabilities {
        let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        Capabilities {
            root: nix::unistd::geteuid().is_root(),
            loop_devices: Path::new("/dev/loop-control").exists(),
            squashfs: has_filesystem(&filesystems, "squashfs"),
            overlay: has_filesystem(&filesystems, "overlay"),
            cgroup: cgroup_support(&mountinfo),
        }
    }

    /// Why a container with this root source cannot be isolated here, if it cannot.
    pub fn isolation_blocker(&self, root: &RootSource) -> Option<String> {
        let squashfs = matches!(root, RootSource::Squashfs(_));
        if !self.root {
            Some("not running as root".to_string())
        } else if !self.overlay {
            Some("kernel has no overlay filesystem".to_string())
        } else if squashfs && !self.loop_devices {
            Some("no loop devices (/dev/loop-control missing)".to_string())
        } else if squashfs && !self.squashfs {
            Some("kernel has no squashfs filesystem".to_string())
        } else {
            None
        }
    }
}

/// The host's capabilities, probed on first use and kept for the process's life.
pub fn capabilities() -> &'static Capabilities {
    static CAPS: OnceLock<Capabilities> = OnceLock::new();
    CAPS.get_or_init(Capabilities::probe)
}

/// The mode a container runs in, and why it is not the isolated one when it is not.
pub fn choose_mode(
    req: ModeRequest,
    caps: &Capabilities,
    root: &RootSource,
) -> Result<(Mode, Option<String>), RuntimeError> {
    match (req, caps.isolation_blocker(root)) {
        (ModeRequest::Process, _) => Ok((Mode::Process, Some("process mode requested".into()))),
        (ModeRequest::Auto | ModeRequest::Isolated, None) => Ok((Mode::Isolated, None)),
        (ModeRequest::Auto, Some(why)) => Ok((Mode::Process, Some(why))),
        (ModeRequest::Isolated, Some(why)) => Err(RuntimeError::Unsupported(why)),
    }
}

/// True when `/proc/filesystems` text lists `fs`.
fn has_filesystem(filesystems: &str, fs: &str) -> bool {
    filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some(fs))
}

/// Picks the cgroup layout from `/proc/self/mountinfo` text: a cgroup2 mount at
/// `/sys/fs/cgroup` (unified), else the hybrid `unified` cgroup2 mount, else the v1
/// hierarchies a container should join.
fn cgroup_support(mountinfo: &str) -> CgroupSupport {
    let mut v2: Vec<PathBuf> = Vec::new();
    let mut v1: Vec<PathBuf> = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = pre.split_whitespace().nth(4) else {
            continue;
        };
        let mut post = post.split_whitespace();
        let fstype = post.next().unwrap_or("");
        let options = post.nth(1).unwrap_or("");
        match fstype {
            "cgroup2" => v2.push(PathBuf::from(mount_point)),
            "cgroup" if options.split(',').any(is_v1_controller_we_join) => {
                v1.push(PathBuf::from(mount_point))
            }
            _ => {}
        }
    }
    if let Some(unified) = v2
        .iter()
        .find(|p| p.as_path() == Path::new("/sys/fs/cgroup"))
    {
        return CgroupSupport::V2 {
            root: unified.clone(),
        };
    }
    if let Some(hybrid) = v2.into_iter().next() {
        return CgroupSupport::V2 { root: hybrid };
    }
    if v1.is_empty() {
        CgroupSupport::None
    } else {
        CgroupSupport::V1 { roots: v1 }
    }
}

fn is_v1_controller_we_join(opt: &str) -> bool {
    matches!(opt, "pids" | "memory" | "name=pantavisor" | "name=tern")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    fn caps(root: bool, loop_devices: bool, squashfs: bool, overlay: bool) -> Capabilities {
        Capabilities {
            root,
            loop_devices,
            squashfs,
            overlay,
            cgroup: CgroupSupport::None,
        }
    }

    #[test]
    fn unified_host_uses_sys_fs_cgroup() {
        let mi = "25 1 0:22 / /sys/fs/cgroup rw shared:9 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            cgroup_support(mi),
            CgroupSupport::V2 {
                root: "/sys/fs/cgroup".into()
            }
        );
    }

    #[test]
    fn hybrid_host_uses_the_unified_mount() {
        assert_eq!(
            cgroup_support(HYBRID),
            CgroupSupport::V2 {
                root: "/sys/fs/cgroup/unified".into()
            }
        );
    }

    #[test]
    fn v1_only_host_joins_pids_and_memory_but_not_systemd_or_cpu() {
        let v1: String = HYBRID
            .lines()
            .filter(|l| !l.contains("cgroup2"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            cgroup_support(&v1),
            CgroupSupport::V1 {
                roots: vec!["/sys/fs/cgroup/memory".into(), "/sys/fs/cgroup/pids".into()]
            }
        );
        assert_eq!(cgroup_support(""), CgroupSupport::None);
    }

    #[test]
    fn filesystems_are_matched_by_name_with_or_without_nodev() {
        let fs = "nodev\tsysfs\nnodev\toverlay\n\tsquashfs\n\text4\n";
        assert!(has_filesystem(fs, "squashfs"));
        assert!(has_filesystem(fs, "overlay"));
        assert!(!has_filesystem(fs, "btrfs"));
    }

    #[test]
    fn auto_mode_falls_back_with_the_first_reason() {
        let sq = RootSource::Squashfs("/x".into());
        let (m, why) = choose_mode(ModeRequest::Auto, &caps(false, true, true, true), &sq).unwrap();
        assert_eq!(
            (m, why.as_deref()),
            (Mode::Process, Some("not running as root"))
        );
        let (m, why) = choose_mode(ModeRequest::Auto, &caps(true, false, true, true), &sq).unwrap();
        assert_eq!(m, Mode::Process);
        assert!(why.unwrap().contains("loop"));
        let (m, why) = choose_mode(ModeRequest::Auto, &caps(true, true, true, true), &sq).unwrap();
        assert_eq!((m, why), (Mode::Isolated, None));
    }

    #[test]
    fn dir_root_needs_no_loop_or_squashfs() {
        let dir = RootSource::Dir("/r".into());
        let (m, _) = choose_mode(ModeRequest::Auto, &caps(true, false, false, true), &dir).unwrap();
        assert_eq!(m, Mode::Isolated);
    }

    #[test]
    fn forced_isolated_without_support_is_an_error_and_forced_process_is_obeyed() {
        let sq = RootSource::Squashfs("/x".into());
        assert!(choose_mode(ModeRequest::Isolated, &caps(true, true, false, true), &sq).is_err());
        let (m, _) = choose_mode(ModeRequest::Process, &caps(true, true, true, true), &sq).unwrap();
        assert_eq!(m, Mode::Process);
    }
}
