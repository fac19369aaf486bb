//! The checks a revision passes before it boots (its signatures under the secureboot mode,
//! then its objects re-hashed when [`super::checksum::needed`]), and the check of a factory
//! revision before it is seeded into the storage.
//!
//! It decides nothing about what runs instead: the boot code rolls a refused try back and runs
//! nothing when the committed revision itself is refused.

use std::path::Path;

use serde_json::{Map, Value};

use super::Secureboot;
use super::checksum;
use crate::config::Config;
use crate::store::Storage;
use crate::store::trust::mode_of;

/// Why a revision may not boot: the progress `status-msg`, and the log's detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status_msg: &'static str,
    pub why: String,
}

impl Refused {
    pub fn internal(why: String) -> Refused {
        Refused {
            status_msg: "Internal error",
            why,
        }
    }
}

/// May revision `rev` (state `doc`, objects `(name, sha256)`) boot? `unclean`: the last run
/// ended without a clean exit (its objects are hashed again).
pub fn admit(
    sb: &mut Secureboot,
    config: &Config,
    storage: &Storage,
    rev: &str,
    doc: &Map<String, Value>,
    objects: &[(String, String)],
    unclean: bool,
) -> Result<(), Refused> {
    let doc = Value::Object(doc.clone());
    let verdict = sb.check_doc(config, "boot", rev, &doc);
    if let Some(msg) = verdict.refused() {
        return Err(Refused {
            status_msg: msg,
            why: format!(
                "revision {rev}: secureboot ({}): {msg}",
                verdict.mode.as_str()
            ),
        });
    }
    sb.remember(rev, &verdict);
    if !config.get_bool("PV_SECUREBOOT_CHECKSUM") {
        return Ok(());
    }
    let rev_dir = storage.trails.rev_dir(rev);
    if !checksum::needed(&rev_dir, unclean, objects) {
        log::info!("checksum: revision {rev} checked before, and the last run ended cleanly");
        return Ok(());
    }
    match checksum::verify(storage.objects.dir(), &rev_dir, objects) {
        Ok(h) => {
            let ms = h.elapsed.as_secs_f64() * 1000.0;
            let mb = h.bytes as f64 / (1024.0 * 1024.0);
            log::info!(
                "checksum: revision {rev}: {} objects, {} bytes hashed in {ms:.1} ms ({:.2} ms/MB)",
                h.objects,
                h.bytes,
                if mb > 0.0 { ms / mb } else { 0.0 }
            );
            Ok(())
        }
        Err(e) => Err(Refused {
            status_msg: checksum::MISMATCH,
            why: format!("revision {rev}: {}: {e}", checksum::MISMATCH),
        }),
    }
}

/// `--factory DIR` on a storage without revision 0: its state must pass the mode (lenient
/// and strict refuse a bad signature, strict an unsigned state too) before anything of it is
/// stored. `Err` is the message for stderr and the log; the daemon then does not start.
pub fn check_factory(
    sb: &Secureboot,
    config: &Config,
    storage: &Path,
    factory: Option<&Path>,
) -> Result<(), String> {
    let Some(dir) = factory else { return Ok(()) };
    if storage.join("trails/0/.pvr/json").is_file() {
        return Ok(());
    }
    // Unreadable or not JSON: the seeding reports it with its own words.
    let Ok(state) = std::fs::read(dir.join("json")) else {
        return Ok(());
    };
    if serde_json::from_slice::<Value>(&state).is_err() {
        return Ok(());
    }
    let verdict = sb.check(config, "factory", "0", &state);
    match verdict.refused() {
        Some(msg) => Err(format!(
            "factory revision {}: secureboot ({}): {msg}",
            dir.join("json").display(),
            mode_of(config).as_str()
        )),
        None => Ok(()),
    }
}
