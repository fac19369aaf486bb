//! Key types and values: how a key's value is checked, stored and turned into a number, and
//! how a name or legacy alias finds its key in the table (`table.rs`). Nothing here does I/O.

use super::table::EXTRA_ALIASES;
pub(crate) use super::table::KEYS;

/// Log server outputs of `PV_LOG_SERVER_OUTPUTS` and the bit each sets in the key's value.
pub const LOG_OUTPUTS: &[(&str, u64)] = &[
    ("nullsink", 1),
    ("singlefile", 1 << 1),
    ("filetree", 1 << 2),
    ("stdout", 1 << 3),
    ("stdout.containers", 1 << 4),
    ("stdout.pantavisor", 1 << 5),
    ("stdout_direct", 1 << 6),
];
/// Bit Pantavisor always adds to `PV_LOG_SERVER_OUTPUTS` (outputs of the update log).
pub const LOG_OUTPUT_UPDATE: u64 = 1 << 7;

/// How a key's value is checked, stored and printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Any text.
    Str,
    /// A decimal integer in `min..=max`, stored in canonical decimal form.
    Int { min: u64, max: u64 },
    /// 0/1/true/false/yes/no/on/off, stored as "0" or "1".
    Bool,
    /// One name of the list, stored as the name; `GET /config` prints its index.
    Enum(&'static [&'static str]),
    /// A comma-separated list of [`LOG_OUTPUTS`] names, stored as the bitmask in decimal.
    Outputs,
}

/// One configuration key.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyDef {
    /// Canonical name, e.g. `PV_STORAGE_MNTPOINT`.
    pub name: &'static str,
    /// Legacy dotted alias shown by `GET /config`; keys without one are absent there.
    pub alias: Option<&'static str>,
    pub kind: Kind,
    /// Default value in stored form; `None` is unset (`(null)`).
    pub default: Option<&'static str>,
    /// May be set at the metadata and command levels.
    pub runtime: bool,
}

/// Index in [`KEYS`] of a canonical name or alias, compared case-insensitively.
pub(crate) fn lookup(name: &str) -> Option<usize> {
    let name = name.trim();
    if let Some(i) = KEYS.iter().position(|k| k.name.eq_ignore_ascii_case(name)) {
        return Some(i);
    }
    if let Some(i) = KEYS
        .iter()
        .position(|k| k.alias.is_some_and(|a| a.eq_ignore_ascii_case(name)))
    {
        return Some(i);
    }
    let (_, canonical) = EXTRA_ALIASES
        .iter()
        .find(|(alias, _)| alias.eq_ignore_ascii_case(name))?;
    KEYS.iter().position(|k| k.name == *canonical)
}

/// Index in [`KEYS`] of a canonical name only (environment variables have no aliases).
pub(crate) fn lookup_canonical(name: &str) -> Option<usize> {
    KEYS.iter().position(|k| k.name.eq_ignore_ascii_case(name))
}

/// Checks `raw` against the key's type and returns the value in stored form, or a message
/// saying what was expected.
pub(crate) fn normalize(def: &KeyDef, raw: &str) -> Result<String, String> {
    match def.kind {
        Kind::Str => Ok(raw.to_owned()),
        Kind::Int { min, max } => match parse_decimal(raw) {
            Some(n) if (min..=max).contains(&n) => Ok(n.to_string()),
            _ => Err(format!("value '{raw}' is not a number {min}-{max}")),
        },
        Kind::Bool => match parse_bool(raw) {
            Some(true) => Ok("1".to_owned()),
            Some(false) => Ok("0".to_owned()),
            None => Err(format!(
                "value '{raw}' is not a boolean (0, 1, true, false, yes, no, on, off)"
            )),
        },
        Kind::Enum(values) => values
            .iter()
            .find(|v| v.eq_ignore_ascii_case(raw))
            .map(|v| (*v).to_owned())
            .ok_or_else(|| format!("value '{raw}' is not one of {}", values.join(", "))),
        Kind::Outputs => parse_outputs(raw)
            .map(|mask| mask.to_string())
            .ok_or_else(|| {
                let names: Vec<&str> = LOG_OUTPUTS.iter().map(|(n, _)| *n).collect();
                format!(
                    "value '{raw}' is not a comma-separated list of {}",
                    names.join(", ")
                )
            }),
    }
}

/// The number of a stored value: the integer itself, 0/1 for booleans, the list index for
/// enums, the bitmask for log outputs; strings that hold a plain number give it, others 0.
pub(crate) fn number_of(def: &KeyDef, stored: &str) -> u64 {
    match def.kind {
        Kind::Enum(values) => values.iter().position(|v| *v == stored).unwrap_or(0) as u64,
        _ => parse_decimal(stored).unwrap_or(0),
    }
}

/// Digits only (no sign, no spaces, no unit), at most what fits in a u64.
fn parse_decimal(raw: &str) -> Option<u64> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

pub(crate) fn parse_bool(raw: &str) -> Option<bool> {
    const TRUE: &[&str] = &["1", "true", "yes", "on"];
    const FALSE: &[&str] = &["0", "false", "no", "off"];
    if TRUE.iter().any(|t| t.eq_ignore_ascii_case(raw)) {
        Some(true)
    } else if FALSE.iter().any(|f| f.eq_ignore_ascii_case(raw)) {
        Some(false)
    } else {
        None
    }
}

/// Pantavisor's rule: OR the named outputs, skip empty items, always add the update bit.
fn parse_outputs(raw: &str) -> Option<u64> {
    let mut mask = LOG_OUTPUT_UPDATE;
    for item in raw.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (_, bit) = LOG_OUTPUTS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(item))?;
        mask |= bit;
    }
    Some(mask)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn every_default_is_already_in_stored_form() {
        for def in KEYS {
            // The outputs mask is stored as a number but written as names.
            let written = match def.kind {
                Kind::Outputs => Some("filetree"),
                _ => def.default,
            };
            if let Some(w) = written {
                assert_eq!(
                    normalize(def, w).as_deref().ok(),
                    def.default,
                    "{}",
                    def.name
                );
            }
        }
    }

    #[test]
    fn names_and_aliases_are_unique_and_resolve_to_their_key() {
        for (i, def) in KEYS.iter().enumerate() {
            assert_eq!(lookup(def.name), Some(i), "{}", def.name);
            if let Some(alias) = def.alias {
                assert_eq!(lookup(alias), Some(i), "{alias}");
            }
        }
        for (alias, canonical) in EXTRA_ALIASES {
            assert_eq!(lookup(alias), lookup(canonical));
            assert!(lookup(canonical).is_some());
        }
    }

    #[test]
    fn table_holds_pantavisor_keys_then_tern_keys() {
        // Pantavisor's 101 keys; Tern's own follow (their number grows with features).
        assert!(KEYS.len() > 101);
        assert!(
            KEYS[..101]
                .iter()
                .all(|k| k.name.starts_with("PV_") || k.name.starts_with("PH_"))
        );
        assert!(
            KEYS[101..]
                .iter()
                .all(|k| k.name.starts_with("TERN_") && k.alias.is_none())
        );
    }

    #[test]
    fn int_values_are_digits_in_range() {
        let level = &KEYS[lookup("PV_LOG_LEVEL").unwrap()];
        assert_eq!(normalize(level, "05").as_deref(), Ok("5"));
        for bad in [
            "",
            "6",
            "-1",
            "+1",
            "1 ",
            "4k",
            "0x1",
            "abc",
            "99999999999999999999999",
        ] {
            let err = normalize(level, bad).unwrap_err();
            assert_eq!(err, format!("value '{bad}' is not a number 0-5"));
        }
    }

    #[test]
    fn bool_values_accept_words_and_digits_only() {
        let ssh = &KEYS[lookup("debug.ssh").unwrap()];
        for (raw, stored) in [
            ("1", "1"),
            ("TRUE", "1"),
            ("yes", "1"),
            ("0", "0"),
            ("False", "0"),
            ("no", "0"),
            ("off", "0"),
        ] {
            assert_eq!(normalize(ssh, raw).as_deref(), Ok(stored), "{raw}");
        }
        for bad in ["2", "", "y", "enabled"] {
            assert!(
                normalize(ssh, bad)
                    .unwrap_err()
                    .contains("is not a boolean"),
                "{bad}"
            );
        }
    }

    #[test]
    fn enum_values_must_be_in_the_list() {
        let mode = &KEYS[lookup("PV_SYSTEM_INIT_MODE").unwrap()];
        assert_eq!(normalize(mode, "AppEngine").as_deref(), Ok("appengine"));
        assert_eq!(number_of(mode, "appengine"), 2);
        let err = normalize(mode, "cloud").unwrap_err();
        assert_eq!(
            err,
            "value 'cloud' is not one of embedded, standalone, appengine"
        );
        let bl = &KEYS[lookup("bootloader.type").unwrap()];
        assert_eq!(number_of(bl, "uboot-ab"), 4);
        assert!(normalize(bl, "lilo").is_err());
    }

    #[test]
    fn log_outputs_become_pantavisors_bitmask() {
        let outs = &KEYS[lookup("log.server.outputs").unwrap()];
        assert_eq!(normalize(outs, "filetree").as_deref(), Ok("132"));
        assert_eq!(
            normalize(outs, "filetree,stdout_direct").as_deref(),
            Ok("196")
        );
        assert_eq!(normalize(outs, "").as_deref(), Ok("128"));
        assert!(normalize(outs, "filetree,syslog").is_err());
        assert!(normalize(outs, "196").is_err());
    }
}
