//! Revision 0, the factory revision: created on first boot, either empty or seeded from a
//! folder in the layout of a `pvcontrol steps install` tarball (`json` plus `objects/<sha>`).
//! Seeded objects are hashed as they are copied, exactly like an upload, so a corrupt factory
//! folder is refused instead of booted.

use std::fs;
use std::io::Read;
use std::path::Path;

use super::objects::{UploadError, is_object_name};
use super::progress::Progress;
use super::{Storage, StorageError};
use crate::spec;

/// The state of an empty device.
pub const EMPTY_STATE: &str = r##"{"#spec":"pantavisor-service-system@1"}"##;

pub fn ensure_factory(storage: &Storage, factory: Option<&Path>) -> Result<(), StorageError> {
    let trails = &storage.trails;
    if trails.exists("0") {
        if factory.is_some() {
            log::info!("store: revision 0 already exists; --factory ignored");
        }
        return Ok(());
    }
    let state = match factory {
        Some(dir) => seed_from(storage, dir)?,
        None => EMPTY_STATE.as_bytes().to_vec(),
    };
    trails
        .install("0", &state, &Progress::factory())
        .and_then(|()| trails.mark_done("0"))
        .and_then(|()| trails.set_current("0"))
        .map_err(|e| StorageError::io(trails.rev_dir("0"), e))?;
    log::info!("store: created factory revision 0");
    Ok(())
}

fn seed_from(storage: &Storage, dir: &Path) -> Result<Vec<u8>, StorageError> {
    let json_path = dir.join("json");
    let state = fs::read(&json_path).map_err(|e| StorageError::io(&json_path, e))?;
    spec::validate_state(&state)
        .map_err(|e| StorageError::Factory(format!("{}: {e}", json_path.display())))?;
    let objects_dir = dir.join("objects");
    let entries = match fs::read_dir(&objects_dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).collect::<Vec<_>>(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(StorageError::io(&objects_dir, e)),
    };
    for entry in entries {
        let name = entry.file_name().to_string_lossy().to_ascii_lowercase();
        if !is_object_name(&name) {
            log::warn!(
                "store: factory: skipping {} (not a sha256 name)",
                entry.path().display()
            );
            continue;
        }
        if storage.objects.exists(&name) {
            continue;
        }
        copy_object(storage, &entry.path(), &name)?;
    }
    Ok(state)
}

fn copy_object(storage: &Storage, src: &Path, sha: &str) -> Result<(), StorageError> {
    let io_err = |e| StorageError::io(src, e);
    let mut file = fs::File::open(src).map_err(io_err)?;
    let mut upload = storage.objects.begin_upload(sha).map_err(io_err)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        upload.write(&buf[..n]).map_err(|e| upload_err(src, e))?;
    }
    upload.finish().map(|_| ()).map_err(|e| upload_err(src, e))
}

fn upload_err(src: &Path, e: UploadError) -> StorageError {
    match e {
        UploadError::BadChecksum => StorageError::Factory(format!(
            "{}: content does not match its sha256 name",
            src.display()
        )),
        UploadError::NoSpace => {
            StorageError::Factory("not enough disk space for the factory objects".into())
        }
        UploadError::Io(err) => StorageError::io(src, err),
    }
}
