//! Garbage collection: remove every revision not worth keeping (with its logs and revision
//! disks), then every object no remaining revision names. Revisions go first and objects
//! after, so a crash half-way leaves only unreferenced objects, never a revision missing one.
//!
//! An object younger than `grace` (`TERN_GC_GRACE`, 10 min) is kept even when nothing names
//! it yet: it is most likely part of an update whose state JSON has not been sent (the race
//! Pantavisor's GC has with uploads).

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::Storage;
use super::durable;
use super::objects::is_object_name;

/// What a collection did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Collected {
    pub revisions: Vec<String>,
    pub objects: usize,
    pub bytes: u64,
}

/// Every 64-hex string value of a state JSON: the objects it needs.
pub fn referenced_objects(state: &[u8]) -> BTreeSet<String> {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(state)
    else {
        return BTreeSet::new();
    };
    map.values()
        .filter_map(|v| v.as_str())
        .filter(|s| is_object_name(s))
        .map(str::to_string)
        .collect()
}

fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// Keep the revisions in `keep`; remove the rest, then the objects nothing kept refers to.
pub fn collect(
    storage: &Storage,
    keep: &BTreeSet<String>,
    now: SystemTime,
    grace: Duration,
) -> io::Result<Collected> {
    let mut done = Collected::default();
    let trails = &storage.trails;
    for rev in trails.list() {
        if keep.contains(&rev) {
            continue;
        }
        let dir = trails.rev_dir(&rev);
        done.bytes += tree_size(&dir);
        durable::remove_tree_durable(&dir)?;
        for extra in [
            storage.root().join("logs").join(&rev),
            storage.root().join("disks/rev").join(&rev),
        ] {
            done.bytes += tree_size(&extra);
            durable::remove_tree_durable(&extra)?;
        }
        log::info!("gc: removed revision {rev}");
        done.revisions.push(rev);
    }
    let mut needed = BTreeSet::new();
    for rev in trails.list() {
        match trails.read_state(&rev) {
            Ok(state) => needed.extend(referenced_objects(&state)),
            // A revision whose state cannot be read keeps everything: better a full disk than
            // a revision that lost its objects.
            Err(e) => {
                log::warn!("gc: cannot read revision {rev} ({e}); keeping every object");
                return Ok(done);
            }
        }
    }
    let dir = storage.objects.dir();
    for entry in fs::read_dir(dir)?.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !is_object_name(&name) || needed.contains(name.as_ref()) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        if age < grace {
            continue;
        }
        fs::remove_file(entry.path())?;
        super::crash_points::reached("object removed", &entry.path());
        done.objects += 1;
        done.bytes += meta.len();
    }
    if done.objects > 0 {
        durable::fsync_dir(dir)?;
    }
    Ok(done)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_object_ids_are_references() {
        let a = "a".repeat(64);
        let state = format!(
            r##"{{"#spec":"pantavisor-service-system@1","x/root.squashfs":"{a}","x/run.json":{{"name":"x"}},"short":"abc"}}"##
        );
        assert_eq!(
            referenced_objects(state.as_bytes()),
            BTreeSet::from([a.clone()])
        );
        assert!(referenced_objects(b"not json").is_empty());
    }
}
