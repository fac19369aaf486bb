//! User and device metadata: an ordered key/value list (newest key first, as Pantavisor lists
//! them), persisted as one JSON file rewritten durably on every change. Bounded in keys and
//! value size so a client cannot grow the daemon's memory.

use std::fs;
use std::io;
use std::path::PathBuf;

use super::durable;

/// Most keys one metadata store holds.
pub const MAX_KEYS: usize = 256;
/// Largest value (Pantavisor's cap for meta values).
pub const MAX_VALUE: usize = 4096;

#[derive(Debug)]
pub enum MetaError {
    TooManyKeys,
    Io(io::Error),
}

#[derive(Debug)]
pub struct MetaStore {
    path: PathBuf,
    /// Newest first.
    entries: Vec<(String, String)>,
}

impl MetaStore {
    /// Load from `path`; a missing file is an empty store. A file that does not parse (which
    /// durable writes should make impossible) is kept aside as `<path>.corrupt` and the store
    /// starts empty rather than refusing to boot.
    pub fn load(path: PathBuf) -> MetaStore {
        let entries = match fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Vec<(String, String)>>(&bytes) {
                Ok(e) => e,
                Err(err) => {
                    log::error!(
                        "meta: {} does not parse ({err}); starting empty",
                        path.display()
                    );
                    let _ = fs::rename(&path, path.with_extension("corrupt"));
                    Vec::new()
                }
            },
            Err(_) => Vec::new(),
        };
        MetaStore { path, entries }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }

    /// Insert or update; persisted before it returns. Memory is unchanged on failure.
    pub fn put(&mut self, key: &str, value: &str) -> Result<(), MetaError> {
        let previous = self.entries.clone();
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.to_string(),
            None => {
                if self.entries.len() >= MAX_KEYS {
                    return Err(MetaError::TooManyKeys);
                }
                self.entries.insert(0, (key.to_string(), value.to_string()));
            }
        }
        self.persist().map_err(|e| {
            self.entries = previous;
            MetaError::Io(e)
        })
    }

    /// Remove a key; `Ok(false)` when it was not there.
    pub fn delete(&mut self, key: &str) -> Result<bool, MetaError> {
        let Some(pos) = self.entries.iter().position(|(k, _)| k == key) else {
            return Ok(false);
        };
        let removed = self.entries.remove(pos);
        self.persist().map(|()| true).map_err(|e| {
            self.entries.insert(pos, removed);
            MetaError::Io(e)
        })
    }

    fn persist(&self) -> io::Result<()> {
        let body = serde_json::to_vec(&self.entries).map_err(io::Error::other)?;
        durable::write_atomic(&self.path, &body)
    }
}

/// Render key/value pairs as Pantavisor's flat object: values that parse as a JSON object or
/// array are embedded as they are, anything else becomes a JSON string.
pub fn render_meta<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in pairs.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::Value::from(k).to_string());
        out.push(':');
        // Embedded as written (already valid JSON), keeping the writer's key order, which a
        // round trip through serde_json's sorted map would lose.
        match serde_json::from_str::<serde_json::Value>(v) {
            Ok(j) if j.is_object() || j.is_array() => out.push_str(v.trim()),
            _ => out.push_str(&serde_json::Value::from(v).to_string()),
        }
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(name: &str) -> MetaStore {
        let d = std::env::temp_dir().join(format!("tern-meta-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
        MetaStore::load(d.join("meta.json"))
    }

    #[test]
    fn newest_key_first_and_update_in_place() {
        let mut m = store("order");
        for (k, v) in [("a", "1"), ("b", "2"), ("a", "3")] {
            assert!(m.put(k, v).is_ok());
        }
        assert_eq!(
            render_meta(m.entries().iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            r#"{"b":"2","a":"3"}"#
        );
    }

    #[test]
    fn values_survive_a_reload() {
        let mut m = store("reload");
        assert!(m.put("k", "v").is_ok());
        let again = MetaStore::load(m.path.clone());
        assert_eq!(again.get("k"), Some("v"));
    }

    #[test]
    fn delete_reports_missing_keys() {
        let mut m = store("delete");
        assert!(m.put("k", "v").is_ok());
        assert!(matches!(m.delete("k"), Ok(true)));
        assert!(matches!(m.delete("k"), Ok(false)));
    }

    #[test]
    fn json_values_are_embedded_raw() {
        let s =
            render_meta([("storage", r#"{"total":"1"}"#), ("n", "42"), ("l", "[1]")].into_iter());
        assert_eq!(s, r#"{"storage":{"total":"1"},"n":"42","l":[1]}"#);
    }

    #[test]
    fn key_count_is_capped() {
        let mut m = store("cap");
        for i in 0..MAX_KEYS {
            assert!(m.put(&format!("k{i}"), "v").is_ok());
        }
        assert!(matches!(
            m.put("one-more", "v"),
            Err(MetaError::TooManyKeys)
        ));
        assert!(m.put("k0", "updated").is_ok());
    }
}
