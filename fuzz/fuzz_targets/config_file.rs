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
//! - on success every key the file names is at the file's level (the `--set` storage path
//!   wins), and its stored value is in stored form: setting it again at that level on fresh
//!   defaults (the log outputs mask turned back into names) is accepted and stores the same;
//! - `config_json()` parses as a JSON object and `config2_json()` as an array of
//!   `{"key","value","modified"}` string triples whose levels are only `default`,
//!   `pv conf file` or `args`, whose file level holds exactly the file's keys with the values
//!   `get` gives (checked when a value the file sets has bytes JSON must escape, and for one
//!   input length in 16, as the bodies cost several times the load);
//! - no value its key's type forbids is accepted: the target reads the file's KEY=VALUE lines
//!   itself (last line per key wins), tells each key's type apart by probing a fresh
//!   configuration (any text, boolean, integer, log outputs list or enum), and checks the raw
//!   value with rules written here: an integer key took only ASCII digits and stores them
//!   without leading zeros, a boolean one of 0/1/true/false/yes/no/on/off and stores 0 or 1, a
//!   log outputs key only known output names and stores their mask, an enum key stores the
//!   value it was given up to case, a text key stores it as written.
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

/// A key's type, as far as its accepted values tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Type {
    Text,
    Bool,
    Int,
    Outputs,
    Enum,
}

fn accepts(key: &str, value: &str) -> bool {
    Config::defaults()
        .set_override(key, Some(value), Level::PvConfFile)
        .is_ok()
}

/// The type of a canonical key, found by probing (cached: keys are few and fixed).
fn type_of(key: &str) -> Type {
    static TYPES: OnceLock<std::sync::Mutex<BTreeMap<String, Type>>> = OnceLock::new();
    let cache = TYPES.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    *cache.entry(key.to_owned()).or_insert_with(|| {
        let default = Config::defaults().get(key).map(str::to_owned);
        let digits = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
        if accepts(key, "\u{1}no such value") {
            Type::Text
        } else if accepts(key, "yes") {
            Type::Bool
        } else if accepts(key, "") {
            Type::Outputs
        } else if default.as_deref().is_some_and(digits) {
            Type::Int
        } else {
            Type::Enum
        }
    })
}

/// The file's own KEY=VALUE lines, by canonical key, the last one winning; written here
/// independently of `config::parse` (trimmed, `#` comments, one pair of quotes stripped).
fn raw_values(text: &str) -> BTreeMap<&'static str, &str> {
    let mut raw = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        if let Some(canonical) = Config::canonical_key(key) {
            raw.insert(canonical, value);
        }
    }
    raw
}

/// The raw value the file gave `key` and what was stored must agree with the key's type.
fn check_typed(key: &str, raw: &str, stored: &str) {
    const TRUE: [&str; 4] = ["1", "true", "yes", "on"];
    const FALSE: [&str; 4] = ["0", "false", "no", "off"];
    let is = |words: &[&str]| words.iter().any(|w| w.eq_ignore_ascii_case(raw));
    match type_of(key) {
        Type::Text => assert_eq!(stored, raw, "{key}: text stored differently"),
        Type::Bool => {
            let want = if is(&TRUE) {
                "1"
            } else if is(&FALSE) {
                "0"
            } else {
                panic!("{key}: boolean accepted {raw:?}")
            };
            assert_eq!(stored, want, "{key}: {raw:?} stored as {stored:?}");
        }
        Type::Int => {
            assert!(
                !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()),
                "{key}: integer accepted {raw:?}"
            );
            let trimmed = raw.trim_start_matches('0');
            let want = if trimmed.is_empty() { "0" } else { trimmed };
            assert_eq!(stored, want, "{key}: {raw:?} stored as {stored:?}");
        }
        Type::Outputs => {
            let mut mask = LOG_OUTPUT_UPDATE;
            for item in raw.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                match LOG_OUTPUTS
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(item))
                {
                    Some((_, bit)) => mask |= bit,
                    None => panic!("{key}: log outputs accepted {item:?} in {raw:?}"),
                }
            }
            assert_eq!(stored, mask.to_string(), "{key}: {raw:?}");
        }
        Type::Enum => assert!(
            stored.eq_ignore_ascii_case(raw),
            "{key}: enum value {raw:?} stored as {stored:?}"
        ),
    }
}

/// Whether JSON escaping has work to do on `text`: a quote, a backslash, a control byte or a
/// non-ASCII character.
fn needs_escaping(text: &str) -> bool {
    text.bytes()
        .any(|b| b == b'"' || b == b'\\' || (b < 0x20 && b != b'\n') || b >= 0x80)
}

/// `GET /config` and `GET /config2`: well-formed, only the expected levels, and the file's
/// level holds exactly the keys the file names, with the values `get` gives.
fn check_bodies(config: &Config, from_file: &BTreeMap<&'static str, &str>) {
    let json1 = config.config_json();
    if let Err(e) = serde_json::from_str::<BTreeMap<String, IgnoredAny>>(&json1) {
        panic!("config_json is not a JSON object ({e}): {json1}");
    }
    let json2 = config.config2_json();
    let items: Vec<Item> = serde_json::from_str(&json2).unwrap_or_else(|e| {
        panic!("config2_json is not a list of key/value/modified ({e}): {json2}")
    });
    let mut at_file_level = Vec::new();
    for item in &items {
        match item.modified.as_str() {
            "default" => {}
            "args" => assert_eq!(
                (item.key.as_str(), item.value.as_str()),
                ("PV_STORAGE_MNTPOINT", STORAGE)
            ),
            "pv conf file" => {
                assert_eq!(
                    config.get(&item.key),
                    Some(item.value.as_str()),
                    "{}",
                    item.key
                );
                at_file_level.push(item.key.as_str());
            }
            other => panic!("{} reported at level {other:?}", item.key),
        }
    }
    at_file_level.sort_unstable();
    let mut want: Vec<&str> = from_file
        .keys()
        .copied()
        .filter(|k| *k != "PV_STORAGE_MNTPOINT")
        .collect();
    want.sort_unstable();
    assert_eq!(
        at_file_level, want,
        "config2's file level and the file's keys differ"
    );
}

fn check_loaded(config: &Config, text: &str) {
    assert_eq!(config.storage_dir(), Path::new(STORAGE));
    assert_eq!(config.level_of("PV_STORAGE_MNTPOINT"), Some(Level::Args));

    // Every key the file names: set at the file's level, its raw value allowed by its type,
    // and its stored value accepted again at that level on fresh defaults and stored the same.
    let from_file = raw_values(text);
    let mut rebuilt = Config::defaults();
    for (&key, &given) in &from_file {
        if key == "PV_STORAGE_MNTPOINT" {
            continue; // --set wins
        }
        assert_eq!(config.level_of(key), Some(Level::PvConfFile), "{key}");
        let stored = config
            .get(key)
            .unwrap_or_else(|| panic!("{key} set by the file has no value"));
        check_typed(key, given, stored);
        let written = if key == OUTPUTS_KEY {
            outputs_names(key, stored)
        } else {
            stored.to_owned()
        };
        if let Err(e) = rebuilt.set_override(key, Some(&written), Level::PvConfFile) {
            panic!("value {written:?} of {key} not accepted again: {e}");
        }
        assert_eq!(
            rebuilt.get(key),
            Some(stored),
            "{key} stored differently when {written:?} is set again"
        );
    }
    // The bodies cost several times the load itself, so they are built only where their
    // escaping is exercised (a value the file set needs it: keys and defaults are fixed), and
    // for one input length in 16 otherwise.
    if from_file.values().any(|v| needs_escaping(v)) || text.len() % 16 == 0 {
        check_bodies(config, &from_file);
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
        Ok(config) => match std::str::from_utf8(data) {
            Ok(text) => check_loaded(&config, text),
            Err(_) => panic!("a file that is not UTF-8 was loaded"),
        },
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
