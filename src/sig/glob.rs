//! pvr's globs for `pvs.include` / `pvs.exclude` (doublestar v1 semantics, which `pvr sig`
//! signs with): a pattern and a state key are split at `/`; a `**` component matches one or
//! more whole key components (zero when more pattern follows), `*` any run within one
//! component, `?` one character but not `/`, `[a-z]`/`[^…]` a class, `{a,b}` alternatives,
//! `\c` the character c. The whole key must match.
//!
//! Owns matching only. It must never take time exponential in what a hostile header sends:
//! patterns are capped in length and alternatives, and `*` backtracks linearly.

/// Longest pattern honoured; a longer one matches nothing.
const MAX_PATTERN: usize = 512;
/// Most alternatives a pattern's `{…}` may expand to; beyond, it matches nothing.
const MAX_ALTERNATIVES: usize = 64;

/// A compiled glob: its `{…}` alternatives expanded and split into components once, so a
/// signature's globs are not re-parsed for every state key.
pub struct Pattern {
    /// Each alternative's components; empty when the pattern is malformed or too big (then
    /// it matches nothing, as in pvr where such a pattern aborts the signing).
    alternatives: Vec<Vec<String>>,
}

impl Pattern {
    pub fn new(pattern: &str) -> Pattern {
        let expanded = if pattern.len() > MAX_PATTERN {
            None
        } else {
            expand_braces(pattern)
        };
        Pattern {
            alternatives: expanded
                .unwrap_or_default()
                .iter()
                .map(|p| p.split('/').map(str::to_owned).collect())
                .collect(),
        }
    }

    /// Whether the whole `key` matches.
    pub fn matches(&self, key: &str) -> bool {
        let names: Vec<&str> = key.split('/').collect();
        self.alternatives.iter().any(|parts| {
            let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
            match_components(&parts, &names)
        })
    }
}

/// Whether `key` matches `pattern` (compiles it each time: for one-off checks).
pub fn matches(pattern: &str, key: &str) -> bool {
    Pattern::new(pattern).matches(key)
}

/// `{a,b}` alternatives expanded into whole patterns (innermost first), or `None` when
/// unbalanced or too many.
fn expand_braces(pattern: &str) -> Option<Vec<String>> {
    let bytes = pattern.as_bytes();
    let mut open = None;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'{' => open = Some(i),
            b'}' => {
                let start = open?;
                let (head, body, tail) =
                    (&pattern[..start], &pattern[start + 1..i], &pattern[i + 1..]);
                let mut out = Vec::new();
                for alt in split_alternatives(body) {
                    for p in expand_braces(&format!("{head}{alt}{tail}"))? {
                        out.push(p);
                        if out.len() > MAX_ALTERNATIVES {
                            return None;
                        }
                    }
                }
                return Some(out);
            }
            _ => {}
        }
        i += 1;
    }
    if open.is_some() {
        return None;
    }
    Some(vec![pattern.to_string()])
}

fn split_alternatives(body: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                out.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&body[start..]);
    out
}

fn match_components(pats: &[&str], names: &[&str]) -> bool {
    match (pats.split_first(), names.is_empty()) {
        (None, true) => true,
        (None, false) | (Some(_), true) => false,
        (Some((&"**", [])), false) => true,
        (Some((&"**", rest)), false) => {
            (0..names.len()).any(|i| match_components(rest, &names[i..]))
        }
        (Some((first, rest)), false) => {
            match_component(first.as_bytes(), names[0].as_bytes())
                && match_components(rest, &names[1..])
        }
    }
}

/// One component: `*`, `?`, classes, escapes. Iterative, remembering only the last `*`
/// (the classic linear wildcard match).
fn match_component(pat: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pat.len() && pat[p] == b'*' {
            while p < pat.len() && pat[p] == b'*' {
                p += 1;
            }
            star = Some((p, n));
            continue;
        }
        if let Some((consumed, true)) = single(&pat[p..], &name[n..]) {
            p += consumed.0;
            n += consumed.1;
            continue;
        }
        match star {
            Some((sp, sn)) => {
                // Let the last `*` take one more character (a whole UTF-8 sequence).
                let step = utf8_len(name[sn]);
                p = sp;
                n = sn + step;
                star = Some((sp, sn + step));
            }
            None => return false,
        }
    }
    pat[p..].iter().all(|c| *c == b'*')
}

/// Matches one pattern element against the start of `name`: `Some(((pattern bytes, name
/// bytes), matched))`, `None` at the end of the pattern or on a malformed class.
fn single(pat: &[u8], name: &[u8]) -> Option<((usize, usize), bool)> {
    let first = *pat.first()?;
    let nlen = utf8_len(name[0]).min(name.len());
    let ch = &name[..nlen];
    match first {
        b'?' => Some(((1, nlen), true)),
        b'\\' => {
            let l = utf8_len(*pat.get(1)?);
            let lit = pat.get(1..1 + l)?;
            Some(((1 + l, l), name.starts_with(lit)))
        }
        b'[' => {
            let end = class_end(pat)?;
            Some(((end + 1, nlen), class_matches(&pat[1..end], ch)?))
        }
        _ => {
            let l = utf8_len(first);
            let lit = pat.get(..l)?;
            Some(((l, l), name.starts_with(lit)))
        }
    }
}

fn class_end(pat: &[u8]) -> Option<usize> {
    let mut i = 1;
    while i < pat.len() {
        match pat[i] {
            b'\\' => i += 2,
            b']' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// `[…]` body against one character; `None` when malformed (empty, a dangling `-`).
fn class_matches(body: &[u8], ch: &[u8]) -> Option<bool> {
    let text = std::str::from_utf8(body).ok()?;
    let c = std::str::from_utf8(ch).ok()?.chars().next()?;
    let (negated, text) = match text.strip_prefix('^') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let mut chars = text.chars().peekable();
    chars.peek()?;
    let mut hit = false;
    while let Some(mut low) = chars.next() {
        if low == '-' {
            return None;
        }
        if low == '\\' {
            low = chars.next()?;
        }
        let mut high = low;
        if chars.peek() == Some(&'-') {
            chars.next();
            high = chars.next()?;
            if high == '-' {
                return None;
            }
            if high == '\\' {
                high = chars.next()?;
            }
        }
        hit |= low <= c && c <= high;
    }
    Some(hit != negated)
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn double_star_crosses_slashes_single_star_does_not() {
        assert!(matches("bsp/**", "bsp/run.json"));
        assert!(matches("bsp/**", "bsp/a/b/c"));
        assert!(
            !matches("bsp/**", "bsp"),
            "needs at least one component after bsp/"
        );
        assert!(!matches("bsp/**", "bspx/run.json"));
        assert!(matches("**", "a/b/c"));
        assert!(matches("**", "#spec"));
        assert!(matches("_config/app/**", "_config/app/etc/x.conf"));
        assert!(matches("bsp/*", "bsp/run.json"));
        assert!(!matches("bsp/*", "bsp/a/b"));
        assert!(matches("*", "device.json"));
        assert!(!matches("*", "app/run.json"));
        assert!(matches("**/src.json", "app/src.json"));
        assert!(matches("**/src.json", "a/b/src.json"));
        assert!(matches("a/**/b", "a/b"), "a middle ** may match nothing");
        assert!(matches("a/**/b", "a/x/y/b"));
    }

    #[test]
    fn the_whole_key_must_match() {
        assert!(matches("app/src.json", "app/src.json"));
        assert!(!matches("app/src.json", "app/src.json.bak"));
        assert!(!matches("src.json", "app/src.json"));
        assert!(matches("#spec", "#spec"));
        assert!(!matches("#spec", "#specs"));
    }

    #[test]
    fn question_marks_classes_alternatives_and_escapes() {
        assert!(matches("app?/run.json", "app1/run.json"));
        assert!(!matches("app?", "app/"));
        assert!(matches("app[0-9]/*", "app7/x"));
        assert!(!matches("app[^0-9]/*", "app7/x"));
        assert!(matches("{bsp,app}/run.json", "app/run.json"));
        assert!(matches("{bsp,app}/run.json", "bsp/run.json"));
        assert!(!matches("{bsp,app}/run.json", "net/run.json"));
        assert!(matches(r"a\*b", "a*b"));
        assert!(!matches(r"a\*b", "axb"));
        assert!(matches("*.json", "ünïcode.json"));
        assert!(matches("?.json", "ü.json"));
    }

    #[test]
    fn malformed_or_huge_patterns_match_nothing_quickly() {
        assert!(!matches("[", "["));
        assert!(!matches("{a,b", "a"));
        assert!(!matches(&"a".repeat(600), &"a".repeat(600)));
        // Many stars against a long near-miss: linear backtracking, not exponential.
        let pat = "*a".repeat(30) + "b";
        assert!(!matches(&pat, &"a".repeat(400)));
        let many = "{a,b}".repeat(10);
        assert!(!matches(&many, "aaaaaaaaaa"), "over 64 alternatives");
    }
}
