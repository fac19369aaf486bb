//! The log pusher's cursors on the storage: one small file per log under
//! `config/log-push/`, named after the log's path under `logs/` (`/` written `%2F`), holding
//! how far the hub acknowledged it (inode, birth time, offset) as JSON.
//!
//! It owns that directory only. Each file is written as every acknowledged write is (temp,
//! fsync, rename, fsync the directory), so a cursor the hub's 200 moved survives a kill -9
//! the instant after its write; it must never be written before that 200. One file per log
//! keeps each write small whatever the number of logs.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::durable;

/// How far a log file was acknowledged by the hub: the file (inode and birth time, so a
/// rotation is seen) and the offset after the last line the hub took.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub ino: u64,
    pub born: u64,
    pub offset: u64,
}

pub const DIR: &str = "config/log-push";

fn dir(storage_root: &Path) -> PathBuf {
    storage_root.join(DIR)
}

/// A log's path as one file name (reversible: `%` → `%25`, `/` → `%2F`).
fn file_name(log: &str) -> String {
    log.replace('%', "%25").replace('/', "%2F")
}

fn log_name(file: &str) -> String {
    file.replace("%2F", "/").replace("%25", "%")
}

/// The cursors as last written. A missing or unreadable one is no cursor: every line of its
/// log still on disk is pushed (a duplicate is better than a loss). Temp files a crash left
/// go (the storage's start-up repair does not look here).
pub fn load(storage_root: &Path) -> BTreeMap<String, Cursor> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir(storage_root)) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(durable::TMP_PREFIX) {
            let _ = std::fs::remove_file(e.path());
            continue;
        }
        match std::fs::read(e.path()).map(|b| serde_json::from_slice::<Cursor>(&b)) {
            Ok(Ok(c)) => {
                out.insert(log_name(&name), c);
            }
            _ => log::warn!("log push: cursor {name} unreadable; pushing that log from its start"),
        }
    }
    out
}

/// Write the cursor of `log`, or remove it (`None`: the log is gone).
pub fn save(storage_root: &Path, log: &str, cursor: Option<&Cursor>) -> io::Result<()> {
    let d = dir(storage_root);
    let file = d.join(file_name(log));
    match cursor {
        Some(c) => {
            if !d.exists() {
                durable::create_dir_durable(&d)?;
            }
            let bytes = serde_json::to_vec(c).map_err(io::Error::other)?;
            durable::write_atomic(&file, &bytes)
        }
        None => match std::fs::remove_file(&file) {
            Ok(()) => durable::fsync_dir(&d),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn saved_cursors_load_back_forgotten_ones_go_and_leftover_temps_go() {
        let root = std::env::temp_dir().join(format!("tern-logcur-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("config")).unwrap();
        assert!(load(&root).is_empty());
        let c = Cursor {
            ino: 5,
            born: 9,
            offset: 1234,
        };
        save(&root, "0/app/lxc/console.log", Some(&c)).unwrap();
        save(&root, "1/a%b/console.log", Some(&c)).unwrap();
        save(&root, "tern.log", Some(&c)).unwrap();
        save(&root, "tern.log", None).unwrap();
        let stray = root.join(DIR).join(".tmp-x-1-2");
        std::fs::write(&stray, b"{").unwrap();
        let want = BTreeMap::from([
            ("0/app/lxc/console.log".to_string(), c),
            ("1/a%b/console.log".to_string(), c),
        ]);
        assert_eq!(load(&root), want);
        assert!(!stray.exists());
        std::fs::remove_dir_all(root).unwrap();
    }
}
