//! What the engine asks the runtime to start: [`LaunchSpec`] and its parts, plus the storage
//! layout of persistent disks ([`disk_dir`]). Plain data; nothing here touches the system.

use std::path::{Path, PathBuf};

use super::lxc_conf::{LxcConf, MountEntry};

/// Where container cgroups live, under the hierarchy root (`/sys/fs/cgroup/tern/<name>`).
pub const DEFAULT_CGROUP_PARENT: &str = "tern";

/// `storage.<key>.persistence` of run.json.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// `<storage>/disks/perm/<container>/<key>`: survives revisions and reboots.
    Permanent,
    /// `<storage>/disks/rev/<rev>/<container>/<key>`: survives reboots, not updates.
    Revision,
    /// A tmpfs: gone when the container stops.
    Boot,
}

impl Persistence {
    pub fn parse(s: &str) -> Option<Persistence> {
        match s {
            "permanent" => Some(Persistence::Permanent),
            "revision" => Some(Persistence::Revision),
            "boot" => Some(Persistence::Boot),
            _ => None,
        }
    }
}

/// The host directory behind a persistent storage `key` of container `name` (Pantavisor's
/// `disks/perm/<plat>/<key>` and `disks/rev/<rev>/<plat>/<key>`); `None` for `Boot`, which
/// lives on the container's tmpfs.
pub fn disk_dir(
    storage: &Path,
    persistence: Persistence,
    rev: &str,
    name: &str,
    key: &str,
) -> Option<PathBuf> {
    match persistence {
        Persistence::Permanent => Some(storage.join("disks/perm").join(name).join(key)),
        Persistence::Revision => Some(storage.join("disks/rev").join(rev).join(name).join(key)),
        Persistence::Boot => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSource {
    /// The `root-volume` object: a squashfs image, attached read-only through a loop device.
    Squashfs(PathBuf),
    /// An already unpacked tree used as the overlay's lower layer (development, tests).
    Dir(PathBuf),
}

/// The container's root: a read-only lower layer and a writable overlay whose upper layer
/// persists as run.json's `lxc-overlay` storage says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootFs {
    pub source: RootSource,
    pub persistence: Persistence,
}

/// A run.json storage entry other than `lxc-overlay`. Mount entries whose source starts with
/// `/volumes/<container>/<key>` (what pvr writes) are bound from its host directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub key: String,
    pub persistence: Persistence,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// Stay in the host's network namespace (`lxc.namespace.keep = net`).
    Host,
    /// A new network namespace with only `lo`, brought up.
    Private,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sysfs {
    None,
    ReadOnly,
    ReadWrite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeRequest {
    /// Isolated when the host can ([`super::choose_mode`]), else Process.
    Auto,
    /// Isolated or an error.
    Isolated,
    /// Always a plain process.
    Process,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Isolated,
    Process,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Isolated => "isolated",
            Mode::Process => "process",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindKind {
    Dir,
    File,
}

/// One bind mount of the daemon's run dir into the container, under `/pantavisor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewBind {
    pub source: PathBuf,
    /// Path inside the container, e.g. `pantavisor/pv-ctrl`.
    pub target: String,
    pub kind: BindKind,
    pub read_only: bool,
    /// Create the source directory on the host when missing (metadata dirs).
    pub create_source: bool,
    /// Skip silently when the source is missing or the mount point cannot be made.
    pub optional: bool,
}

/// The daemon's paths a container may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvPaths {
    /// The run dir (`/run/pantavisor/pv` in Pantavisor); holds `user-meta*`, `device-meta*`.
    pub run_dir: PathBuf,
    /// The control socket (`<run_dir>/pv-ctrl`).
    pub control_socket: PathBuf,
    /// The log socket (`<run_dir>/pv-ctrl-log`), when the daemon has one.
    pub log_socket: Option<PathBuf>,
    /// The logs root (`<storage>/logs`).
    pub logs_dir: PathBuf,
}

/// What a container sees of the daemon under `/pantavisor` (research `pantavisor.md` §1.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PvView {
    pub binds: Vec<ViewBind>,
}

impl PvView {
    /// Role `mgmt`: the whole run dir read-only at `/pantavisor` (sockets, device-id, all
    /// metadata), plus every log and the metadata dirs where the run dir has mount points for
    /// them. Sockets accept connections through a read-only bind.
    pub fn mgmt(p: &PvPaths) -> PvView {
        let ro = |source: PathBuf, target: &str, optional: bool| ViewBind {
            source,
            target: target.to_string(),
            kind: BindKind::Dir,
            read_only: true,
            create_source: false,
            optional,
        };
        let mut binds = vec![ro(p.run_dir.clone(), "pantavisor", false)];
        if !p.control_socket.starts_with(&p.run_dir) {
            binds.push(file_bind(
                p.control_socket.clone(),
                "pantavisor/pv-ctrl",
                true,
            ));
        }
        binds.push(ro(p.logs_dir.clone(), "pantavisor/logs", true));
        binds.push(ro(
            p.run_dir.join("user-meta"),
            "pantavisor/user-meta",
            true,
        ));
        binds.push(ro(
            p.run_dir.join("device-meta"),
            "pantavisor/device-meta",
            true,
        ));
        PvView { binds }
    }

    /// Any other role: only the control (and log) socket, its own logs and its own metadata.
    pub fn restricted(p: &PvPaths, name: &str, rev: &str) -> PvView {
        let own = |source: PathBuf, target: &str| ViewBind {
            source,
            target: target.to_string(),
            kind: BindKind::Dir,
            read_only: true,
            create_source: true,
            optional: false,
        };
        let mut binds = vec![file_bind(
            p.control_socket.clone(),
            "pantavisor/pv-ctrl",
            false,
        )];
        if let Some(log) = &p.log_socket {
            binds.push(file_bind(log.clone(), "pantavisor/pv-ctrl-log", true));
        }
        binds.push(own(p.logs_dir.join(rev).join(name), "pantavisor/logs"));
        binds.push(own(
            p.run_dir.join(format!("user-meta.{name}")),
            "pantavisor/user-meta",
        ));
        binds.push(own(
            p.run_dir.join(format!("device-meta.{name}")),
            "pantavisor/device-meta",
        ));
        PvView { binds }
    }
}

fn file_bind(source: PathBuf, target: &str, optional: bool) -> ViewBind {
    ViewBind {
        source,
        target: target.to_string(),
        kind: BindKind::File,
        read_only: false,
        create_source: false,
        optional,
    }
}

/// Everything needed to start one container.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// Container name: a single path component, also the cgroup leaf by default.
    pub name: String,
    pub rev: String,
    /// The storage root (`/storage`): `disks/` lives under it.
    pub storage: PathBuf,
    /// A directory the runtime owns for this container's mount points (in the host), e.g.
    /// `/run/tern/containers/<name>`; created by launch, removed by teardown.
    pub work_dir: PathBuf,
    pub rootfs: RootFs,
    /// argv of the init; a bare name is looked up in the container's `PATH`.
    pub init: Vec<String>,
    pub cwd: Option<String>,
    pub env: Vec<(String, String)>,
    /// `None`: the container's name (as Pantavisor does when `lxc.uts.name` is absent).
    pub hostname: Option<String>,
    pub mounts: Vec<MountEntry>,
    pub volumes: Vec<Volume>,
    pub network: Network,
    /// Stay in the host's IPC namespace (`lxc.namespace.keep = ipc`).
    pub host_ipc: bool,
    pub sysfs: Sysfs,
    /// Default `<storage>/logs/<rev>/<name>/lxc/console.log`, where Pantavisor keeps it.
    pub console_log: PathBuf,
    /// Rotation cap of the console log in bytes (0: never rotate).
    pub console_cap: u64,
    pub view: PvView,
    /// Parent of the container's cgroup, relative to the hierarchy root.
    pub cgroup_parent: String,
    pub cgroup_name: String,
    pub mode: ModeRequest,
}

impl LaunchSpec {
    /// A spec with Pantavisor's defaults: boot-persistent overlay, `/sbin/init`, host network,
    /// private IPC, read-only sysfs, no view, a 2 MiB console cap, automatic mode.
    pub fn new(name: &str, rev: &str, storage: &Path, work_dir: &Path, root: RootSource) -> Self {
        LaunchSpec {
            name: name.to_string(),
            rev: rev.to_string(),
            storage: storage.to_path_buf(),
            work_dir: work_dir.to_path_buf(),
            rootfs: RootFs {
                source: root,
                persistence: Persistence::Boot,
            },
            init: vec!["/sbin/init".to_string()],
            cwd: None,
            env: Vec::new(),
            hostname: None,
            mounts: Vec::new(),
            volumes: Vec::new(),
            network: Network::Host,
            host_ipc: false,
            sysfs: Sysfs::ReadOnly,
            console_log: storage
                .join("logs")
                .join(rev)
                .join(name)
                .join("lxc/console.log"),
            console_cap: 2 * 1024 * 1024,
            view: PvView::default(),
            cgroup_parent: DEFAULT_CGROUP_PARENT.to_string(),
            cgroup_name: name.to_string(),
            mode: ModeRequest::Auto,
        }
    }

    /// Takes what an `lxc.container.conf` says: init, cwd, environment (bare keys take the
    /// host's value), hostname, mount entries, kept namespaces (net, ipc), `sys` auto-mount.
    pub fn apply_conf(&mut self, conf: &LxcConf) {
        if let Some(cmd) = &conf.init_cmd {
            self.init = cmd.clone();
        }
        if conf.init_cwd.is_some() {
            self.cwd = conf.init_cwd.clone();
        }
        for (k, v) in &conf.environment {
            let value = v.clone().or_else(|| std::env::var(k).ok());
            if let Some(value) = value {
                self.env.retain(|(ek, _)| ek != k);
                self.env.push((k.clone(), value));
            }
        }
        if conf.uts_name.is_some() {
            self.hostname = conf.uts_name.clone();
        }
        self.mounts.extend(conf.mount_entries.iter().cloned());
        self.network = if conf.keeps_namespace("net") {
            Network::Host
        } else {
            Network::Private
        };
        self.host_ipc = conf.keeps_namespace("ipc");
        if !conf.mount_auto.is_empty() {
            self.sysfs = match conf.mount_auto_sys() {
                None => Sysfs::None,
                Some("sys:rw") => Sysfs::ReadWrite,
                Some(_) => Sysfs::ReadOnly,
            };
        }
    }

    /// The container's hostname: the spec's, else its name.
    pub fn effective_hostname(&self) -> &str {
        self.hostname.as_deref().unwrap_or(&self.name)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn paths() -> PvPaths {
        PvPaths {
            run_dir: "/run/pv".into(),
            control_socket: "/run/pv/pv-ctrl".into(),
            log_socket: Some("/run/pv/pv-ctrl-log".into()),
            logs_dir: "/storage/logs".into(),
        }
    }

    #[test]
    fn disks_follow_pantavisor_layout() {
        let s = Path::new("/storage");
        assert_eq!(
            disk_dir(s, Persistence::Permanent, "3", "nginx", "lxc-overlay").unwrap(),
            Path::new("/storage/disks/perm/nginx/lxc-overlay")
        );
        assert_eq!(
            disk_dir(
                s,
                Persistence::Revision,
                "locals/dev",
                "nginx",
                "docker-etc"
            )
            .unwrap(),
            Path::new("/storage/disks/rev/locals/dev/nginx/docker-etc")
        );
        assert!(disk_dir(s, Persistence::Boot, "3", "nginx", "x").is_none());
    }

    #[test]
    fn mgmt_view_is_the_whole_run_dir_read_only() {
        let v = PvView::mgmt(&paths());
        assert_eq!(v.binds[0].source, Path::new("/run/pv"));
        assert_eq!(v.binds[0].target, "pantavisor");
        assert!(v.binds[0].read_only && !v.binds[0].optional);
        assert!(v.binds.iter().all(|b| b.target != "pantavisor/pv-ctrl"));
    }

    #[test]
    fn restricted_view_has_only_sockets_own_logs_and_own_meta() {
        let v = PvView::restricted(&paths(), "app", "5");
        let targets: Vec<_> = v.binds.iter().map(|b| b.target.as_str()).collect();
        assert_eq!(
            targets,
            vec![
                "pantavisor/pv-ctrl",
                "pantavisor/pv-ctrl-log",
                "pantavisor/logs",
                "pantavisor/user-meta",
                "pantavisor/device-meta"
            ]
        );
        assert_eq!(v.binds[0].kind, BindKind::File);
        assert_eq!(v.binds[2].source, Path::new("/storage/logs/5/app"));
        assert_eq!(v.binds[3].source, Path::new("/run/pv/user-meta.app"));
        assert!(v.binds[3].read_only && v.binds[3].create_source);
    }

    #[test]
    fn pvr_default_conf_keeps_host_net_and_ipc_and_rw_sys() {
        let conf = LxcConf::parse(
            "lxc.init.cmd = /bin/app -v\nlxc.namespace.keep = user net ipc\n\
             lxc.mount.auto = proc sys:rw cgroup\nlxc.environment = A=1\nlxc.uts.name = box\n",
        )
        .unwrap();
        let mut s = LaunchSpec::new(
            "app",
            "1",
            Path::new("/s"),
            Path::new("/w"),
            RootSource::Dir("/r".into()),
        );
        s.env.push(("A".into(), "0".into()));
        s.apply_conf(&conf);
        assert_eq!(s.init, vec!["/bin/app", "-v"]);
        assert_eq!(s.network, Network::Host);
        assert!(s.host_ipc);
        assert_eq!(s.sysfs, Sysfs::ReadWrite);
        assert_eq!(s.env, vec![("A".to_string(), "1".to_string())]);
        assert_eq!(s.effective_hostname(), "box");
    }

    #[test]
    fn conf_without_keep_gets_private_net_and_ipc() {
        let conf = LxcConf::parse("lxc.mount.auto = proc\n").unwrap();
        let mut s = LaunchSpec::new(
            "app",
            "1",
            Path::new("/s"),
            Path::new("/w"),
            RootSource::Dir("/r".into()),
        );
        s.apply_conf(&conf);
        assert_eq!(s.network, Network::Private);
        assert!(!s.host_ipc);
        assert_eq!(s.sysfs, Sysfs::None);
        assert_eq!(s.effective_hostname(), "app");
    }
}
