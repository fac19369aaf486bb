//! The boot-time object check (`PV_SECUREBOOT_CHECKSUM`, on by default): every object of a
//! revision re-hashed against its sha256 name before the revision runs, unless it was checked
//! whole before and nothing since could have damaged it.
//!
//! When it runs, and why it does not run on every boot:
//! - `trails/<rev>/.pv/verified` is written (durably) after every object of `<rev>` hashed to
//!   its name; it holds a digest of the list of objects checked, so a revision whose state was
//!   replaced since (a re-upload, MAKE_FACTORY) is not taken for checked. A revision without a
//!   matching marker (never booted, replaced, or its last check failed or was cut off) is
//!   checked before it runs.
//! - `<storage>/boot/unclean` exists while a daemon runs: written durably before the boot
//!   decision, removed when the daemon ends cleanly (SIGTERM, reboot, power-off). Found at a
//!   start, the last run ended in a crash or a power cut, so the revision booting is checked
//!   again whatever its marker says (a power cut is when flash loses data under written
//!   files).
//! - Objects never change once renamed into place (they are written whole, hashed while they
//!   stream in), so a clean shutdown gives no reason to hash them again.
//!
//! It runs before the loop starts, as part of the boot decision, and reads each object in
//! 64 KB chunks (memory does not grow with object size). It never decides what runs: the boot
//! code does, with its answer.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::store::durable;
use crate::store::objects::hex;

/// Pantavisor's status message for a revision whose objects do not hash to their names.
pub const MISMATCH: &str = "Object validation went wrong";

const CHUNK: usize = 64 * 1024;

/// What a check hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hashed {
    pub objects: usize,
    pub bytes: u64,
    pub elapsed: Duration,
}

/// The marker of a revision checked whole.
pub fn verified_marker(rev_dir: &Path) -> PathBuf {
    rev_dir.join(".pv/verified")
}

fn unclean_marker(storage: &Path) -> PathBuf {
    storage.join("boot/unclean")
}

/// At start: did the last run end without a clean exit? Then mark this run as running, so a
/// crash of this one is seen by the next start. A marker that cannot be written is logged:
/// the next start then trusts the revision markers alone.
pub fn begin_run(storage: &Path) -> bool {
    let path = unclean_marker(storage);
    let unclean = path.exists();
    let written = path
        .parent()
        .map_or(Ok(()), durable::create_dir_durable)
        .and_then(|()| durable::write_atomic(&path, b""));
    if let Err(e) = written {
        log::error!("checksum: cannot write {}: {e}", path.display());
    }
    unclean
}

/// At a clean exit: the next start need not hash again.
pub fn end_run(storage: &Path) {
    let path = unclean_marker(storage);
    let removed = std::fs::remove_file(&path).and_then(|()| match path.parent() {
        Some(dir) => durable::fsync_dir(dir),
        None => Ok(()),
    });
    if let Err(e) = removed
        && e.kind() != io::ErrorKind::NotFound
    {
        log::warn!("checksum: cannot remove {}: {e}", path.display());
    }
}

/// What the marker holds: a digest of the (name, sha256) list a check covered.
fn list_digest(objects: &[(String, String)]) -> String {
    let mut hasher = Sha256::new();
    for (name, sha) in objects {
        hasher.update(name.as_bytes());
        hasher.update(b" ");
        hasher.update(sha.as_bytes());
        hasher.update(b"\n");
    }
    hex(&hasher.finalize())
}

/// Do the objects of revision `rev_dir` need hashing before it runs?
pub fn needed(rev_dir: &Path, unclean: bool, objects: &[(String, String)]) -> bool {
    unclean
        || std::fs::read(verified_marker(rev_dir))
            .map_or(true, |m| m != list_digest(objects).as_bytes())
}

/// Hash every object of `objects` ((name in the state, sha256)) in `objects_dir`; on success
/// mark `rev_dir` verified. `Err` names the first object that is missing or does not hash to
/// its name; the marker is then removed, so the next boot checks again.
pub fn verify(
    objects_dir: &Path,
    rev_dir: &Path,
    objects: &[(String, String)],
) -> Result<Hashed, String> {
    let started = Instant::now();
    let marker = verified_marker(rev_dir);
    // Gone before the first byte is read: a check cut off half-way is not a check.
    if let Err(e) = std::fs::remove_file(&marker)
        && e.kind() != io::ErrorKind::NotFound
    {
        return Err(format!("cannot remove {}: {e}", marker.display()));
    }
    let mut seen: Vec<&str> = Vec::new();
    let mut bytes = 0;
    for (name, sha) in objects {
        if seen.contains(&sha.as_str()) {
            continue;
        }
        seen.push(sha);
        let path = objects_dir.join(sha);
        let (got, len) = hash_file(&path).map_err(|e| format!("{name} ({sha}): {e}"))?;
        if got != *sha {
            return Err(format!("{name}: objects/{sha} hashes to {got}"));
        }
        bytes += len;
    }
    if let Err(e) = durable::write_atomic(&marker, list_digest(objects).as_bytes()) {
        // Checked, only not remembered: the next boot hashes again.
        log::warn!("checksum: cannot write {}: {e}", marker.display());
    }
    Ok(Hashed {
        objects: seen.len(),
        bytes,
        elapsed: started.elapsed(),
    })
}

/// The sha256 (hex) and length of a file, read in bounded chunks.
pub fn hash_file(path: &Path) -> io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut len = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((hex(&hasher.finalize()), len))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tern-checksum-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("objects")).unwrap();
        std::fs::create_dir_all(d.join("rev/.pv")).unwrap();
        d
    }

    fn put(d: &Path, data: &[u8]) -> String {
        let sha = hex(&Sha256::digest(data));
        std::fs::write(d.join("objects").join(&sha), data).unwrap();
        sha
    }

    #[test]
    fn a_revision_whose_objects_match_is_marked_verified() {
        let d = dir("ok");
        let a = put(&d, b"root volume");
        let b = put(&d, &vec![7u8; 200_000]);
        let objects = vec![
            ("app/root.squashfs".to_string(), a.clone()),
            ("bsp/kernel.img".to_string(), b),
            ("other/root.squashfs".to_string(), a),
        ];
        let rev = d.join("rev");
        assert!(needed(&rev, false, &objects));
        let h = verify(&d.join("objects"), &rev, &objects).unwrap();
        assert_eq!((h.objects, h.bytes), (2, 11 + 200_000));
        assert!(!needed(&rev, false, &objects));
        assert!(
            needed(&rev, true, &objects),
            "an unclean shutdown checks again"
        );
        // The revision's state replaced by one naming other objects: not checked yet.
        assert!(needed(&rev, false, &objects[..1]));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_changed_or_missing_object_is_named_and_unmarks_the_revision() {
        let d = dir("bad");
        let a = put(&d, b"root volume");
        let objects = vec![("app/root.squashfs".to_string(), a.clone())];
        verify(&d.join("objects"), &d.join("rev"), &objects).unwrap();
        std::fs::write(d.join("objects").join(&a), b"root volumf").unwrap();
        let err = verify(&d.join("objects"), &d.join("rev"), &objects).unwrap_err();
        assert!(err.starts_with("app/root.squashfs: objects/"), "{err}");
        assert!(needed(&d.join("rev"), false, &objects));
        std::fs::remove_file(d.join("objects").join(&a)).unwrap();
        let err = verify(&d.join("objects"), &d.join("rev"), &objects).unwrap_err();
        assert!(err.contains("app/root.squashfs"), "{err}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_unclean_marker_lives_from_start_to_clean_exit() {
        let d = dir("unclean");
        assert!(!begin_run(&d), "a first start is clean");
        assert!(
            begin_run(&d),
            "a start after a run that never ended is unclean"
        );
        end_run(&d);
        assert!(!begin_run(&d));
        let _ = std::fs::remove_dir_all(&d);
    }
}
