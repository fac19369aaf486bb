//! Configuration: the Pantavisor-compatible key table, the KEY=VALUE files, the environment and
//! the command line, merged by level, plus the bodies of `GET /config` and `GET /config2`.
//!
//! Owns: which keys exist, their aliases, types and defaults; which level set each key
//! (`default` < `pv conf file` < `ph conf file` < `env` < `args` < `metadata` < `command`);
//! runtime overrides from user metadata and commands.
//!
//! Must never: do any I/O other than reading the `--config` file and
//! `<storage>/config/pantahub.config` in [`Config::load`] (no writes, no sysctl, no network,
//! no clock); panic on bad input; log the value of a key (values may be secrets).

mod json;
mod keys;
mod load;
mod parse;
mod table;

#[cfg(test)]
mod golden_tests;

use std::fmt;
use std::path::{Path, PathBuf};

use keys::KEYS;
pub use keys::{LOG_OUTPUT_UPDATE, LOG_OUTPUTS};

/// Whether `name` is a configuration key or one of its legacy aliases (case-insensitive).
pub fn is_key(name: &str) -> bool {
    keys::lookup(name).is_some()
}

/// Where a key's value came from, lowest to highest: the highest level that set a key wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Default,
    PvConfFile,
    PhConfFile,
    Env,
    Args,
    Metadata,
    Command,
}

impl Level {
    /// Pantavisor's `modified` string for this level.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Default => "default",
            Level::PvConfFile => "pv conf file",
            Level::PhConfFile => "ph conf file",
            Level::Env => "env",
            Level::Args => "args",
            Level::Metadata => "metadata",
            Level::Command => "command",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`Config::load`] reads.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// `--config FILE` (pantavisor.config style); `None` reads no file.
    pub file: Option<PathBuf>,
    /// The process environment; only known `PV_*`, `PH_*` and `TERN_*` names are used.
    pub env: Vec<(String, String)>,
    /// `--set KEY=VALUE` (and options mapped to keys), applied in order.
    pub sets: Vec<(String, String)>,
}

/// A configuration that cannot be loaded: where (file and line, or `environment`, or
/// `--set`), which key, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    /// 1-based line in `file`.
    pub line: Option<usize>,
    /// The key as written.
    pub key: Option<String>,
    /// `environment` or `--set` when the error is not in a file.
    pub origin: Option<&'static str>,
    pub message: String,
}

impl ConfigError {
    fn in_file(path: &Path, line: Option<usize>, key: Option<&str>, message: String) -> Self {
        ConfigError {
            file: Some(path.to_path_buf()),
            line,
            key: key.map(str::to_owned),
            origin: None,
            message,
        }
    }

    fn from_origin(origin: &'static str, key: &str, message: String) -> Self {
        ConfigError {
            file: None,
            line: None,
            key: Some(key.to_owned()),
            origin: Some(origin),
            message,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.origin) {
            (Some(file), _) => write!(f, "{}", file.display())?,
            (None, Some(origin)) => f.write_str(origin)?,
            (None, None) => f.write_str("config")?,
        }
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The merged configuration. Each key keeps the value of every level that set it, so removing
/// an override gives back what the lower levels say.
#[derive(Clone, Debug)]
pub struct Config {
    /// Per key (same index as the key table), the levels above `Default` that set it, in
    /// ascending level order, with the value in stored form.
    layers: Vec<Vec<(Level, Box<str>)>>,
}

impl Config {
    /// Every key at its default.
    pub fn defaults() -> Config {
        Config {
            layers: vec![Vec::new(); KEYS.len()],
        }
    }

    /// The canonical name (`PV_LOG_LEVEL`) of a key given by name or legacy alias, any case.
    pub fn canonical_key(key: &str) -> Option<&'static str> {
        keys::lookup(key).map(|i| KEYS[i].name)
    }

    /// The value of a key given by canonical name or alias (any case); `None` when the key is
    /// unknown or unset. Integers come back in decimal, booleans as `0`/`1`, enums as their
    /// name, `PV_LOG_SERVER_OUTPUTS` as its bitmask in decimal (see [`LOG_OUTPUTS`]).
    pub fn get(&self, key: &str) -> Option<&str> {
        let index = keys::lookup(key)?;
        self.effective(index).1
    }

    /// The number of a key: integers, booleans as 0/1, enums as Pantavisor's index, the log
    /// outputs bitmask, or a string key holding only digits. 0 when unknown, unset or not a number.
    pub fn get_u64(&self, key: &str) -> u64 {
        let Some(index) = keys::lookup(key) else {
            return 0;
        };
        match self.effective(index).1 {
            Some(value) => keys::number_of(&KEYS[index], value),
            None => 0,
        }
    }

    /// True for a boolean key set to 1, a non-zero number, or a string saying 1/true/yes/on.
    pub fn get_bool(&self, key: &str) -> bool {
        match self.get(key) {
            Some(value) => keys::parse_bool(value).unwrap_or_else(|| self.get_u64(key) != 0),
            None => false,
        }
    }

    /// The level that gave the key its current value; `None` for an unknown key.
    pub fn level_of(&self, key: &str) -> Option<Level> {
        keys::lookup(key).map(|i| self.effective(i).0)
    }

    /// `PV_STORAGE_MNTPOINT`, or `/storage` when unset or empty.
    pub fn storage_dir(&self) -> PathBuf {
        self.path_or("PV_STORAGE_MNTPOINT", "/storage")
    }

    /// `PV_SYSTEM_RUNDIR`, or `/run/pantavisor/pv` when unset or empty.
    pub fn rundir(&self) -> PathBuf {
        self.path_or("PV_SYSTEM_RUNDIR", "/run/pantavisor/pv")
    }

    /// `PV_LOG_LEVEL`, 0 (fatal) to 5 (all).
    pub fn log_level(&self) -> u8 {
        self.get_u64("PV_LOG_LEVEL").min(5) as u8
    }

    /// Sets (`Some`) or removes (`None`) the value a key has at `level`. At the metadata and
    /// command levels only keys Pantavisor allows at run time can be set. Returns a message for
    /// an unknown key, a key not allowed at that level, or an invalid value, and then leaves
    /// the configuration unchanged.
    pub fn set_override(
        &mut self,
        key: &str,
        value: Option<&str>,
        level: Level,
    ) -> Result<(), String> {
        let index = keys::lookup(key).ok_or_else(|| format!("unknown config key '{key}'"))?;
        let def = &KEYS[index];
        if level == Level::Default {
            return Err(format!(
                "key {} cannot be overridden at the default level",
                def.name
            ));
        }
        match value {
            Some(raw) => {
                if level >= Level::Metadata && !def.runtime {
                    return Err(format!(
                        "key {} cannot be changed at the {level} level",
                        def.name
                    ));
                }
                let stored =
                    keys::normalize(def, raw).map_err(|m| format!("key {}: {m}", def.name))?;
                self.set_layer(index, level, stored);
            }
            None => self.layers[index].retain(|(l, _)| *l != level),
        }
        let verb = if value.is_some() { "set" } else { "cleared" };
        log::debug!("config: {} {verb} at level {level}", def.name);
        Ok(())
    }

    /// Validates `raw` for the key at `index` and records it at `level`.
    fn set_checked(&mut self, index: usize, raw: &str, level: Level) -> Result<(), String> {
        let stored = keys::normalize(&KEYS[index], raw)?;
        self.set_layer(index, level, stored);
        Ok(())
    }

    fn set_layer(&mut self, index: usize, level: Level, stored: String) {
        let layers = &mut self.layers[index];
        let value: Box<str> = stored.into_boxed_str();
        match layers.binary_search_by(|(l, _)| l.cmp(&level)) {
            Ok(pos) => layers[pos].1 = value,
            Err(pos) => layers.insert(pos, (level, value)),
        }
    }

    /// The winning level and value of the key at `index`.
    fn effective(&self, index: usize) -> (Level, Option<&str>) {
        match self.layers[index].last() {
            Some((level, value)) => (*level, Some(value)),
            None => (Level::Default, KEYS[index].default),
        }
    }

    fn path_or(&self, key: &str, fallback: &str) -> PathBuf {
        match self.get(key) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => PathBuf::from(fallback),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_pantavisor() {
        let c = Config::defaults();
        assert_eq!(c.get("PV_STORAGE_MNTPOINT"), None);
        assert_eq!(c.storage_dir(), PathBuf::from("/storage"));
        assert_eq!(c.rundir(), PathBuf::from("/run/pantavisor/pv"));
        assert_eq!(c.log_level(), 0);
        assert_eq!(c.get_u64("PV_UPDATER_COMMIT_DELAY"), 25);
        assert_eq!(c.get_u64("PV_UPDATER_GOALS_TIMEOUT"), 120);
        assert_eq!(c.get_u64("PH_UPDATER_INTERVAL"), 60);
        assert!(c.get_bool("PV_CONTROL_REMOTE"));
        assert_eq!(c.get("PV_LOG_DIR"), Some("/storage/logs/"));
        assert_eq!(c.get("PH_CREDS_HOST"), Some("api.pantahub.com"));
        assert_eq!(c.get_u64("PH_CREDS_PORT"), 443);
        assert_eq!(c.get("PV_SYSTEM_INIT_MODE"), Some("embedded"));
        assert_eq!(c.get("PV_BOOTLOADER_TYPE"), Some("uboot"));
        assert_eq!(c.get_u64("TERN_CTRL_MAX_CONNECTIONS"), 64);
        assert_eq!(c.get_u64("TERN_LOG_MAXSIZE"), 1_048_576);
        assert_eq!(c.get("TERN_MODULE_LOADER"), Some("modprobe"));
        assert_eq!(c.get("TERN_BOARD"), None);
        assert_eq!(c.level_of("TERN_BOARD"), Some(Level::Default));
    }

    #[test]
    fn keys_and_aliases_are_case_insensitive() {
        let mut c = Config::defaults();
        c.set_override("Storage.MntPoint", Some("/data"), Level::Args)
            .unwrap();
        assert_eq!(c.get("PV_STORAGE_MNTPOINT"), Some("/data"));
        assert_eq!(c.get("pv_storage_mntpoint"), Some("/data"));
        assert_eq!(c.get("storage.mntpoint"), Some("/data"));
        assert_eq!(c.get("meta.cache.dir"), Some("/storage/cache/meta"));
        assert_eq!(c.get("no.such.key"), None);
        assert_eq!(c.level_of("no.such.key"), None);
        assert_eq!(Config::canonical_key("log.level"), Some("PV_LOG_LEVEL"));
    }

    #[test]
    fn level_display_gives_pantavisor_strings() {
        let all = [
            (Level::Default, "default"),
            (Level::PvConfFile, "pv conf file"),
            (Level::PhConfFile, "ph conf file"),
            (Level::Env, "env"),
            (Level::Args, "args"),
            (Level::Metadata, "metadata"),
            (Level::Command, "command"),
        ];
        for (level, text) in all {
            assert_eq!(level.to_string(), text);
        }
    }

    #[test]
    fn set_override_at_metadata_wins_and_clearing_restores_lower_level() {
        let mut c = Config::defaults();
        c.set_override("PV_LOG_LEVEL", Some("4"), Level::PvConfFile)
            .unwrap();
        c.set_override("log.level", Some("5"), Level::Metadata)
            .unwrap();
        assert_eq!(c.log_level(), 5);
        assert_eq!(c.level_of("PV_LOG_LEVEL"), Some(Level::Metadata));
        c.set_override("PV_LOG_LEVEL", None, Level::Metadata)
            .unwrap();
        assert_eq!(c.log_level(), 4);
        assert_eq!(c.level_of("PV_LOG_LEVEL"), Some(Level::PvConfFile));
    }

    #[test]
    fn set_override_rejects_bad_input_and_leaves_config_unchanged() {
        let mut c = Config::defaults();
        c.set_override("PV_LOG_LEVEL", Some("3"), Level::Metadata)
            .unwrap();
        let err = c
            .set_override("PV_LOG_LEVEL", Some("9"), Level::Metadata)
            .unwrap_err();
        assert_eq!(err, "key PV_LOG_LEVEL: value '9' is not a number 0-5");
        assert_eq!(c.get("PV_LOG_LEVEL"), Some("3"));
        assert!(
            c.set_override("foo", Some("1"), Level::Metadata)
                .unwrap_err()
                .contains("unknown")
        );
        let err = c
            .set_override("PV_STORAGE_MNTPOINT", Some("/x"), Level::Metadata)
            .unwrap_err();
        assert_eq!(
            err,
            "key PV_STORAGE_MNTPOINT cannot be changed at the metadata level"
        );
        assert_eq!(c.get("PV_STORAGE_MNTPOINT"), None);
        assert!(
            c.set_override("PV_LOG_LEVEL", Some("1"), Level::Default)
                .is_err()
        );
    }

    #[test]
    fn command_level_beats_metadata() {
        let mut c = Config::defaults();
        c.set_override("PV_DEBUG_SSH", Some("0"), Level::Command)
            .unwrap();
        c.set_override("PV_DEBUG_SSH", Some("1"), Level::Metadata)
            .unwrap();
        assert!(!c.get_bool("debug.ssh"));
        assert_eq!(c.level_of("debug.ssh"), Some(Level::Command));
    }

    #[test]
    fn get_u64_gives_enum_index_and_bool_and_outputs_mask() {
        let mut c = Config::defaults();
        c.set_override("PV_SYSTEM_INIT_MODE", Some("appengine"), Level::Args)
            .unwrap();
        c.set_override(
            "PV_LOG_SERVER_OUTPUTS",
            Some("filetree,stdout"),
            Level::Args,
        )
        .unwrap();
        assert_eq!(c.get_u64("PV_SYSTEM_INIT_MODE"), 2);
        assert_eq!(c.get_u64("PV_DEBUG_SHELL"), 1);
        assert_eq!(
            c.get_u64("PV_LOG_SERVER_OUTPUTS"),
            4 | 8 | LOG_OUTPUT_UPDATE
        );
        assert_eq!(c.get_u64("PV_POLICY"), 0);
        assert_eq!(c.get_u64("unknown"), 0);
        assert_eq!(c.get_u64("PV_LOG_DIR_MAXSIZE"), 0);
    }

    #[test]
    fn error_display_names_file_line_and_key() {
        let e = ConfigError::in_file(
            Path::new("board.conf"),
            Some(12),
            Some("PV_LOG_LEVEL"),
            "value 'abc' is not a number 0-5".to_owned(),
        );
        assert_eq!(
            e.to_string(),
            "board.conf:12: key PV_LOG_LEVEL: value 'abc' is not a number 0-5"
        );
        let e = ConfigError::from_origin("--set", "PV_WDT_MODE", "bad".to_owned());
        assert_eq!(e.to_string(), "--set: key PV_WDT_MODE: bad");
    }
}
