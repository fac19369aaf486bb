//! What a bootloader keeps for Pantavisor (`pv_rev`, `pv_try`), kept by Tern itself in
//! `<storage>/boot/tern.json`: the committed revision (the rollback point), the revision being
//! tried, and whether that try has already been started once. Written durably before every
//! step that depends on it, so a power cut at any instant boots either the committed revision
//! or the try exactly once.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::durable;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootEnv {
    /// The last revision committed as DONE: what a boot falls back to.
    pub rev: String,
    /// A revision to try (set before an update's transition, cleared by its commit or by the
    /// rollback).
    #[serde(rename = "try")]
    pub try_rev: Option<String>,
    /// The try was started: starting again without a commit means it failed.
    pub tried: bool,
    /// The try came from TRY_ONCE: its success is not a rollback point.
    #[serde(default)]
    pub once: bool,
}

impl Default for BootEnv {
    fn default() -> BootEnv {
        BootEnv {
            rev: "0".into(),
            try_rev: None,
            tried: false,
            once: false,
        }
    }
}

/// What to run at start, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Boot {
    /// The committed revision, nothing pending.
    Committed(String),
    /// First start of a try: run it, as an update in progress.
    Try(String),
    /// A try started before and never committed: run the committed revision; the try failed.
    RolledBack { run: String, failed: String },
}

impl BootEnv {
    /// Decide what this start runs, and the env to store before running it.
    pub fn boot(&self) -> (Boot, BootEnv) {
        match (&self.try_rev, self.tried) {
            (None, _) => (Boot::Committed(self.rev.clone()), self.clone()),
            (Some(t), false) => (
                Boot::Try(t.clone()),
                BootEnv {
                    tried: true,
                    ..self.clone()
                },
            ),
            (Some(t), true) => (
                Boot::RolledBack {
                    run: self.rev.clone(),
                    failed: t.clone(),
                },
                BootEnv {
                    try_rev: None,
                    tried: false,
                    once: false,
                    ..self.clone()
                },
            ),
        }
    }
}

pub struct BootStore {
    path: PathBuf,
}

impl BootStore {
    pub fn new(storage: &Path) -> BootStore {
        BootStore {
            path: storage.join("boot/tern.json"),
        }
    }

    /// True once an update has recorded anything (the file exists).
    pub fn recorded(&self) -> bool {
        self.path.is_file()
    }

    /// The stored env; a missing file is a first boot (`fallback` committed). An unreadable
    /// one is reported and treated the same way: booting the fallback is always safe.
    pub fn load(&self, fallback: &str) -> BootEnv {
        let first = BootEnv {
            rev: fallback.to_string(),
            ..BootEnv::default()
        };
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                log::error!(
                    "boot: {} is corrupt ({e}); booting {fallback}",
                    self.path.display()
                );
                first
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => first,
            Err(e) => {
                log::error!(
                    "boot: cannot read {}: {e}; booting {fallback}",
                    self.path.display()
                );
                first
            }
        }
    }

    pub fn save(&self, env: &BootEnv) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            durable::create_dir_durable(dir)?;
        }
        let bytes = serde_json::to_vec(env).map_err(io::Error::other)?;
        durable::write_atomic(&self.path, &bytes)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env(rev: &str, try_rev: Option<&str>, tried: bool) -> BootEnv {
        BootEnv {
            rev: rev.into(),
            try_rev: try_rev.map(String::from),
            tried,
            once: false,
        }
    }

    #[test]
    fn a_try_runs_once_then_falls_back() {
        let (b, next) = env("0", Some("locals/a"), false).boot();
        assert_eq!(b, Boot::Try("locals/a".into()));
        assert_eq!(next, env("0", Some("locals/a"), true));
        let (b, next) = next.boot();
        assert_eq!(
            b,
            Boot::RolledBack {
                run: "0".into(),
                failed: "locals/a".into()
            }
        );
        assert_eq!(next, env("0", None, false));
        assert_eq!(next.boot().0, Boot::Committed("0".into()));
    }

    #[test]
    fn missing_or_corrupt_files_boot_the_fallback() {
        let dir = std::env::temp_dir().join(format!("tern-boot-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let s = BootStore::new(&dir);
        assert_eq!(s.load("0"), env("0", None, false));
        s.save(&env("1", Some("2"), true)).unwrap();
        assert_eq!(s.load("0"), env("1", Some("2"), true));
        fs::write(dir.join("boot/tern.json"), b"{not json").unwrap();
        assert_eq!(s.load("0"), env("0", None, false));
        fs::remove_dir_all(dir).unwrap();
    }
}
