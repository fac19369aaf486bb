//! The one way Tern makes a write durable: temp file in the same directory, write, fsync,
//! rename over the target, fsync the directory. Rename alone is atomic but not durable until
//! the directory is synced, and UBIFS/JFFS2 (what routers run) do not paper over a missing
//! fsync the way ext4 does. Every temp name starts with [`TMP_PREFIX`] so start-up can find
//! and remove what a crash left behind.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::crash_points;

/// Prefix of every temporary file or directory the store creates.
pub const TMP_PREFIX: &str = ".tmp-";

// usize, not u64: 32-bit MIPS has no 64-bit atomics (the name is also made unique by the pid
// and opened with create_new, so a wrap on 32-bit targets is harmless).
static TMP_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh temp path beside `target` (same directory, so the rename is atomic).
pub fn temp_path_for(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let seq = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
    let dir = target.parent().unwrap_or(Path::new("."));
    dir.join(format!("{TMP_PREFIX}{name}-{}-{seq}", std::process::id()))
}

/// Create a new temp file exclusively (never follows or reuses an existing path).
pub fn create_temp(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
}

pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Atomically and durably replace `target` with `data`.
pub fn write_atomic(target: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = temp_path_for(target);
    let result = (|| {
        let mut f = create_temp(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        commit_temp(&tmp, target)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Durably move a finished (already fsynced) temp file into place.
pub fn commit_temp(tmp: &Path, target: &Path) -> io::Result<()> {
    crash_points::reached("before committing", target);
    fs::rename(tmp, target)?;
    fsync_dir(parent_of(target))?;
    crash_points::reached("committed", target);
    Ok(())
}

/// Atomically and durably point the symlink `link` at `dest`. A symlink cannot be fsynced
/// itself; syncing its directory after creating it is what makes it (and its target text)
/// durable before the rename publishes it.
pub fn replace_symlink(dest: &str, link: &Path) -> io::Result<()> {
    let tmp = temp_path_for(link);
    let dir = parent_of(link);
    std::os::unix::fs::symlink(dest, &tmp)?;
    crash_points::reached("before relinking", link);
    let swapped = fsync_dir(dir).and_then(|()| fs::rename(&tmp, link));
    if let Err(e) = swapped {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fsync_dir(dir)?;
    crash_points::reached("relinked", link);
    Ok(())
}

/// Create a directory (and parents) and make its entry durable in its parent.
pub fn create_dir_durable(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = parent_of(dir).to_path_buf();
    if !parent.is_dir() {
        create_dir_durable(&parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        // Another path created it meanwhile: fine, but only if it is a directory. A file or a
        // dangling symlink in its place must not pass for one (later writes would fail
        // with a confusing ENOTDIR, far from the cause).
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a directory", dir.display()),
            ));
        }
        Err(e) => return Err(e),
    }
    fsync_dir(&parent)
}

/// Remove a directory tree so that a crash half-way never leaves a tree that looks whole:
/// first rename it to a temp name (atomic, durable), then delete at leisure. A crash after the
/// rename leaves only a temp directory, which start-up removes.
pub fn remove_tree_durable(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let tmp = temp_path_for(dir);
    fs::rename(dir, &tmp)?;
    fsync_dir(parent_of(dir))?;
    crash_points::reached("set aside for removal", dir);
    fs::remove_dir_all(&tmp)?;
    crash_points::reached("removed", dir);
    Ok(())
}

/// Remove every leftover temp entry directly inside `dir`. Returns how many were removed.
pub fn remove_leftover_temps(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if !entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            continue;
        }
        let path = entry.path();
        let res = if entry.file_type()?.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        match res {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if removed > 0 {
        fsync_dir(dir)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tern-durable-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
        d
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let d = scratch("replace");
        let f = d.join("progress");
        write_atomic(&f, b"one").unwrap_or_else(|e| panic!("{e}"));
        write_atomic(&f, b"two").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fs::read(&f).unwrap_or_default(), b"two");
        assert_eq!(fs::read_dir(&d).map(|r| r.count()).unwrap_or(0), 1);
    }

    #[test]
    fn leftover_temps_are_removed_and_others_kept() {
        let d = scratch("leftover");
        fs::write(d.join(".tmp-x-1-2"), b"partial").unwrap_or_else(|e| panic!("{e}"));
        fs::create_dir(d.join(".tmp-dir-1-3")).unwrap_or_else(|e| panic!("{e}"));
        fs::write(d.join("keep"), b"k").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(remove_leftover_temps(&d).ok(), Some(2));
        assert!(d.join("keep").exists());
    }

    #[test]
    fn symlink_is_replaced_atomically() {
        let d = scratch("link");
        let l = d.join("current");
        replace_symlink("0", &l).unwrap_or_else(|e| panic!("{e}"));
        replace_symlink("locals/a", &l).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fs::read_link(&l).ok(), Some(PathBuf::from("locals/a")));
    }

    #[test]
    fn create_dir_refuses_a_file_in_its_place() {
        let d = scratch("mkdir");
        let made = d.join("a/b/c");
        create_dir_durable(&made).unwrap_or_else(|e| panic!("{e}"));
        assert!(made.is_dir());
        create_dir_durable(&made).unwrap_or_else(|e| panic!("again: {e}"));
        let file = d.join("file");
        fs::write(&file, b"x").unwrap_or_else(|e| panic!("{e}"));
        let err = create_dir_durable(&file).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("is not a directory")),
            "{err:?}"
        );
        assert!(create_dir_durable(&file.join("under")).is_err());
        std::os::unix::fs::symlink(d.join("nowhere"), d.join("dangling"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(create_dir_durable(&d.join("dangling")).is_err());
    }

    #[test]
    fn removed_tree_is_gone() {
        let d = scratch("rmtree");
        let t = d.join("rev");
        fs::create_dir_all(t.join(".pvr")).unwrap_or_else(|e| panic!("{e}"));
        fs::write(t.join(".pvr/json"), b"{}").unwrap_or_else(|e| panic!("{e}"));
        remove_tree_durable(&t).unwrap_or_else(|e| panic!("{e}"));
        assert!(!t.exists());
        assert_eq!(fs::read_dir(&d).map(|r| r.count()).unwrap_or(9), 0);
    }
}
