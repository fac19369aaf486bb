//! The host side of a container's root: the boot tmpfs, the squashfs on its loop device, the
//! overlay, the persistent disks; and [`MountPlan`], the record that undoes them.
//!
//! Everything here happens in the daemon's mount namespace before the child exists. It never
//! removes a directory recursively (a failed unmount must not turn into deleted user data):
//! teardown only `rmdir`s the mount points it created.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::cgroup::ContainerCgroup;
use super::error::RuntimeError;
use super::loopdev::{self, LoopRecord};
use super::spec::{LaunchSpec, Persistence, RootSource, disk_dir};

/// What a container holds on the host, in the order it was made; [`super::teardown`] undoes
/// it in reverse. Teardown is idempotent: what it undid is forgotten.
#[derive(Debug, Default)]
pub struct MountPlan {
    pub(crate) mounts: Vec<PathBuf>,
    pub(crate) loop_dev: Option<LoopRecord>,
    pub(crate) cgroup: Option<ContainerCgroup>,
    /// Directories created for mount points, parents first.
    pub(crate) dirs: Vec<PathBuf>,
    pub(crate) root: Option<PathBuf>,
}

impl MountPlan {
    /// The host mount points still held, in mount order.
    pub fn mount_points(&self) -> &[PathBuf] {
        &self.mounts
    }

    /// The loop device of the root volume, while attached by this plan.
    pub fn loop_device(&self) -> Option<&Path> {
        self.loop_dev.as_ref().map(|r| r.path.as_path())
    }

    pub fn cgroup(&self) -> Option<&ContainerCgroup> {
        self.cgroup.as_ref()
    }

    /// The merged root the container pivots into.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// True once teardown has released everything.
    pub fn is_released(&self) -> bool {
        self.mounts.is_empty()
            && self.loop_dev.is_none()
            && self.cgroup.is_none()
            && self.dirs.is_empty()
    }

    fn mkdir(&mut self, dir: PathBuf) -> Result<(), RuntimeError> {
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {
                self.dirs.push(dir);
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(RuntimeError::io(format!("create {}", dir.display()))(e)),
        }
    }

    fn mount(
        &mut self,
        source: &Path,
        target: &Path,
        fstype: &str,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), RuntimeError> {
        mount(Some(source), target, Some(fstype), flags, data).map_err(RuntimeError::sys(
            format!("mount {fstype} on {}", target.display()),
        ))?;
        self.mounts.push(target.to_path_buf());
        Ok(())
    }
}

/// Host directories of the container's volumes, keyed by the `/volumes/<name>/<key>` prefix
/// pvr's mount entries use.
pub type VolumeDirs = Vec<(String, PathBuf)>;

/// Mounts the root (and creates the volume directories) for an isolated container; returns
/// the merged root. On error, what was done is recorded in `plan` for the caller to undo.
pub fn prepare(
    spec: &LaunchSpec,
    plan: &mut MountPlan,
) -> Result<(PathBuf, VolumeDirs), RuntimeError> {
    let work = &spec.work_dir;
    if let Some(parent) = work.parent() {
        fs::create_dir_all(parent)
            .map_err(RuntimeError::io(format!("create {}", parent.display())))?;
    }
    plan.mkdir(work.clone())?;

    let any_boot = spec.rootfs.persistence == Persistence::Boot
        || spec
            .volumes
            .iter()
            .any(|v| v.persistence == Persistence::Boot);
    let boot = work.join("boot");
    if any_boot {
        plan.mkdir(boot.clone())?;
        plan.mount(
            Path::new("tmpfs"),
            &boot,
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755"),
        )?;
    }
    let storage_dir = |persistence: Persistence, key: &str| {
        disk_dir(&spec.storage, persistence, &spec.rev, &spec.name, key)
            .unwrap_or_else(|| boot.join(key))
    };

    let lower = match &spec.rootfs.source {
        RootSource::Dir(dir) => dir.clone(),
        RootSource::Squashfs(image) => {
            let lower = work.join("lower");
            plan.mkdir(lower.clone())?;
            let attached = loopdev::attach_read_only(image)?;
            plan.loop_dev = Some(attached.record.clone());
            plan.mount(
                &attached.record.path,
                &lower,
                "squashfs",
                MsFlags::MS_RDONLY,
                None,
            )?;
            drop(attached.open); // the mount now holds the device; autoclear frees it after
            lower
        }
    };

    let overlay = storage_dir(spec.rootfs.persistence, "lxc-overlay");
    let (upper, olwork) = (overlay.join("upper"), overlay.join("olwork"));
    for d in [&upper, &olwork] {
        fs::create_dir_all(d).map_err(RuntimeError::io(format!("create {}", d.display())))?;
    }
    let root = work.join("root");
    plan.mkdir(root.clone())?;
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        overlay_path(&lower)?,
        overlay_path(&upper)?,
        overlay_path(&olwork)?
    );
    plan.mount(
        Path::new("overlay"),
        &root,
        "overlay",
        MsFlags::empty(),
        Some(&data),
    )?;
    plan.root = Some(root.clone());

    let mut volumes = Vec::new();
    for v in &spec.volumes {
        let dir = storage_dir(v.persistence, &v.key);
        fs::create_dir_all(&dir).map_err(RuntimeError::io(format!("create {}", dir.display())))?;
        volumes.push((format!("/volumes/{}/{}", spec.name, v.key), dir));
    }
    Ok((root, volumes))
}

/// Overlay options are comma- and colon-separated: paths holding either are refused.
fn overlay_path(p: &Path) -> Result<String, RuntimeError> {
    let s = p
        .to_str()
        .ok_or_else(|| RuntimeError::InvalidSpec(format!("non UTF-8 path {}", p.display())))?;
    if s.contains([',', ':', '\\']) {
        return Err(RuntimeError::InvalidSpec(format!(
            "overlay path {s:?} holds ',', ':' or '\\'"
        )));
    }
    Ok(s.to_string())
}

/// Undoes a plan: unmounts in reverse (lazily when busy), detaches the loop device if it is
/// still ours, removes the cgroup, removes the mount-point directories. Every step is tried;
/// the failures are reported together.
pub fn teardown(plan: &mut MountPlan) -> Result<(), RuntimeError> {
    let mut failed = Vec::new();
    while let Some(target) = plan.mounts.pop() {
        match umount2(&target, MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => {}
            Err(Errno::EBUSY) => {
                if let Err(e) = umount2(&target, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
                    failed.push(format!("detach {}: {}", target.display(), e.desc()));
                }
            }
            Err(e) => failed.push(format!("unmount {}: {}", target.display(), e.desc())),
        }
    }
    if let Some(record) = plan.loop_dev.take()
        && let Err(e) = loopdev::detach(&record)
    {
        failed.push(e.to_string());
    }
    if let Some(cg) = plan.cgroup.take()
        && let Err(e) = cg.remove()
    {
        failed.push(e.to_string());
        plan.cgroup = Some(cg); // still there: a later teardown may succeed
    }
    while let Some(dir) = plan.dirs.pop() {
        match fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => failed.push(format!("remove {}: {e}", dir.display())),
        }
    }
    plan.root = None;
    if failed.is_empty() {
        Ok(())
    } else {
        Err(RuntimeError::Teardown(failed))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn overlay_refuses_separator_characters() {
        assert!(overlay_path(Path::new("/a/b")).is_ok());
        assert!(overlay_path(Path::new("/a,b")).is_err());
        assert!(overlay_path(Path::new("/a:b")).is_err());
    }

    #[test]
    fn empty_plan_tears_down_to_released() {
        let mut plan = MountPlan::default();
        assert!(teardown(&mut plan).is_ok());
        assert!(plan.is_released());
    }
}
