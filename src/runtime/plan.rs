//! Turns a spec's mounts (the base `/proc`, `/dev`, `/sys`; `lxc.mount.entry` lines; the
//! `/pantavisor` view) into the ordered [`Step`]s the child performs after `pivot_root`.
//!
//! Pure: host paths are resolved through a closure the caller gives, so this module never
//! touches the file system. Every target is an absolute path inside the container, free of
//! `..`; every bind source is a host path under [`OLD_ROOT`], where the child still sees the
//! host until it detaches it.

use nix::mount::MsFlags;

use super::lxc_conf::MountEntry;
use super::spec::{BindKind, Sysfs, ViewBind};

/// Where the child keeps the host's root between `pivot_root` and the last bind.
pub const OLD_ROOT: &str = "/.tern-oldroot";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `mkdir` with mode 0755; an existing directory is fine.
    Mkdir(String),
    /// Create an empty file (mode 0644) to bind a file onto; an existing one is fine.
    Touch(String),
    Mount {
        source: Option<String>,
        target: String,
        fstype: Option<String>,
        flags: MsFlags,
        data: Option<String>,
        /// A failure skips the step instead of failing the start.
        optional: bool,
    },
    /// A device node (mode 0666); when `mknod` is refused, bind `fallback` (a host device
    /// under [`OLD_ROOT`]) onto an empty file instead.
    Mknod {
        path: String,
        major: u64,
        minor: u64,
        fallback: String,
    },
    Symlink {
        target: String,
        link: String,
    },
}

/// How a host path resolves: the canonical path, or `None` when it does not exist.
pub type Resolve<'a> = dyn Fn(&str) -> Option<String> + 'a;

/// An absolute, `..`-free path inside the container for a target written relative to the root
/// (a leading `/` is tolerated, as LXC does).
pub fn container_path(target: &str) -> Result<String, String> {
    let parts: Vec<&str> = target
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(format!("mount target {target:?} leaves the container root"));
    }
    if parts.is_empty() {
        return Err(format!("mount target {target:?} is the container root"));
    }
    Ok(format!("/{}", parts.join("/")))
}

/// `mkdir` steps for every ancestor of `path` and, when `include_self`, the path itself.
fn mkdirs(path: &str, include_self: bool, out: &mut Vec<Step>) {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let upto = if include_self {
        parts.len()
    } else {
        parts.len().saturating_sub(1)
    };
    for i in 1..=upto {
        out.push(Step::Mkdir(format!("/{}", parts[..i].join("/"))));
    }
}

/// The mounts every container gets first: fresh `/proc`, a tmpfs `/dev` with the usual nodes,
/// `/dev/pts` and `/dev/shm` (optional), and `/sys` as asked.
pub fn base_steps(sysfs: Sysfs) -> Vec<Step> {
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let mount =
        |src: &str, target: &str, fstype: &str, flags, data: Option<&str>, optional| Step::Mount {
            source: Some(src.to_string()),
            target: target.to_string(),
            fstype: Some(fstype.to_string()),
            flags,
            data: data.map(str::to_string),
            optional,
        };
    let mut s = vec![
        Step::Mkdir("/proc".into()),
        mount("proc", "/proc", "proc", nosuid_nodev_noexec, None, false),
        Step::Mkdir("/dev".into()),
        mount(
            "tmpfs",
            "/dev",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
            Some("mode=755,size=65536k"),
            false,
        ),
    ];
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        s.push(Step::Mknod {
            path: format!("/dev/{name}"),
            major,
            minor,
            fallback: format!("{OLD_ROOT}/dev/{name}"),
        });
    }
    s.push(Step::Mkdir("/dev/pts".into()));
    s.push(mount(
        "devpts",
        "/dev/pts",
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
        true,
    ));
    s.push(Step::Symlink {
        target: "pts/ptmx".into(),
        link: "/dev/ptmx".into(),
    });
    s.push(Step::Mkdir("/dev/shm".into()));
    s.push(mount(
        "shm",
        "/dev/shm",
        "tmpfs",
        nosuid_nodev_noexec,
        Some("mode=1777,size=65536k"),
        true,
    ));
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        s.push(Step::Symlink {
            target: target.into(),
            link: link.into(),
        });
    }
    if sysfs != Sysfs::None {
        let ro = if sysfs == Sysfs::ReadOnly {
            MsFlags::MS_RDONLY
        } else {
            MsFlags::empty()
        };
        s.push(Step::Mkdir("/sys".into()));
        s.push(mount(
            "sysfs",
            "/sys",
            "sysfs",
            nosuid_nodev_noexec | ro,
            None,
            true,
        ));
    }
    s
}

/// The parsed options of one mount entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Options {
    flags: MsFlags,
    data: Vec<String>,
    read_only: bool,
    create: Option<BindKind>,
    optional: bool,
}

fn parse_options(options: &[String]) -> Options {
    let mut o = Options {
        flags: MsFlags::empty(),
        data: Vec::new(),
        read_only: false,
        create: None,
        optional: false,
    };
    for opt in options {
        let flag = match opt.as_str() {
            "defaults" | "rw" => {
                o.read_only = false;
                continue;
            }
            "ro" => {
                o.read_only = true;
                continue;
            }
            "create=dir" => {
                o.create = Some(BindKind::Dir);
                continue;
            }
            "create=file" => {
                o.create = Some(BindKind::File);
                continue;
            }
            "optional" => {
                o.optional = true;
                continue;
            }
            "bind" => MsFlags::MS_BIND,
            "rbind" => MsFlags::MS_BIND | MsFlags::MS_REC,
            "nosuid" => MsFlags::MS_NOSUID,
            "nodev" => MsFlags::MS_NODEV,
            "noexec" => MsFlags::MS_NOEXEC,
            "sync" => MsFlags::MS_SYNCHRONOUS,
            "dirsync" => MsFlags::MS_DIRSYNC,
            "noatime" => MsFlags::MS_NOATIME,
            "nodiratime" => MsFlags::MS_NODIRATIME,
            "relatime" => MsFlags::MS_RELATIME,
            "strictatime" => MsFlags::MS_STRICTATIME,
            // Options with no meaning here: LXC's and Pantavisor's own, and propagation.
            o2 if o2.starts_with("origin=") || o2.starts_with("create=") => continue,
            "suid" | "dev" | "exec" | "auto" | "noauto" | "nouser" | "private" | "rprivate"
            | "slave" | "rslave" | "shared" | "rshared" => continue,
            other => {
                o.data.push(other.to_string());
                continue;
            }
        };
        o.flags |= flag;
    }
    o
}

/// The steps of one `lxc.mount.entry`. Bind sources are host paths, resolved (and rewritten
/// for `/volumes/…`) by `resolve`; a missing source fails unless the entry is `optional`.
pub fn entry_steps(entry: &MountEntry, resolve: &Resolve) -> Result<Vec<Step>, String> {
    let o = parse_options(&entry.options);
    let target = container_path(&entry.target)?;
    let bind = o.flags.contains(MsFlags::MS_BIND);
    let mut out = Vec::new();
    let source = if bind {
        match resolve(&entry.source) {
            Some(host) => format!("{OLD_ROOT}{host}"),
            None if o.optional => return Ok(out),
            None => return Err(format!("bind source {} does not exist", entry.source)),
        }
    } else {
        entry.source.clone()
    };
    match o.create {
        Some(BindKind::Dir) => mkdirs(&target, true, &mut out),
        Some(BindKind::File) => {
            mkdirs(&target, false, &mut out);
            out.push(Step::Touch(target.clone()));
        }
        None => {}
    }
    let ro = if o.read_only {
        MsFlags::MS_RDONLY
    } else {
        MsFlags::empty()
    };
    let fstype = (!bind && entry.fstype != "none").then(|| entry.fstype.clone());
    let data = (!o.data.is_empty()).then(|| o.data.join(","));
    out.push(Step::Mount {
        source: Some(source),
        target: target.clone(),
        fstype,
        flags: o.flags | if bind { MsFlags::empty() } else { ro },
        data,
        optional: o.optional,
    });
    if bind && o.read_only {
        out.push(remount_read_only(&target, o.flags, o.optional));
    }
    Ok(out)
}

/// A bind is made read-only by a second, remounting call.
fn remount_read_only(target: &str, flags: MsFlags, optional: bool) -> Step {
    let keep = flags & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
    Step::Mount {
        source: None,
        target: target.to_string(),
        fstype: None,
        flags: MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | keep,
        data: None,
        optional,
    }
}

/// The steps of the `/pantavisor` view. Sources must exist (or are created by the caller
/// when `create_source`); a missing optional one is skipped.
pub fn view_steps(binds: &[ViewBind], resolve: &Resolve) -> Result<Vec<Step>, String> {
    let mut out = Vec::new();
    for b in binds {
        let target = container_path(&b.target)?;
        let host = b.source.to_string_lossy();
        let Some(host) = resolve(&host) else {
            if b.optional {
                continue;
            }
            return Err(format!("{} does not exist", b.source.display()));
        };
        match b.kind {
            BindKind::Dir => mkdirs(&target, true, &mut out),
            BindKind::File => {
                mkdirs(&target, false, &mut out);
                out.push(Step::Touch(target.clone()));
            }
        }
        out.push(Step::Mount {
            source: Some(format!("{OLD_ROOT}{host}")),
            target: target.clone(),
            fstype: None,
            flags: MsFlags::MS_BIND,
            data: None,
            optional: b.optional,
        });
        if b.read_only {
            out.push(remount_read_only(&target, MsFlags::empty(), b.optional));
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn host(p: &str) -> Option<String> {
        (!p.contains("missing")).then(|| p.replace("/volumes/app/", "/storage/disks/perm/app/"))
    }

    fn entry(line: &str) -> MountEntry {
        MountEntry::parse(line).unwrap()
    }

    #[test]
    fn targets_are_made_absolute_and_cannot_escape() {
        assert_eq!(
            container_path("etc/resolv.conf").unwrap(),
            "/etc/resolv.conf"
        );
        assert_eq!(container_path("/run//x/./y").unwrap(), "/run/x/y");
        assert!(container_path("etc/../../host").is_err());
        assert!(container_path("/").is_err());
    }

    #[test]
    fn create_file_bind_makes_parents_and_an_empty_file() {
        let s = entry_steps(
            &entry("/etc/resolv.conf etc/resolv.conf none bind,rw,create=file 0 0"),
            &host,
        )
        .unwrap();
        assert_eq!(
            s,
            vec![
                Step::Mkdir("/etc".into()),
                Step::Touch("/etc/resolv.conf".into()),
                Step::Mount {
                    source: Some(format!("{OLD_ROOT}/etc/resolv.conf")),
                    target: "/etc/resolv.conf".into(),
                    fstype: None,
                    flags: MsFlags::MS_BIND,
                    data: None,
                    optional: false,
                },
            ]
        );
    }

    #[test]
    fn volume_source_is_rewritten_by_the_resolver_and_dirs_created() {
        let s = entry_steps(
            &entry("/volumes/app/docker-etc-nginx etc/nginx none bind,rw,create=dir 0 0"),
            &host,
        )
        .unwrap();
        assert_eq!(s[0], Step::Mkdir("/etc".into()));
        assert_eq!(s[1], Step::Mkdir("/etc/nginx".into()));
        let Step::Mount { source, .. } = &s[2] else {
            panic!("{s:?}")
        };
        assert_eq!(
            source.as_deref(),
            Some("/.tern-oldroot/storage/disks/perm/app/docker-etc-nginx")
        );
    }

    #[test]
    fn tmpfs_entry_keeps_flags_and_data_and_has_a_type() {
        let s = entry_steps(
            &entry("tmpfs run tmpfs rw,nodev,relatime,mode=755 0 0"),
            &host,
        )
        .unwrap();
        assert_eq!(
            s,
            vec![Step::Mount {
                source: Some("tmpfs".into()),
                target: "/run".into(),
                fstype: Some("tmpfs".into()),
                flags: MsFlags::MS_NODEV | MsFlags::MS_RELATIME,
                data: Some("mode=755".into()),
                optional: false,
            }]
        );
    }

    #[test]
    fn read_only_bind_is_remounted_read_only() {
        let s = entry_steps(
            &entry("/data data none rbind,ro,nosuid,create=dir 0 0"),
            &host,
        )
        .unwrap();
        let Some(Step::Mount {
            flags,
            source: None,
            ..
        }) = s.last()
        else {
            panic!("{s:?}")
        };
        assert!(flags.contains(
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_BIND | MsFlags::MS_NOSUID
        ));
    }

    #[test]
    fn missing_source_fails_unless_optional() {
        assert!(entry_steps(&entry("/missing x none bind 0 0"), &host).is_err());
        assert!(
            entry_steps(&entry("/missing x none bind,optional 0 0"), &host)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn base_has_proc_dev_nodes_and_sys_as_asked() {
        let s = base_steps(Sysfs::ReadOnly);
        assert!(s.iter().any(|x| matches!(x, Step::Mount { target, fstype: Some(t), .. } if target == "/proc" && t == "proc")));
        assert_eq!(
            s.iter().filter(|x| matches!(x, Step::Mknod { .. })).count(),
            6
        );
        assert!(s.iter().any(|x| matches!(x, Step::Mount { target, flags, .. } if target == "/sys" && flags.contains(MsFlags::MS_RDONLY))));
        assert!(
            !base_steps(Sysfs::None)
                .iter()
                .any(|x| matches!(x, Step::Mount { target, .. } if target == "/sys"))
        );
    }

    #[test]
    fn view_binds_socket_as_file_and_skips_missing_optional() {
        let binds = vec![
            ViewBind {
                source: PathBuf::from("/run/pv/pv-ctrl"),
                target: "pantavisor/pv-ctrl".into(),
                kind: BindKind::File,
                read_only: false,
                create_source: false,
                optional: false,
            },
            ViewBind {
                source: PathBuf::from("/run/pv/missing-log"),
                target: "pantavisor/pv-ctrl-log".into(),
                kind: BindKind::File,
                read_only: false,
                create_source: false,
                optional: true,
            },
        ];
        let s = view_steps(&binds, &host).unwrap();
        assert_eq!(s[0], Step::Mkdir("/pantavisor".into()));
        assert_eq!(s[1], Step::Touch("/pantavisor/pv-ctrl".into()));
        assert_eq!(s.len(), 3);
    }
}
