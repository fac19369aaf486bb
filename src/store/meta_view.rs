//! Metadata as files in the run dir, the way containers read it: `<rundir>/user-meta/<key>`
//! for every key, and a key `<name>.<rest>` also as `<rundir>/user-meta.<name>/<rest>`, the
//! directory container `<name>` sees at `/pantavisor/user-meta` (the same for `device-meta`).
//!
//! The run dir is a tmpfs on devices and this is a view of the durable stores, so files are
//! replaced atomically (temp + rename: a reader never sees half a value) but not fsynced; the
//! view is rebuilt from the stores at every start.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub struct MetaView {
    run_dir: PathBuf,
    /// `user-meta` or `device-meta`.
    prefix: &'static str,
}

impl MetaView {
    pub fn new(run_dir: &Path, prefix: &'static str) -> MetaView {
        MetaView {
            run_dir: run_dir.to_path_buf(),
            prefix,
        }
    }

    /// The files of `key`: the flat one, and the container's one when the key names it.
    fn paths(&self, key: &str) -> Vec<PathBuf> {
        let mut out = vec![self.run_dir.join(self.prefix).join(key)];
        if let Some((owner, rest)) = key.split_once('.')
            && !owner.is_empty()
            && !rest.is_empty()
        {
            out.push(
                self.run_dir
                    .join(format!("{}.{owner}", self.prefix))
                    .join(rest),
            );
        }
        out
    }

    pub fn set(&self, key: &str, value: &str) -> io::Result<()> {
        for path in self.paths(key) {
            let Some(dir) = path.parent() else { continue };
            fs::create_dir_all(dir)?;
            let tmp = dir.join(format!(".tmp-{key}"));
            let mut f = fs::File::create(&tmp)?;
            f.write_all(value.as_bytes())?;
            drop(f);
            fs::rename(&tmp, &path)?;
        }
        Ok(())
    }

    pub fn remove(&self, key: &str) -> io::Result<()> {
        for path in self.paths(key) {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Empty the view's directories and write every entry.
    pub fn rebuild<'a>(&self, entries: impl Iterator<Item = (&'a str, &'a str)>) -> io::Result<()> {
        let dotted = format!("{}.", self.prefix);
        if let Ok(dir) = fs::read_dir(&self.run_dir) {
            for e in dir.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if *name == *self.prefix || name.starts_with(&dotted) {
                    clear_dir(&e.path())?;
                }
            }
        }
        fs::create_dir_all(self.run_dir.join(self.prefix))?;
        for (k, v) in entries {
            self.set(k, v)?;
        }
        Ok(())
    }
}

/// Removes the files of `dir`, keeping the directory itself (it may be a mount point inside
/// a running container's view).
fn clear_dir(dir: &Path) -> io::Result<()> {
    for e in fs::read_dir(dir)?.flatten() {
        if e.file_type().is_ok_and(|t| t.is_file()) {
            fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tern-metaview-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn keys_land_flat_and_per_container() {
        let d = tmp("set");
        let v = MetaView::new(&d, "user-meta");
        v.set("color", "blue").unwrap();
        v.set("app.mode", "eco").unwrap();
        assert_eq!(
            fs::read_to_string(d.join("user-meta/color")).unwrap(),
            "blue"
        );
        assert_eq!(
            fs::read_to_string(d.join("user-meta/app.mode")).unwrap(),
            "eco"
        );
        assert_eq!(
            fs::read_to_string(d.join("user-meta.app/mode")).unwrap(),
            "eco"
        );
        v.remove("app.mode").unwrap();
        assert!(!d.join("user-meta.app/mode").exists());
        assert!(!d.join("user-meta/app.mode").exists());
        v.remove("never-set").unwrap();
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn rebuild_drops_stale_files_and_keeps_directories() {
        let d = tmp("rebuild");
        let v = MetaView::new(&d, "device-meta");
        v.set("old.key", "x").unwrap();
        v.rebuild([("new", "1"), ("c.k", "2")].into_iter()).unwrap();
        assert!(!d.join("device-meta/old.key").exists());
        assert!(d.join("device-meta.old").is_dir());
        assert!(!d.join("device-meta.old/key").exists());
        assert_eq!(fs::read_to_string(d.join("device-meta.c/k")).unwrap(), "2");
        assert!(!d.join("user-meta").exists());
        fs::remove_dir_all(d).unwrap();
    }
}
