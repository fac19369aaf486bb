//! The canonical JSON pvr signs: object keys sorted by code point, no whitespace, strings
//! with only `"`, `\` and control characters escaped (`\n \r \t \b \f`, otherwise `\u00XX` in
//! uppercase hex), other characters as UTF-8; numbers as canonicaljson-go writes them (integers
//! as digits — `1.0` and `1e21` included — other numbers as `d.dddE±x` with a capital E).
//!
//! serde_json's writer differs (lowercase `\u001f`, `1.5` for `1.5E0`), so this is its own.
//! Owns serialisation only; it never reorders array elements or drops anything.

use serde_json::{Number, Value};

/// The canonical bytes of `value`.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write(value, &mut out);
    out
}

/// The canonical bytes of the object made of `entries` (in any order; keys unique), without
/// building that object.
pub fn object_to_vec(entries: &[(&str, &Value)]) -> Vec<u8> {
    let mut sorted: Vec<(&str, &Value)> = entries.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::new();
    write_object(sorted.into_iter(), &mut out);
    out
}

fn write_object<'a>(entries: impl Iterator<Item = (&'a str, &'a Value)>, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(k, out);
        out.push(b':');
        write(v, out);
    }
    out.push(b'}');
}

fn write(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(number(n).as_bytes()),
        Value::String(s) => string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Sorted here rather than trusting the map's order: serde_json keeps insertion
            // order when any crate in the build turns on its `preserve_order` feature.
            let mut entries: Vec<(&str, &Value)> =
                map.iter().map(|(k, v)| (k.as_str(), v)).collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            write_object(entries.into_iter(), out);
        }
    }
}

fn string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// A JSON number in canonical form. serde_json keeps integers exactly (i64/u64) and every
/// other number as the nearest f64; that f64's shortest decimal text is what gets normalised
/// (pvr normalises the literal text, so the two differ only for literals with more than 17
/// significant digits, which no state JSON carries).
fn number(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    normalize(&format!("{f:e}")).unwrap_or_else(|| "0".into())
}

/// canonicaljson-go's rule on a JSON number literal: value = D × 10^p with D the significant
/// digits; an integer (p ≥ 0) is written as digits, anything else as `D[0].D[1..]E<exp>` with
/// at least one fractional digit. Zero (and -0) is `0`. `None` when `literal` is not a number.
pub fn normalize(literal: &str) -> Option<String> {
    let (negative, rest) = match literal.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, literal),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let all: String = format!("{int}{frac}");
    let digits = all.trim_start_matches('0');
    let significant = digits.trim_end_matches('0');
    if significant.is_empty() {
        return Some("0".into());
    }
    let trailing = (digits.len() - significant.len()) as i64;
    let p = exp - frac.len() as i64 + trailing;
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if p >= 0 {
        out.push_str(significant);
        out.extend(std::iter::repeat_n('0', usize::try_from(p).ok()?));
    } else {
        let sci = significant.len() as i64 - 1 + p;
        out.push_str(&significant[..1]);
        out.push('.');
        out.push_str(if significant.len() > 1 {
            &significant[1..]
        } else {
            "0"
        });
        out.push('E');
        out.push_str(&sci.to_string());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: &Value) -> String {
        String::from_utf8(to_vec(v)).unwrap_or_default()
    }

    #[test]
    fn keys_sorted_by_code_point_at_every_depth_without_whitespace() {
        let v: Value = serde_json::from_str(
            r##"{ "b": 1, "a": { "z": [3, 2, {"y": null, "x": true}], "B": false }, "#spec": "x", "é": 0, "Z": "" }"##,
        )
        .unwrap_or_default();
        assert_eq!(
            canon(&v),
            r##"{"#spec":"x","Z":"","a":{"B":false,"z":[3,2,{"x":true,"y":null}]},"b":1,"é":0}"##
        );
    }

    #[test]
    fn strings_escape_only_quote_backslash_and_controls_uppercase() {
        let v =
            json!("q\" b\\ n\n r\r t\t b\u{8} f\u{c} nul\u{0} us\u{1f} del\u{7f} / < > & \u{2028}");
        assert_eq!(
            canon(&v),
            "\"q\\\" b\\\\ n\\n r\\r t\\t b\\b f\\f nul\\u0000 us\\u001F del\u{7f} / < > & \u{2028}\""
        );
    }

    #[test]
    fn unicode_is_written_as_utf8_not_escaped() {
        let v = json!({"ключ": "значение ✓ 😀"});
        assert_eq!(canon(&v), "{\"ключ\":\"значение ✓ 😀\"}");
    }

    #[test]
    fn numbers_as_canonicaljson_go_writes_them() {
        // Parsed from text, as the state JSON is.
        for (text, want) in [
            ("0", "0"),
            ("-0", "0"),
            ("42", "42"),
            ("-42", "-42"),
            ("18446744073709551615", "18446744073709551615"),
            ("1.0", "1"),
            ("-3.000", "-3"),
            ("1e21", "1000000000000000000000"),
            ("2.5e2", "250"),
            ("1.5", "1.5E0"),
            ("-1.5", "-1.5E0"),
            ("0.001", "1.0E-3"),
            ("0.025", "2.5E-2"),
            ("123.456", "1.23456E2"),
            ("1e-7", "1.0E-7"),
            ("-2.5E-3", "-2.5E-3"),
        ] {
            let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            assert_eq!(canon(&v), want, "{text}");
        }
    }

    #[test]
    fn literal_normalisation_matches_canonicaljson_go_table() {
        // Rows of canonicaljson-go's own float test table.
        for (want, inputs) in [
            ("2.5E-3", &["0.025e-1", "0.25e-2", "0.2500e-2"][..]),
            ("2.5E-2", &["0.025e0", "0.02500", "2.50e-2"][..]),
            ("2.5E0", &["0.025e2", "25e-1", "250.00e-2", "2.500"][..]),
            ("25", &["0.25e2", "25.00", "250e-1", "2.5e+1"][..]),
            ("2500", &["25e2", "250.0e1"][..]),
        ] {
            for input in inputs {
                assert_eq!(normalize(input).as_deref(), Some(want), "{input}");
            }
        }
        assert_eq!(normalize("abc"), None);
        assert_eq!(normalize("1.2.3"), None);
    }
}
