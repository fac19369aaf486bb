//! Which names a client may give to revisions and metadata keys. Every name ends up as a path
//! component under the storage, so these checks are what keeps `..` and `/` out of it.

/// Longest revision name after `locals/` (Pantavisor's limit).
pub const MAX_REV_NAME: usize = 64;
/// Longest metadata key.
pub const MAX_META_KEY: usize = 256;

/// A single path component safe to use under the storage: printable ASCII, no `/` or `\`,
/// not `.` or `..`, not starting with `.` (the store's temp and hidden names), and no `%`
/// (paths are not percent-decoded: `%2e%2e` is refused rather than taken literally).
pub fn is_safe_component(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b) && !matches!(b, b'/' | b'\\' | b'%'))
}

pub fn is_rev_name(name: &str) -> bool {
    is_safe_component(name, MAX_REV_NAME)
}

/// Metadata keys may contain dots (`pantavisor.arch`) and spaces are refused.
pub fn is_meta_key(key: &str) -> bool {
    is_safe_component(key, MAX_META_KEY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_hidden_names_are_refused() {
        for bad in [
            "", ".", "..", "../x", "a/b", ".tmp-x", "a\\b", "sp ace", "nul\0", "%2e%2e",
        ] {
            assert!(!is_rev_name(bad), "{bad:?}");
        }
        assert!(!is_rev_name(&"a".repeat(65)));
        assert!(is_rev_name(&"a".repeat(64)));
        for good in ["0", "42", "pvtx-1700000000-ab12-x", "test-put-rev"] {
            assert!(is_rev_name(good), "{good}");
        }
    }

    #[test]
    fn meta_keys_allow_dots() {
        assert!(is_meta_key("pantavisor.arch"));
        assert!(is_meta_key("my-key"));
        assert!(!is_meta_key("a/b"));
    }
}
