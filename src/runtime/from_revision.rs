//! From a container of a parsed revision to the [`LaunchSpec`] that starts it: the object
//! files behind `root-volume` and `config`, the overlay and volumes from `storage`, the role's
//! view of the daemon, and the host's choices (mode, console cap, stop grace live elsewhere).
//!
//! It reads one small file (the `lxc.container.conf` object) and nothing else.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::lxc_conf::LxcConf;
use super::spec::{
    BindKind, LaunchSpec, ModeRequest, Persistence, PvPaths, PvView, RootSource, ViewBind, Volume,
};
use crate::spec::{self, Container, State};

/// An `lxc.container.conf` larger than this is refused (they are a few hundred bytes).
const MAX_CONF_BYTES: u64 = 64 * 1024;

/// The host side of every container of a revision.
#[derive(Debug, Clone)]
pub struct Host {
    pub storage: PathBuf,
    pub objects: PathBuf,
    /// Under it each container gets its own directory for its root and overlay mounts
    /// (`<rundir>/containers/<name>`).
    pub work_dir: PathBuf,
    pub paths: PvPaths,
    pub mode: ModeRequest,
    pub console_cap: u64,
    /// Added to every container's environment (the v1 API's address and key).
    pub env: Vec<(String, String)>,
}

/// The file behind artifact `<container dir>/<name>` of the state.
fn object_of(state: &State, host: &Host, c: &Container, name: &str) -> Result<PathBuf, String> {
    let artifact = format!("{}/{}", c.dir, name);
    let sha = state
        .objects
        .iter()
        .find(|(p, _)| *p == artifact)
        .map(|(_, sha)| sha)
        .ok_or_else(|| format!("{artifact} is not an object of the revision"))?;
    let path = host.objects.join(sha);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("object {sha} ({artifact}) is missing"))
    }
}

/// Whether every object the container needs to start is in storage (what `Mount` checks).
pub fn check_objects(state: &State, host: &Host, c: &Container) -> Result<(), String> {
    if let Some(root) = &c.root_volume {
        object_of(state, host, c, root_name(root))?;
    }
    if let Some(conf) = &c.config {
        object_of(state, host, c, conf)?;
    }
    Ok(())
}

/// `dm:root.squashfs` names a dm-verity volume; Tern mounts its data device directly.
fn root_name(root_volume: &str) -> &str {
    root_volume.strip_prefix("dm:").unwrap_or(root_volume)
}

fn persistence(p: spec::Persistence) -> Persistence {
    match p {
        spec::Persistence::Permanent => Persistence::Permanent,
        spec::Persistence::Revision => Persistence::Revision,
        spec::Persistence::Boot => Persistence::Boot,
    }
}

fn read_conf(path: &Path) -> Result<LxcConf, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_CONF_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if text.len() as u64 > MAX_CONF_BYTES {
        return Err(format!("{} is over {MAX_CONF_BYTES} bytes", path.display()));
    }
    LxcConf::parse(&text).map_err(|e| e.to_string())
}

/// The spec that starts `c` of revision `rev`.
pub fn launch_spec(
    state: &State,
    rev: &str,
    c: &Container,
    host: &Host,
) -> Result<LaunchSpec, String> {
    let root = match &c.root_volume {
        Some(r) => RootSource::Squashfs(object_of(state, host, c, root_name(r))?),
        None => return Err("no root-volume".into()),
    };
    let work_dir = host.work_dir.join(&c.name);
    let mut spec = LaunchSpec::new(&c.name, rev, &host.storage, &work_dir, root);
    if let Some(conf) = &c.config {
        let conf = read_conf(&object_of(state, host, c, conf)?)?;
        if !conf.ignored.is_empty() {
            log::debug!("{}: lxc keys not interpreted: {:?}", c.name, conf.ignored);
        }
        spec.apply_conf(&conf);
    }
    for s in &c.storage {
        if s.path == "lxc-overlay" {
            spec.rootfs.persistence = persistence(s.persistence);
        } else {
            spec.volumes.push(Volume {
                key: s.path.clone(),
                persistence: persistence(s.persistence),
            });
        }
    }
    spec.view = if c.mgmt {
        PvView::mgmt(&host.paths)
    } else {
        PvView::restricted(&host.paths, &c.name, rev)
    };
    // balena's update locks: one host directory per container, seen inside at both the
    // balena and the resin path.
    let locks = host.paths.run_dir.join("locks").join(&c.name);
    for target in ["tmp/balena", "tmp/resin"] {
        spec.view.binds.push(ViewBind {
            source: locks.clone(),
            target: target.to_string(),
            kind: BindKind::Dir,
            read_only: false,
            create_source: true,
            optional: true,
        });
    }
    for (k, v) in &host.env {
        spec.env.retain(|(ek, _)| ek != k);
        spec.env.push((k.clone(), v.clone()));
    }
    spec.console_cap = host.console_cap;
    spec.mode = host.mode;
    Ok(spec)
}
