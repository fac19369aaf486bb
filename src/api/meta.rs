//! `/user-meta` and `/device-meta`. Device metadata merges what clients stored with the keys
//! Tern itself reports (architecture, revision, mode, status, storage, …), which are computed
//! on every read and cannot be overwritten or deleted by clients.

use super::{Api, ApiError, MetaKind, Sink, memory_body};
use crate::config::Level;
use crate::device::Device;
use crate::http::Response;
use crate::store::meta::{MetaError, MetaStore, render_meta};
use crate::store::meta_view::MetaView;
use crate::sysinfo;

/// Device-meta keys owned by the supervisor.
const OWN_KEYS: [&str; 12] = [
    "pantavisor.status",
    "pantahub.claimed",
    "pantahub.online",
    "pantahub.state",
    "pantahub.address",
    "pantavisor.mode",
    "pantavisor.revision",
    "pantavisor.arch",
    "pantavisor.version",
    "pantavisor.uname",
    "pantavisor.secureboot",
    "storage",
];

fn store(api: &mut Api, kind: MetaKind) -> &mut MetaStore {
    match kind {
        MetaKind::User => &mut api.device.storage.user_meta,
        MetaKind::Device => &mut api.device.storage.device_meta,
    }
}

/// User metadata named after a configuration key (or its legacy alias) overrides that key at
/// the `metadata` level, as in Pantavisor; keys that cannot change at run time stay as they are.
pub fn config_override(device: &mut Device, key: &str, value: Option<&str>) {
    if crate::config::is_key(key)
        && let Err(e) = device.config.set_override(key, value, Level::Metadata)
    {
        log::warn!("meta: user-meta {key} does not override the configuration: {e}");
    }
}

fn view(api: &Api, kind: MetaKind) -> &MetaView {
    match kind {
        MetaKind::User => &api.device.user_view,
        MetaKind::Device => &api.device.device_view,
    }
}

/// The device-meta keys the supervisor reports itself, computed on every read; the hub
/// client's `pantahub.*` keys among them.
pub fn own_device_meta(device: &Device) -> Vec<(&'static str, String)> {
    let revision = device
        .storage
        .trails
        .current()
        .unwrap_or_else(|| "0".into());
    let mode = if device.remote_mode() {
        "remote"
    } else {
        "local"
    };
    let reserved = device.config.get_u64("PV_STORAGE_GC_RESERVED");
    let hub = |key: &str| device.hub_meta.get(key).cloned();
    let mut own = vec![
        // The lowest group status; a revision with no containers is READY at once.
        (
            "pantavisor.status",
            device
                .running
                .as_ref()
                .map_or("READY", |r| r.supervisor.revision_status().as_str())
                .into(),
        ),
        (
            "pantahub.claimed",
            hub("pantahub.claimed").unwrap_or("0".into()),
        ),
        (
            "pantahub.online",
            hub("pantahub.online").unwrap_or("0".into()),
        ),
        ("pantavisor.mode", mode.into()),
        ("pantavisor.revision", revision),
        ("pantavisor.arch", sysinfo::arch()),
        (
            "pantavisor.version",
            format!("tern-{}", env!("CARGO_PKG_VERSION")),
        ),
        ("pantavisor.uname", sysinfo::uname_json()),
        (
            "storage",
            sysinfo::storage_json(device.storage.root(), reserved),
        ),
    ];
    for key in ["pantahub.state", "pantahub.address"] {
        if let Some(v) = hub(key) {
            own.push((key, v));
        }
    }
    // The mode and what the running revision's signatures were found to lack (audit runs
    // revisions whatever their findings; this is where a fleet sees them).
    if let Some(run) = &device.running
        && let Some(v) = device.secureboot.meta(&device.config, &run.rev)
    {
        own.push(("pantavisor.secureboot", v));
    }
    own
}

pub fn list(api: &Api, kind: MetaKind) -> Response {
    let body = match kind {
        MetaKind::User => render_meta(
            api.device
                .storage
                .user_meta
                .entries()
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        ),
        MetaKind::Device => {
            let own = own_device_meta(&api.device);
            let stored = api
                .device
                .storage
                .device_meta
                .entries()
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()));
            render_meta(stored.chain(own.iter().map(|(k, v)| (*k, v.as_str()))))
        }
    };
    Response::json(200, body)
}

fn refuse_own_key(kind: MetaKind, key: &str) -> Result<(), ApiError> {
    if kind == MetaKind::Device && OWN_KEYS.contains(&key) {
        return Err(ApiError::new(
            403,
            format!("Device meta key '{key}' is owned by the supervisor"),
        ));
    }
    Ok(())
}

pub fn put(api: &mut Api, kind: MetaKind, key: &str, sink: Sink) -> Result<Response, ApiError> {
    let value = memory_body(&sink);
    let what = match kind {
        MetaKind::User => "user",
        MetaKind::Device => "device",
    };
    let Ok(value) = std::str::from_utf8(value) else {
        return Err(ApiError::bad_request(format!(
            "Cannot add or update {what} meta"
        )));
    };
    if value.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Cannot add or update {what} meta"
        )));
    }
    refuse_own_key(kind, key)?;
    match store(api, kind).put(key, value) {
        Ok(()) => {
            if let Err(e) = view(api, kind).set(key, value) {
                log::warn!("meta: {key} stored but not written to the run dir view: {e}");
            }
            if kind == MetaKind::User {
                config_override(&mut api.device, key, Some(value));
            }
            Ok(Response::ok())
        }
        Err(MetaError::TooManyKeys) => {
            Err(ApiError::new(507, format!("Too many {what} meta keys")))
        }
        Err(MetaError::Io(e)) => Err(ApiError::internal(e)),
    }
}

pub fn delete(api: &mut Api, kind: MetaKind, key: &str) -> Result<Response, ApiError> {
    refuse_own_key(kind, key)?;
    let missing = match kind {
        MetaKind::User => "User meta does not exist",
        MetaKind::Device => "Device meta does not exist",
    };
    match store(api, kind).delete(key) {
        Ok(true) => {
            if let Err(e) = view(api, kind).remove(key) {
                log::warn!("meta: {key} deleted but still in the run dir view: {e}");
            }
            if kind == MetaKind::User {
                config_override(&mut api.device, key, None);
            }
            Ok(Response::ok())
        }
        Ok(false) => Err(ApiError::new(404, missing)),
        Err(e) => Err(ApiError::internal(format!("{e:?}"))),
    }
}
