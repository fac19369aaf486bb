//! [`launch`]: from a [`LaunchSpec`] to a running init, without waiting for it.
//!
//! It chooses the mode, makes the console pipe and the cgroup, then either mounts the root and
//! clones the isolated init, or clones a plain process (both through [`super::child`]). Any
//! failure undoes what was done before returning. It never waits for the child to run: the
//! child is released by one byte on a pipe once it is in its cgroup, and its progress is only
//! ever seen through the console and SIGCHLD.

use std::fs::{self, OpenOptions};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sched::CloneFlags;
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::waitpid;
use nix::unistd::{Pid, pipe2, write};

use super::caps::{Capabilities, choose_mode};
use super::cgroup::ContainerCgroup;
use super::child::{self, ChildFds, ChildPlan};
use super::console_log::LogFile;
use super::error::RuntimeError;
use super::mounts::{self, MountPlan, VolumeDirs};
use super::plan::{self, Step};
use super::spec::{LaunchSpec, Mode, Network};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A started container: what the loop watches and what stop and teardown need.
#[derive(Debug)]
pub struct Launched {
    /// The init's pid in the daemon's pid namespace (reap it with waitpid).
    pub pid: Pid,
    pub mode: Mode,
    /// Why the mode is `Process`, when it is.
    pub fallback_reason: Option<String>,
    /// Read end of the console pipe, non-blocking: readable means [`LogFile::pump`].
    pub console: OwnedFd,
    pub log: LogFile,
    /// What to undo once the container is empty ([`super::teardown`]).
    pub plan: MountPlan,
}

impl Launched {
    /// SIGKILL to everything of the container: its cgroup, else its process group (process
    /// mode), else its init.
    pub fn kill_all(&self) -> Result<(), RuntimeError> {
        if let Some(cg) = self.plan.cgroup() {
            return cg.kill_all();
        }
        let r = match self.mode {
            Mode::Process => killpg(self.pid, Signal::SIGKILL),
            Mode::Isolated => kill(self.pid, Signal::SIGKILL),
        };
        match r {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(RuntimeError::sys(format!("kill {}", self.pid))(e)),
        }
    }

    /// True when no process of the container is left (a zombie init not yet reaped still
    /// counts in process mode without a cgroup).
    pub fn is_empty(&self) -> Result<bool, RuntimeError> {
        match self.plan.cgroup() {
            Some(cg) => cg.is_empty(),
            None => Ok(killpg(self.pid, None).is_err() && kill(self.pid, None).is_err()),
        }
    }
}

/// Starts the container `spec` describes on a host with `caps` (usually
/// [`super::capabilities`]).
pub fn launch(spec: &LaunchSpec, caps: &Capabilities) -> Result<Launched, RuntimeError> {
    validate(spec)?;
    let (mode, fallback_reason) = choose_mode(spec.mode, caps, &spec.rootfs.source)?;
    let (console_r, console_w) =
        pipe2(OFlag::O_CLOEXEC).map_err(RuntimeError::sys("console pipe"))?;
    fcntl(&console_r, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
        .map_err(RuntimeError::sys("console pipe"))?;
    let console_w = above_stdio(console_w)?;

    let mut plan = MountPlan::default();
    if caps.root {
        plan.cgroup = ContainerCgroup::locate(&caps.cgroup, &spec.cgroup_parent, &spec.cgroup_name);
    }
    let started = match &plan.cgroup {
        Some(cg) => cg.create(),
        None => Ok(false),
    }
    .and_then(|fresh_cgroup| match mode {
        Mode::Process => plain(spec, &plan, console_w, fresh_cgroup),
        Mode::Isolated => isolated(spec, &mut plan, console_w, fresh_cgroup),
    });
    match started {
        Ok(pid) => Ok(Launched {
            pid,
            mode,
            fallback_reason,
            console: console_r,
            log: LogFile::new(spec.console_log.clone(), spec.console_cap),
            plan,
        }),
        Err(e) => {
            let _ = mounts::teardown(&mut plan);
            Err(e)
        }
    }
}

/// The isolated container: its root mounted, then its init cloned into new namespaces.
fn isolated(
    spec: &LaunchSpec,
    plan: &mut MountPlan,
    console_w: OwnedFd,
    fresh_cgroup: bool,
) -> Result<Pid, RuntimeError> {
    let (root, volumes) = mounts::prepare(spec, plan)?;
    let steps = steps(spec, &volumes)?;
    let root = root
        .to_str()
        .ok_or_else(|| RuntimeError::InvalidSpec("non UTF-8 work dir".into()))?;
    let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWUTS;
    if !spec.host_ipc {
        flags |= CloneFlags::CLONE_NEWIPC;
    }
    if spec.network == Network::Private {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    clone_released(plan, console_w, fresh_cgroup, flags, |fds| {
        ChildPlan::new(
            root,
            &steps,
            spec.effective_hostname(),
            spec.cwd.as_deref(),
            &exec_candidates(spec),
            &spec.init,
            &spec.env,
            spec.network == Network::Private,
            fds,
        )
    })
}

/// Process mode: the init as a plain child of the daemon, in its own session and process
/// group, with the spec's environment (plus `TERN_CTRL_SOCKET`: it has no `/pantavisor`
/// view) and the conf's working directory where the host has it.
fn plain(
    spec: &LaunchSpec,
    plan: &MountPlan,
    console_w: OwnedFd,
    fresh_cgroup: bool,
) -> Result<Pid, RuntimeError> {
    let mut env = spec.env.clone();
    if let Some(socket) = control_socket(spec) {
        env.retain(|(k, _)| k != "TERN_CTRL_SOCKET");
        env.push((
            "TERN_CTRL_SOCKET".into(),
            socket.to_string_lossy().into_owned(),
        ));
    }
    let cwd = spec.cwd.as_deref().filter(|c| Path::new(c).is_dir());
    clone_released(plan, console_w, fresh_cgroup, CloneFlags::empty(), |fds| {
        ChildPlan::plain(cwd, &exec_candidates(spec), &spec.init, &env, fds)
    })
}

/// The host path of the control socket the container's view would show (process mode has
/// no view; its init gets the path in `TERN_CTRL_SOCKET`).
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

/// Clones the init as `build` plans it, puts it in the container's cgroup, and releases it
/// through the sync pipe. Never waits for it: the loop sees its progress only through the
/// console and SIGCHLD.
///
/// `fresh_cgroup`: the cgroup was just created. Only then is the init cloned straight into
/// it: a cgroup left busy by a previous run may have been through `cgroup.kill`, and a kernel
/// can then kill a child cloned into it with CLONE_INTO_CGROUP at birth (seen on 6.18: it
/// compares the kill counter of the cloning process's cgroup with the target's).
fn clone_released(
    plan: &MountPlan,
    console_w: OwnedFd,
    fresh_cgroup: bool,
    flags: CloneFlags,
    build: impl FnOnce(ChildFds) -> Result<ChildPlan, RuntimeError>,
) -> Result<Pid, RuntimeError> {
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/null")
        .map_err(RuntimeError::io("open /dev/null"))?;
    let null = above_stdio(OwnedFd::from(null))?;
    let (sync_r, sync_w) = pipe2(OFlag::O_CLOEXEC).map_err(RuntimeError::sys("sync pipe"))?;
    let sync_r = above_stdio(sync_r)?;
    let child_plan = build(ChildFds {
        console: console_w.as_raw_fd(),
        null: null.as_raw_fd(),
        sync: sync_r.as_raw_fd(),
    })?;
    let cgroup_dir = plan
        .cgroup
        .as_ref()
        .filter(|_| fresh_cgroup)
        .and_then(ContainerCgroup::open_v2_dir);
    let (pid, born_in_cgroup) = child::spawn(
        &child_plan,
        flags,
        cgroup_dir.as_ref().map(AsRawFd::as_raw_fd),
    )?;
    drop((sync_r, null, console_w, cgroup_dir));
    let released = match &plan.cgroup {
        Some(cg) if !born_in_cgroup => cg.add(pid),
        _ => Ok(()),
    }
    .and_then(|()| {
        write(&sync_w, &[1])
            .map(drop)
            .map_err(RuntimeError::sys("release container init"))
    });
    if let Err(e) = released {
        // The child is blocked on the sync pipe: it dies at once and is reaped here.
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
        return Err(e);
    }
    Ok(pid)
}

/// Base mounts, then the conf's entries, then the `/pantavisor` view.
fn steps(spec: &LaunchSpec, volumes: &VolumeDirs) -> Result<Vec<Step>, RuntimeError> {
    for b in spec.view.binds.iter().filter(|b| b.create_source) {
        fs::create_dir_all(&b.source)
            .map_err(RuntimeError::io(format!("create {}", b.source.display())))?;
    }
    let resolve = |p: &str| host_path(p, volumes);
    let mut steps = plan::base_steps(spec.sysfs);
    for entry in &spec.mounts {
        steps.extend(plan::entry_steps(entry, &resolve).map_err(RuntimeError::InvalidSpec)?);
    }
    steps.extend(plan::view_steps(&spec.view.binds, &resolve).map_err(RuntimeError::Missing)?);
    Ok(steps)
}

/// The canonical host path of a bind source, with `/volumes/<name>/<key>` mapped to the
/// volume's disk; `None` when it does not exist or is not absolute.
fn host_path(source: &str, volumes: &VolumeDirs) -> Option<String> {
    let mapped = volumes
        .iter()
        .find_map(|(prefix, dir)| {
            let rest = source.strip_prefix(prefix.as_str())?;
            (rest.is_empty() || rest.starts_with('/'))
                .then(|| dir.join(rest.trim_start_matches('/')))
        })
        .unwrap_or_else(|| PathBuf::from(source));
    if !mapped.is_absolute() {
        return None;
    }
    let canonical = fs::canonicalize(mapped).ok()?;
    canonical.to_str().map(str::to_string)
}

/// argv[0] as is when it holds a `/`, else each directory of the spec's PATH (or the
/// default one) joined with it.
fn exec_candidates(spec: &LaunchSpec) -> Vec<String> {
    let Some(cmd) = spec.init.first() else {
        return Vec::new();
    };
    if cmd.contains('/') {
        return vec![cmd.clone()];
    }
    let path = spec
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or(DEFAULT_PATH, |(_, v)| v.as_str());
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| format!("{}/{cmd}", d.trim_end_matches('/')))
        .collect()
}

fn validate(spec: &LaunchSpec) -> Result<(), RuntimeError> {
    let component = |what: &str, s: &str| {
        let ok = !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\0']);
        if ok {
            Ok(())
        } else {
            Err(RuntimeError::InvalidSpec(format!(
                "{what} {s:?} is not a plain name"
            )))
        }
    };
    component("container name", &spec.name)?;
    component("cgroup name", &spec.cgroup_name)?;
    if Path::new(&spec.rev)
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
        || spec.rev.is_empty()
    {
        return Err(RuntimeError::InvalidSpec(format!(
            "revision {:?} is not a relative path",
            spec.rev
        )));
    }
    if !spec.work_dir.is_absolute() {
        return Err(RuntimeError::InvalidSpec(format!(
            "work dir {} is not absolute",
            spec.work_dir.display()
        )));
    }
    if spec.init.is_empty() || spec.init[0].is_empty() {
        return Err(RuntimeError::InvalidSpec("empty init command".into()));
    }
    Ok(())
}

/// Moves a descriptor above 0–2 so that wiring the child's stdio cannot clobber it.
fn above_stdio(fd: OwnedFd) -> Result<OwnedFd, RuntimeError> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // std duplicates with F_DUPFD_CLOEXEC from 3 upwards.
    fd.try_clone()
        .map_err(RuntimeError::io("duplicate descriptor"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::runtime::spec::RootSource;

    fn spec() -> LaunchSpec {
        LaunchSpec::new(
            "app",
            "1",
            Path::new("/s"),
            Path::new("/w"),
            RootSource::Dir("/r".into()),
        )
    }

    #[test]
    fn bare_init_is_searched_in_the_spec_path() {
        let mut s = spec();
        s.init = vec!["sh".into()];
        s.env = vec![("PATH".into(), "/bin:/usr/bin/".into())];
        assert_eq!(exec_candidates(&s), vec!["/bin/sh", "/usr/bin/sh"]);
        s.init = vec!["/sbin/init".into()];
        assert_eq!(exec_candidates(&s), vec!["/sbin/init"]);
    }

    #[test]
    fn names_revisions_and_init_are_validated() {
        let mut s = spec();
        assert!(validate(&s).is_ok());
        s.name = "../x".into();
        assert!(validate(&s).is_err());
        let mut s = spec();
        s.rev = "locals/dev".into();
        assert!(validate(&s).is_ok());
        s.rev = "../1".into();
        assert!(validate(&s).is_err());
        let mut s = spec();
        s.init.clear();
        assert!(validate(&s).is_err());
    }

    #[test]
    fn volume_sources_map_to_their_disks() {
        let tmp = std::env::temp_dir().join(format!("tern-hostpath-{}", std::process::id()));
        fs::create_dir_all(tmp.join("etc-nginx/conf.d")).unwrap();
        let vols = vec![(
            "/volumes/app/docker-etc-nginx".to_string(),
            tmp.join("etc-nginx"),
        )];
        let canon = fs::canonicalize(&tmp).unwrap();
        assert_eq!(
            host_path("/volumes/app/docker-etc-nginx/conf.d", &vols).unwrap(),
            canon.join("etc-nginx/conf.d").to_str().unwrap()
        );
        assert!(host_path("/volumes/app/docker-etc-nginxx", &vols).is_none());
        assert!(host_path("relative/path", &vols).is_none());
        fs::remove_dir_all(tmp).unwrap();
    }
}
