//! Typed reads of fields out of one JSON object, each failure naming the artifact and the
//! dotted field path. Unknown keys are simply never read. Nothing here knows what a field
//! means; the per-document parsers (`run`, `groups`, `bsp`, …) decide that.

use serde_json::{Map, Value};

use super::SpecError;

/// One JSON object inside artifact `artifact`, reached through `path` (`""` for the
/// document itself, `auto_recovery`, `groups[2]`, …).
#[derive(Clone, Copy)]
pub struct Obj<'a> {
    pub artifact: &'a str,
    pub path: &'a str,
    pub map: &'a Map<String, Value>,
}

/// A short rendering of a JSON value for error messages (strings quoted the Pantavisor way,
/// long values cut).
pub fn show(v: &Value) -> String {
    let s = match v {
        Value::String(s) => format!("'{s}'"),
        other => other.to_string(),
    };
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(57).collect();
        format!("{cut}...")
    } else {
        s
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'a> Obj<'a> {
    /// The document `v` of artifact `artifact`, which must be a JSON object.
    pub fn root(artifact: &'a str, v: &'a Value) -> Result<Obj<'a>, SpecError> {
        match v {
            Value::Object(map) => Ok(Obj {
                artifact,
                path: "",
                map,
            }),
            other => Err(SpecError::new(
                artifact,
                "",
                format!("must be an inline JSON object, not {}", kind(other)),
            )),
        }
    }

    /// The dotted path of `key` under this object.
    pub fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub fn err(&self, key: &str, message: impl Into<String>) -> SpecError {
        SpecError::new(self.artifact, &self.field(key), message)
    }

    fn wrong(&self, key: &str, want: &str, got: &Value) -> SpecError {
        self.err(key, format!("expected {want}, got {}", kind(got)))
    }

    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// An optional string field.
    pub fn str(&self, key: &str) -> Result<Option<&'a str>, SpecError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(self.wrong(key, "a string", other)),
        }
    }

    /// An optional boolean field.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, SpecError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.wrong(key, "true or false", other)),
        }
    }

    /// An optional whole number of seconds or a count: a non-negative JSON integer, or a
    /// string of decimal digits (Pantavisor reads these fields with `atoi`/`strtol`).
    pub fn count(&self, key: &str) -> Result<Option<u32>, SpecError> {
        let bad = |v: &Value| self.err(key, format!("{} is not a whole number >= 0", show(v)));
        match self.map.get(key) {
            None => Ok(None),
            Some(v @ Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
                (Some(x), _) => u32::try_from(x).map(Some).map_err(|_| bad(v)),
                // A whole number written as a fraction (`30.0`), as `atoi` would read it.
                (None, Some(x)) if x >= 0.0 && x.fract() == 0.0 && x <= f64::from(u32::MAX) => {
                    Ok(Some(x as u32))
                }
                _ => Err(bad(v)),
            },
            Some(v @ Value::String(s)) => {
                if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad(v));
                }
                s.parse::<u32>().map(Some).map_err(|_| bad(v))
            }
            Some(other) => Err(self.wrong(key, "a whole number", other)),
        }
    }

    /// An optional non-negative number (integer or fraction).
    pub fn number(&self, key: &str) -> Result<Option<f64>, SpecError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(v @ Value::Number(n)) => match n.as_f64() {
                Some(x) if x >= 0.0 && x.is_finite() => Ok(Some(x)),
                _ => Err(self.err(key, format!("{} is not a number >= 0", show(v)))),
            },
            Some(other) => Err(self.wrong(key, "a number", other)),
        }
    }

    /// An optional array field.
    pub fn array(&self, key: &str) -> Result<Option<&'a Vec<Value>>, SpecError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(other) => Err(self.wrong(key, "an array", other)),
        }
    }

    /// An optional array of strings (absent = empty).
    pub fn strings(&self, key: &str) -> Result<Vec<String>, SpecError> {
        let Some(items) = self.array(key)? else {
            return Ok(Vec::new());
        };
        items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(self.err(
                    &format!("{key}[{i}]"),
                    format!("expected a string, got {}", kind(other)),
                )),
            })
            .collect()
    }

    /// An optional nested object (its map; wrap it with [`Obj::nested`] to read fields).
    pub fn object(&self, key: &str) -> Result<Option<&'a Map<String, Value>>, SpecError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(other) => Err(self.wrong(key, "an object", other)),
        }
    }

    /// `value` (found at `key` under this object) as an object, for walking arrays of
    /// objects: `groups[1]`, `services.required[0]`.
    pub fn nested<'b>(&self, path: &'b str, value: &'b Value) -> Result<Obj<'b>, SpecError>
    where
        'a: 'b,
    {
        match value {
            Value::Object(map) => Ok(Obj {
                artifact: self.artifact,
                path,
                map,
            }),
            other => Err(SpecError::new(
                self.artifact,
                path,
                format!("expected an object, got {}", kind(other)),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with<T>(v: Value, f: impl FnOnce(Obj) -> T) -> T {
        let o = Obj::root("a/run.json", &v);
        match o {
            Ok(o) => f(o),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn root_must_be_an_object() {
        let v = json!([1]);
        let e = Obj::root("a/run.json", &v).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("a/run.json: must be an inline JSON object, not an array")
        );
    }

    #[test]
    fn string_field_of_wrong_type_names_the_field() {
        let e = with(json!({"name": 3}), |o| o.str("name").err());
        assert_eq!(
            e.map(|e| e.to_string()).as_deref(),
            Some("a/run.json: name: expected a string, got a number")
        );
    }

    #[test]
    fn count_accepts_integers_and_digit_strings() {
        let cases = [
            (json!({"t": 30}), Some(30)),
            (json!({"t": "45"}), Some(45)),
            (json!({"t": 30.0}), Some(30)),
            (json!({}), None),
        ];
        for (v, want) in cases {
            assert_eq!(with(v, |o| o.count("t").ok().flatten()), want);
        }
    }

    #[test]
    fn count_rejects_negative_fraction_and_text() {
        for v in [
            json!({"t": -1}),
            json!({"t": 1.5}),
            json!({"t": "x"}),
            json!({"t": ""}),
            json!({"t": true}),
            json!({"t": 5_000_000_000u64}),
        ] {
            assert!(with(v.clone(), |o| o.count("t").is_err()), "{v}");
        }
    }

    #[test]
    fn number_accepts_fractions_and_rejects_negatives() {
        assert_eq!(
            with(json!({"f": 2.5}), |o| o.number("f").ok().flatten()),
            Some(2.5)
        );
        assert_eq!(
            with(json!({"f": 2}), |o| o.number("f").ok().flatten()),
            Some(2.0)
        );
        assert!(with(json!({"f": -2}), |o| o.number("f").is_err()));
        assert!(with(json!({"f": "2"}), |o| o.number("f").is_err()));
    }

    #[test]
    fn strings_names_the_bad_element() {
        let e = with(json!({"volumes": ["a", 1]}), |o| o.strings("volumes").err());
        assert_eq!(
            e.map(|e| e.to_string()).as_deref(),
            Some("a/run.json: volumes[1]: expected a string, got a number")
        );
    }

    #[test]
    fn nested_paths_are_dotted() {
        let v = json!({"auto_recovery": {"policy": 1}});
        let e = with(v.clone(), |o| {
            let ar = o.get("auto_recovery").cloned().unwrap_or(Value::Null);
            let n = o.nested("auto_recovery", &ar).ok()?;
            n.str("policy").err().map(|e| e.to_string())
        });
        assert_eq!(
            e.as_deref(),
            Some("a/run.json: auto_recovery.policy: expected a string, got a number")
        );
    }

    #[test]
    fn show_quotes_strings_and_cuts_long_values() {
        assert_eq!(show(&json!("x")), "'x'");
        assert_eq!(show(&json!(5)), "5");
        assert!(show(&json!("y".repeat(100))).ends_with("..."));
    }
}
