//! Reading and splitting KEY=VALUE files (`pantavisor.config` style). This file only reads the
//! file it is given and splits its lines; what the keys mean is decided by the caller.

use std::io::Read;
use std::path::Path;

use super::ConfigError;

/// Largest configuration file accepted, in bytes.
pub(crate) const MAX_FILE_BYTES: usize = 64 * 1024;
/// Most lines accepted in a configuration file.
pub(crate) const MAX_FILE_LINES: usize = 1024;

/// One `KEY=VALUE` line, trimmed and unquoted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// 1-based line number.
    pub line: usize,
    pub key: String,
    pub value: String,
}

/// Reads a configuration file of at most [`MAX_FILE_BYTES`]. `Ok(None)` when the file does not
/// exist and `missing_ok` is set.
pub(crate) fn read_file(path: &Path, missing_ok: bool) -> Result<Option<String>, ConfigError> {
    let file_err = |message: String| ConfigError::in_file(path, None, None, message);
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if missing_ok && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_err(format!("cannot open: {e}"))),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| file_err(format!("cannot read: {e}")))?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(file_err(format!(
            "file is larger than {} KiB",
            MAX_FILE_BYTES / 1024
        )));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| file_err("file is not valid UTF-8".to_owned()))
}

/// Splits the text of a configuration file into entries. Blank lines and lines starting with
/// `#` are skipped; a line without `=`, an empty key, or more than [`MAX_FILE_LINES`] lines is
/// an error naming `path` and the line.
pub(crate) fn parse_text(path: &Path, text: &str) -> Result<Vec<Entry>, ConfigError> {
    let mut entries = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        if line > MAX_FILE_LINES {
            let message = format!("file has more than {MAX_FILE_LINES} lines");
            return Err(ConfigError::in_file(path, Some(line), None, message));
        }
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some((key, value)) = trimmed.split_once('=') else {
            let message = format!("expected KEY=VALUE, found '{trimmed}'");
            return Err(ConfigError::in_file(path, Some(line), None, message));
        };
        let key = key.trim();
        if key.is_empty() {
            let message = "empty key before '='".to_owned();
            return Err(ConfigError::in_file(path, Some(line), None, message));
        }
        entries.push(Entry {
            line,
            key: key.to_owned(),
            value: unquote(value.trim()).to_owned(),
        });
    }
    Ok(entries)
}

/// Strips one pair of surrounding double quotes.
fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn entry(line: usize, key: &str, value: &str) -> Entry {
        Entry {
            line,
            key: key.to_owned(),
            value: value.to_owned(),
        }
    }

    #[test]
    fn parse_skips_comments_and_blank_lines_and_strips_quotes() {
        let text = "# board file\n\n  PV_LOG_LEVEL = 4  \n\t# indented comment\nPV_POLICY=\"test\"\r\nstorage.mntpoint=\"/data/my storage\"\nPV_OEM_NAME=\nPV_NET_BRDEV=\"\n";
        let got = parse_text(Path::new("b.conf"), text).unwrap();
        assert_eq!(
            got,
            vec![
                entry(3, "PV_LOG_LEVEL", "4"),
                entry(5, "PV_POLICY", "test"),
                entry(6, "storage.mntpoint", "/data/my storage"),
                entry(7, "PV_OEM_NAME", ""),
                entry(8, "PV_NET_BRDEV", "\""),
            ]
        );
    }

    #[test]
    fn value_keeps_everything_after_the_first_equals() {
        let got = parse_text(Path::new("b.conf"), "TERN_REBOOT_CMD=sh -c 'a=b'\n").unwrap();
        assert_eq!(got, vec![entry(1, "TERN_REBOOT_CMD", "sh -c 'a=b'")]);
    }

    #[test]
    fn line_without_equals_is_an_error_with_file_and_line() {
        let err = parse_text(Path::new("board.conf"), "A=1\n\nPV_LOG_LEVEL 4\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("board.conf:3: "), "{text}");
        assert!(text.contains("PV_LOG_LEVEL 4"), "{text}");
        assert_eq!(err.line, Some(3));
    }

    #[test]
    fn empty_key_is_an_error() {
        let err = parse_text(Path::new("board.conf"), "  = 4\n").unwrap_err();
        assert_eq!(err.to_string(), "board.conf:1: empty key before '='");
    }

    #[test]
    fn more_than_1024_lines_is_an_error() {
        let ok = "# c\n".repeat(MAX_FILE_LINES);
        assert!(parse_text(Path::new("c"), &ok).is_ok());
        let too_many = format!("{ok}A=1\n");
        let err = parse_text(Path::new("c"), &too_many).unwrap_err();
        assert_eq!(err.line, Some(MAX_FILE_LINES + 1));
        assert!(err.to_string().contains("more than 1024 lines"));
    }
}
