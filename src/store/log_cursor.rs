//! The log pusher's cursors on the storage: one JSON map, `config/log-push.json`, from a
//! log's path under `logs/` to how far the hub acknowledged it (inode, birth time, offset).
//!
//! It owns that file only. Written as every acknowledged write is (temp, fsync, rename, fsync
//! the directory), so a cursor the hub's 200 moved survives a kill -9 the instant after its
//! write; it must never be written before that 200.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use super::durable;
use crate::engine::hub::logs::Cursor;

pub const FILE: &str = "config/log-push.json";

pub fn path(storage_root: &Path) -> PathBuf {
    storage_root.join(FILE)
}

/// The cursors as last written; none when the file is missing or unreadable (every line
/// still on disk is then pushed: a duplicate is better than a loss).
pub fn load(storage_root: &Path) -> BTreeMap<String, Cursor> {
    let file = path(storage_root);
    remove_leftovers(&file);
    match std::fs::read(&file) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            log::warn!(
                "log push: {} unreadable ({e}); pushing from the start",
                file.display()
            );
            BTreeMap::new()
        }),
        Err(_) => BTreeMap::new(),
    }
}

pub fn save(storage_root: &Path, cursors: &BTreeMap<String, Cursor>) -> io::Result<()> {
    let bytes = serde_json::to_vec(cursors).map_err(io::Error::other)?;
    durable::write_atomic(&path(storage_root), &bytes)
}

/// Temp files of this file a crash left behind (the storage's start-up repair does not look
/// in `config/`).
fn remove_leftovers(file: &Path) {
    let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
        return;
    };
    let prefix = format!("{}{}-", durable::TMP_PREFIX, name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn saved_cursors_load_back_and_leftover_temps_go() {
        let root = std::env::temp_dir().join(format!("tern-logcur-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("config")).unwrap();
        assert!(load(&root).is_empty());
        let c = Cursor {
            ino: 5,
            born: 9,
            offset: 1234,
        };
        let map = BTreeMap::from([("0/app/lxc/console.log".to_string(), c)]);
        save(&root, &map).unwrap();
        let stray = root.join("config/.tmp-log-push.json-1-2");
        std::fs::write(&stray, b"{").unwrap();
        assert_eq!(load(&root), map);
        assert!(!stray.exists());
        std::fs::remove_dir_all(root).unwrap();
    }
}
