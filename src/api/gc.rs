//! `POST /storage/gc` (and RUN_GC): keep the running revision, the one being tried, the
//! committed rollback point and, with `PV_STORAGE_GC_KEEP_FACTORY`, revision 0.

use std::collections::BTreeSet;
use std::time::SystemTime;

use super::{Api, ApiError};
use crate::http::Response;
use crate::store::boot::BootStore;
use crate::store::gc;

/// The revisions a collection must keep.
pub fn keep_set(api: &Api) -> BTreeSet<String> {
    let mut keep = BTreeSet::new();
    if let Some(r) = &api.device.running {
        keep.insert(r.rev.clone());
    }
    if let Some(current) = api.device.storage.trails.current() {
        keep.insert(current);
    }
    if let Some(u) = &api.device.update {
        keep.insert(u.rev.clone());
    }
    let env = BootStore::new(api.device.storage.root()).load("0");
    keep.insert(env.rev);
    keep.extend(env.try_rev);
    if api.device.config.get_bool("PV_STORAGE_GC_KEEP_FACTORY") {
        keep.insert("0".into());
    }
    keep
}

/// Collect now; the number of bytes freed.
pub fn collect(api: &Api) -> Result<gc::Collected, String> {
    let grace = std::time::Duration::from_secs(api.device.config.get_u64("TERN_GC_GRACE"));
    gc::collect(
        &api.device.storage,
        &keep_set(api),
        SystemTime::now(),
        grace,
    )
    .map_err(|e| e.to_string())
}

pub fn run(api: &mut Api) -> Result<Response, ApiError> {
    match collect(api) {
        // Pantavisor's body, space included.
        Ok(done) => Ok(Response::json(
            200,
            format!("{{\"reclaimed\": {}}}", done.bytes),
        )),
        Err(e) => {
            log::error!("gc: {e}");
            Err(ApiError::new(500, "Error running garbage collector"))
        }
    }
}
