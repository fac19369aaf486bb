//! Arbitrary bytes as a `pantavisor.config` style file (`--config FILE`) through `Config::load`.
//!
//! The input is written to one fixed file per process, `/dev/shm/tern-fuzz-config-<pid>.conf`
//! (under `$TMPDIR` when there is no `/dev/shm`), removed again after each load. It is loaded
//! with no environment and `--set PV_STORAGE_MNTPOINT=/nonexistent-tern-fuzz`, so the Pantahub
//! credentials file under the storage is never found and only the fuzzed file is read.
//!
//! Invariants:
//! - `Config::load` returns, never panics;
//! - an error names the fuzzed file (and a line within it, when it gives one) and displays;
//! - on success `config_json()` parses as a JSON object and `config2_json()` as an array of
//!   `{"key","value","modified"}` string triples whose levels are only `default`,
//!   `pv conf file` or `args`, with the `--set` storage path winning;
//! - what `config2` reports for the file's level is in stored form: setting those values again
//!   at that level on fresh defaults (the log outputs mask turned back into names) is accepted
//!   and stores the same values.
#![no_main]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde::de::IgnoredAny;
use tern::config::{Config, LOG_OUTPUT_UPDATE, LOG_OUTPUTS, Level, LoadOptions};

const STORAGE: &str = "/nonexistent-tern-fuzz";
const OUTPUTS_KEY: &str = "PV_LOG_SERVER_OUTPUTS";

/// One item of `GET /config2`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    key: String,
    value: String,
    modified: String,
}

fn config_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        // tmpfs when there is one: on ext4, rewriting a truncated file flushes it on close,
        // which would make this target I/O-bound.
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("tern-fuzz-config-{}.conf", std::process::id()))
    })
}

/// The names of a stored log outputs mask, as a file would write them.
fn outputs_names(key: &str, stored: &str) -> String {
    let mask: u64 = stored
        .parse()
        .unwrap_or_else(|_| panic!("{key} stored as {stored:?}, not a mask"));
    assert!(
        mask & LOG_OUTPUT_UPDATE != 0,
        "{key} mask {mask} lacks the update bit"
    );
    let known = LOG_OUTPUTS
        .iter()
        .fold(LOG_OUTPUT_UPDATE, |m, (_, bit)| m | bit);
    assert_eq!(mask & !known, 0, "{key} mask {mask} has unknown bits");
    let names: Vec<&str> = LOG_OUTPUTS
        .iter()
        .filter(|(_, bit)| mask & bit != 0)
        .map(|(name, _)| *name)
        .collect();
    names.join(",")
}

fn check_loaded(config: &Config) {
    let json1 = config.config_json();
    if let Err(e) = serde_json::from_str::<BTreeMap<String, IgnoredAny>>(&json1) {
        panic!("config_json is not a JSON object ({e}): {json1}");
    }
    let json2 = config.config2_json();
    let items: Vec<Item> = serde_json::from_str(&json2).unwrap_or_else(|e| {
        panic!("config2_json is not a list of key/value/modified ({e}): {json2}")
    });

    assert_eq!(config.storage_dir(), Path::new(STORAGE));
    assert_eq!(config.level_of("PV_STORAGE_MNTPOINT"), Some(Level::Args));

    // Set what config2 says the file set, at the file's level, on fresh defaults: every value
    // must be accepted again and stored unchanged. (Comparing through `get` rather than by
    // generating both bodies again keeps the target fast; the bodies are functions of it.)
    let mut rebuilt = Config::defaults();
    for item in &items {
        match item.modified.as_str() {
            "default" => {}
            "args" => assert_eq!(
                (item.key.as_str(), item.value.as_str()),
                ("PV_STORAGE_MNTPOINT", STORAGE)
            ),
            "pv conf file" => {
                let written = if item.key == OUTPUTS_KEY {
                    outputs_names(&item.key, &item.value)
                } else {
                    item.value.clone()
                };
                if let Err(e) = rebuilt.set_override(&item.key, Some(&written), Level::PvConfFile) {
                    panic!("value {written:?} of {} not accepted again: {e}", item.key);
                }
                assert_eq!(
                    rebuilt.get(&item.key),
                    Some(item.value.as_str()),
                    "{} stored differently when {written:?} is set again",
                    item.key
                );
                assert_eq!(config.level_of(&item.key), Some(Level::PvConfFile));
            }
            other => panic!("{} reported at level {other:?}", item.key),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let path = config_path();
    if let Err(e) = std::fs::write(path, data) {
        panic!("cannot write {}: {e}", path.display());
    }
    let opts = LoadOptions {
        file: Some(path.to_path_buf()),
        env: vec![],
        sets: vec![("PV_STORAGE_MNTPOINT".into(), STORAGE.into())],
    };
    let loaded = Config::load(&opts);
    // Gone again before any check can fail, so no run leaves the file behind.
    let _ = std::fs::remove_file(path);
    match loaded {
        Ok(config) => check_loaded(&config),
        Err(e) => {
            assert_eq!(
                e.file.as_deref(),
                Some(path),
                "error outside the fuzzed file: {e}"
            );
            if let Some(line) = e.line {
                let lines = data.split(|&b| b == b'\n').count();
                assert!(
                    line >= 1 && line <= lines,
                    "error at line {line} of {lines}: {e}"
                );
            }
            assert!(!e.to_string().is_empty());
        }
    }
});
