//! [`Config::load`]: defaults, then the `--config` file, the environment, `--set`, and the
//! Pantahub credentials file found under the storage directory those levels name.

use std::path::Path;

use super::keys::{self, KEYS};
use super::parse;
use super::{Config, ConfigError, Level, LoadOptions};

/// Where the Pantahub configuration lives, relative to the storage directory.
const PH_CONF_FILE: &str = "config/pantahub.config";

/// Environment names considered at all; everything else in the environment is ignored.
const ENV_PREFIXES: &[&str] = &["PV_", "PH_", "TERN_"];

impl Config {
    /// Builds the configuration from `opts`. Reads at most two files: `opts.file` (it must
    /// exist) and `<storage>/config/pantahub.config` (optional; only `PH_*` keys are taken).
    /// Unknown keys in a file are logged and ignored; unknown environment names are ignored;
    /// an unknown `--set` key, a malformed line or an invalid value is an error.
    pub fn load(opts: &LoadOptions) -> Result<Config, ConfigError> {
        let mut config = Config::defaults();
        if let Some(path) = &opts.file
            && let Some(text) = parse::read_file(path, false)?
        {
            config.apply_file(path, &text, Level::PvConfFile)?;
        }
        for (name, value) in &opts.env {
            config.apply_env(name, value)?;
        }
        for (key, value) in &opts.sets {
            let index = keys::lookup(key)
                .ok_or_else(|| ConfigError::from_origin("--set", key, "unknown key".to_owned()))?;
            config
                .set_checked(index, value, Level::Args)
                .map_err(|m| ConfigError::from_origin("--set", key, m))?;
        }
        let ph_conf = config.storage_dir().join(PH_CONF_FILE);
        // A storage path that is not a directory has no such file; opening the storage
        // reports it (as a storage failure, not a configuration one).
        if config.storage_dir().is_dir()
            && let Some(text) = parse::read_file(&ph_conf, true)?
        {
            config.apply_file(&ph_conf, &text, Level::PhConfFile)?;
        }
        config.check_secureboot_possible()?;
        Ok(config)
    }

    /// A build without the signature verifier cannot honour a mode that checks signatures:
    /// refusing the configuration beats pretending to check.
    fn check_secureboot_possible(&self) -> Result<(), ConfigError> {
        const KEY: &str = "PV_SECUREBOOT_MODE";
        match self.get(KEY) {
            Some(mode) if !crate::sig::AVAILABLE && mode != "disabled" => {
                let origin = self.level_of(KEY).map_or("config", Level::as_str);
                Err(ConfigError::from_origin(
                    origin,
                    KEY,
                    format!(
                        "'{mode}' needs signature checks, but {}; set it to disabled",
                        crate::sig::UNAVAILABLE
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Applies every known key of a file at `level`. The ph conf file only contributes `PH_*`.
    fn apply_file(&mut self, path: &Path, text: &str, level: Level) -> Result<(), ConfigError> {
        for entry in parse::parse_text(path, text)? {
            let Some(index) = keys::lookup(&entry.key) else {
                log::warn!(
                    "{}:{}: unknown config key '{}' ignored",
                    path.display(),
                    entry.line,
                    entry.key
                );
                continue;
            };
            if level == Level::PhConfFile && !KEYS[index].name.starts_with("PH_") {
                log::warn!(
                    "{}:{}: only PH_* keys are read from this file; '{}' ignored",
                    path.display(),
                    entry.line,
                    entry.key
                );
                continue;
            }
            self.set_checked(index, &entry.value, level)
                .map_err(|m| ConfigError::in_file(path, Some(entry.line), Some(&entry.key), m))?;
        }
        Ok(())
    }

    /// Applies one environment variable if its name is a known key with a known prefix.
    fn apply_env(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let has_prefix = ENV_PREFIXES.iter().any(|p| {
            name.get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p))
        });
        if !has_prefix {
            return Ok(());
        }
        let Some(index) = keys::lookup_canonical(name) else {
            return Ok(());
        };
        self.set_checked(index, value, Level::Env)
            .map_err(|m| ConfigError::from_origin("environment", name, m))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh, empty directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("tern-config-{}-{name}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn write(&self, rel: &str, text: &str) -> PathBuf {
            let path = self.0.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn opts(file: Option<PathBuf>, env: &[(&str, &str)], sets: &[(&str, &str)]) -> LoadOptions {
        LoadOptions {
            file,
            env: pairs(env),
            sets: pairs(sets),
        }
    }

    #[test]
    fn load_without_anything_gives_defaults() {
        let c = Config::load(&LoadOptions::default()).unwrap();
        assert_eq!(c.level_of("PV_LOG_LEVEL"), Some(Level::Default));
        assert_eq!(c.get_u64("PV_UPDATER_COMMIT_DELAY"), 25);
    }

    #[test]
    fn file_with_comments_blank_lines_quotes_and_aliases_loads() {
        let dir = TempDir::new("file");
        let file = dir.write(
            "board.conf",
            "# dev board\n\nPV_LOG_LEVEL=3\n  pv_policy = \"test\"\nstorage.mntpoint=\"/none\"\nsystem.init.mode=appengine\n",
        );
        let c = Config::load(&opts(Some(file), &[], &[])).unwrap();
        assert_eq!(c.log_level(), 3);
        assert_eq!(c.get("policy"), Some("test"));
        assert_eq!(c.storage_dir(), PathBuf::from("/none"));
        assert_eq!(c.get_u64("PV_SYSTEM_INIT_MODE"), 2);
        assert_eq!(c.level_of("PV_POLICY"), Some(Level::PvConfFile));
    }

    #[test]
    fn bad_value_in_file_names_file_line_and_key() {
        let dir = TempDir::new("badvalue");
        let file = dir.write("board.conf", "# x\nPV_POLICY=a\nlog.level=abc\n");
        let err = Config::load(&opts(Some(file.clone()), &[], &[])).unwrap_err();
        assert_eq!(err.file.as_deref(), Some(file.as_path()));
        assert_eq!(err.line, Some(3));
        assert_eq!(err.key.as_deref(), Some("log.level"));
        let text = err.to_string();
        assert!(text.contains("board.conf:3: key log.level:"), "{text}");
        assert!(text.contains("value 'abc' is not a number 0-5"), "{text}");
    }

    #[test]
    fn bad_enum_in_file_is_an_error() {
        let dir = TempDir::new("badenum");
        let file = dir.write("board.conf", "PV_WDT_MODE=sometimes\n");
        let text = Config::load(&opts(Some(file), &[], &[]))
            .unwrap_err()
            .to_string();
        assert!(
            text.contains(":1: key PV_WDT_MODE: value 'sometimes' is not one of disabled, shutdown, startup, always"),
            "{text}"
        );
    }

    #[test]
    fn unknown_key_in_file_only_warns() {
        let dir = TempDir::new("unknown");
        let file = dir.write(
            "board.conf",
            "PV_WDT_ENABLED=0\nPV_STORAGE_OPTS=\nPV_LOG_LEVEL=2\n",
        );
        let c = Config::load(&opts(Some(file), &[], &[])).unwrap();
        assert_eq!(c.log_level(), 2);
    }

    #[test]
    fn missing_config_file_is_an_error() {
        let dir = TempDir::new("missing");
        let err = Config::load(&opts(Some(dir.0.join("nope.conf")), &[], &[])).unwrap_err();
        assert!(err.to_string().contains("nope.conf: cannot open"), "{err}");
    }

    #[test]
    fn file_over_64_kib_is_an_error() {
        let dir = TempDir::new("big");
        let line = format!("# {}\n", "x".repeat(1000));
        let file = dir.write("big.conf", &line.repeat(70));
        let err = Config::load(&opts(Some(file), &[], &[])).unwrap_err();
        assert!(err.to_string().contains("larger than 64 KiB"), "{err}");
        assert_eq!(err.line, None);
        let just_fits = dir.write("fits.conf", &"#".repeat(parse::MAX_FILE_BYTES));
        assert!(Config::load(&opts(Some(just_fits), &[], &[])).is_ok());
    }

    #[test]
    fn precedence_is_file_then_env_then_sets() {
        let dir = TempDir::new("levels");
        let file = dir.write(
            "board.conf",
            "PV_LOG_LEVEL=1\nPV_POLICY=file\nPV_OEM_NAME=file\nPV_WDT_TIMEOUT=20\n",
        );
        let env = [
            ("PV_LOG_LEVEL", "2"),
            ("PV_POLICY", "env"),
            ("HOME", "/root"),
            ("PV_NOT_A_KEY", "x"),
            ("TERN_SSHD_CMD", "dropbear -F"),
        ];
        let sets = [("log.level", "3")];
        let c = Config::load(&opts(Some(file), &env, &sets)).unwrap();
        assert_eq!(
            (c.log_level(), c.level_of("PV_LOG_LEVEL")),
            (3, Some(Level::Args))
        );
        assert_eq!(
            (c.get("PV_POLICY"), c.level_of("PV_POLICY")),
            (Some("env"), Some(Level::Env))
        );
        assert_eq!(c.level_of("PV_OEM_NAME"), Some(Level::PvConfFile));
        assert_eq!(c.get_u64("PV_WDT_TIMEOUT"), 20);
        assert_eq!(c.get("TERN_SSHD_CMD"), Some("dropbear -F"));
        assert_eq!(c.level_of("PV_DEBUG_SSH"), Some(Level::Default));
    }

    #[test]
    fn bad_env_value_is_an_error_naming_the_environment() {
        let err = Config::load(&opts(None, &[("PV_DEBUG_SSH", "maybe")], &[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment: key PV_DEBUG_SSH: value 'maybe' is not a boolean (0, 1, true, false, yes, no, on, off)"
        );
    }

    #[test]
    fn env_ignores_aliases_and_unknown_names() {
        let c = Config::load(&opts(None, &[("log.level", "5"), ("PH_FOO", "1")], &[])).unwrap();
        assert_eq!(c.log_level(), 0);
    }

    #[test]
    fn bad_or_unknown_set_is_an_error_naming_set() {
        let err =
            Config::load(&opts(None, &[], &[("TERN_CTRL_MAX_CONNECTIONS", "0")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--set: key TERN_CTRL_MAX_CONNECTIONS: value '0' is not a number 1-1024"
        );
        let err = Config::load(&opts(None, &[], &[("NOPE", "1")])).unwrap_err();
        assert_eq!(err.to_string(), "--set: key NOPE: unknown key");
    }

    #[test]
    fn ph_conf_file_under_storage_gives_only_ph_keys() {
        let dir = TempDir::new("phconf");
        let storage = dir.0.join("storage");
        dir.write(
            "storage/config/pantahub.config",
            "PH_CREDS_HOST=hub.example.com\ncreds.port=8443\nPV_LOG_LEVEL=5\nPH_CREDS_SECRET=s3cr3t\n",
        );
        let storage_str = storage.to_str().unwrap();
        let env = [("PH_CREDS_PORT", "9000")];
        let c = Config::load(&opts(None, &env, &[("PV_STORAGE_MNTPOINT", storage_str)])).unwrap();
        assert_eq!(c.get("PH_CREDS_HOST"), Some("hub.example.com"));
        assert_eq!(c.level_of("PH_CREDS_HOST"), Some(Level::PhConfFile));
        assert_eq!(
            c.get_u64("PH_CREDS_PORT"),
            9000,
            "env beats the ph conf file"
        );
        assert_eq!(c.level_of("PH_CREDS_PORT"), Some(Level::Env));
        assert_eq!(c.log_level(), 0, "PV_ keys in the ph conf file are ignored");
        assert_eq!(c.level_of("PV_LOG_LEVEL"), Some(Level::Default));
        assert_eq!(c.get("creds.secret"), Some("s3cr3t"));
    }

    #[test]
    fn bad_value_in_ph_conf_file_is_an_error() {
        let dir = TempDir::new("phbad");
        let ph = dir.write("config/pantahub.config", "\nPH_CREDS_PORT=443x\n");
        let storage = dir.0.to_str().unwrap();
        let err = Config::load(&opts(None, &[("PV_STORAGE_MNTPOINT", storage)], &[])).unwrap_err();
        assert_eq!(err.file.as_deref(), Some(ph.as_path()));
        assert_eq!(err.line, Some(2));
        assert_eq!(err.key.as_deref(), Some("PH_CREDS_PORT"));
    }
}
