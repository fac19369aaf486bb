//! The on-disk layout under the storage root, following Pantavisor's:
//! `objects/<sha256>`, `trails/<rev>/…`, `trails/current`, `logs/`, `config/`, `disks/`,
//! `cache/{usrmeta.json,devmeta.json}`.
//!
//! Owns every write to the storage and its durability (see [`durable`]). Must never leave a
//! state that does not boot: start-up ([`Storage::open`]) removes crash leftovers, makes sure a
//! factory revision exists and that `trails/current` points at a revision that does.

pub mod boot;
pub mod crash_points;
pub mod durable;
pub mod factory;
pub mod gc;
pub mod log_cursor;
pub mod meta;
pub mod meta_view;
pub mod names;
pub mod objects;
pub mod progress;
pub mod trails;
pub mod trust;

use std::io;
use std::path::{Path, PathBuf};

pub use meta::MetaStore;
pub use objects::ObjectStore;
pub use progress::Progress;
pub use trails::Trails;

pub struct Storage {
    root: PathBuf,
    pub objects: ObjectStore,
    pub trails: Trails,
    pub user_meta: MetaStore,
    pub device_meta: MetaStore,
}

impl Storage {
    /// Open (creating on first boot) the storage at `root`, repairing what a crash left, and
    /// seeding revision 0 (from `factory`, a folder with `json` and `objects/`, when given).
    pub fn open(root: &Path, factory: Option<&Path>) -> Result<Storage, StorageError> {
        for sub in [
            "objects",
            "trails/locals",
            "logs",
            "config",
            "disks/perm",
            "disks/rev",
            "cache",
        ] {
            durable::create_dir_durable(&root.join(sub))
                .map_err(|e| StorageError::io(root.join(sub), e))?;
        }
        let objects = ObjectStore::new(root.join("objects"));
        let trails = Trails::new(root.join("trails"), root.join("objects"));
        let mut leftovers = durable::remove_leftover_temps(objects.dir())
            .map_err(|e| StorageError::io(objects.dir(), e))?;
        leftovers += trails
            .remove_leftovers()
            .map_err(|e| StorageError::io(trails.dir(), e))?;
        leftovers += durable::remove_leftover_temps(&root.join("cache"))
            .map_err(|e| StorageError::io(root.join("cache"), e))?;
        if leftovers > 0 {
            log::warn!("store: removed {leftovers} temp file(s) left by an interrupted write");
        }
        let storage = Storage {
            root: root.to_path_buf(),
            user_meta: MetaStore::load(root.join("cache/usrmeta.json")),
            device_meta: MetaStore::load(root.join("cache/devmeta.json")),
            objects,
            trails,
        };
        factory::ensure_factory(&storage, factory)?;
        storage.ensure_current()?;
        Ok(storage)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `trails/current` must name a revision that exists; if it does not (first boot, or a
    /// crash between creating rev 0 and linking it), point it at the factory revision.
    fn ensure_current(&self) -> Result<(), StorageError> {
        if self
            .trails
            .current()
            .is_some_and(|rev| self.trails.exists(&rev))
        {
            return Ok(());
        }
        let link = self.trails.dir().join("current");
        log::warn!("store: trails/current missing or dangling, booting factory revision 0");
        self.trails
            .set_current("0")
            .map_err(|e| StorageError::io(link, e))
    }
}

#[derive(Debug)]
pub enum StorageError {
    Io { path: PathBuf, err: io::Error },
    Factory(String),
}

impl StorageError {
    pub fn io(path: impl Into<PathBuf>, err: io::Error) -> StorageError {
        StorageError::Io {
            path: path.into(),
            err,
        }
    }
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageError::Io { path, err } => write!(f, "{}: {err}", path.display()),
            StorageError::Factory(msg) => write!(f, "factory revision: {msg}"),
        }
    }
}

impl std::error::Error for StorageError {}
