//! The bodies of `GET /config` (legacy aliases, typed values) and `GET /config2` (canonical
//! keys, string values, level names). Both are compact JSON in key-table order.

use super::Config;
use super::keys::{self, KEYS, Kind};

/// Appends `text` as a JSON string literal.
fn push_json_string(out: &mut String, text: &str) {
    out.push_str(&serde_json::Value::String(text.to_owned()).to_string());
}

impl Config {
    /// Body of `GET /config`: `{"creds.host":"api.pantahub.com","creds.port":443,...}`. Only keys
    /// with a legacy alias appear. Integers, enums (Pantavisor's index) and the log outputs mask
    /// are numbers, booleans are `true`/`false`, strings are strings and unset strings `null`.
    pub fn config_json(&self) -> String {
        let mut out = String::with_capacity(4096);
        out.push('{');
        for (index, def) in KEYS.iter().enumerate() {
            let Some(alias) = def.alias else {
                continue;
            };
            if out.len() > 1 {
                out.push(',');
            }
            push_json_string(&mut out, alias);
            out.push(':');
            let value = self.effective(index).1;
            match (def.kind, value) {
                (_, None) => out.push_str("null"),
                (Kind::Str, Some(text)) => push_json_string(&mut out, text),
                (Kind::Bool, Some(text)) => {
                    out.push_str(if text == "1" { "true" } else { "false" });
                }
                (Kind::Int { .. } | Kind::Enum(_) | Kind::Outputs, Some(text)) => {
                    out.push_str(&keys::number_of(def, text).to_string());
                }
            }
        }
        out.push('}');
        out
    }

    /// Body of `GET /config2`:
    /// `[{"key":"PH_CREDS_HOST","value":"api.pantahub.com","modified":"default"},...]`. Values
    /// are always strings; unset ones are `"(null)"`.
    pub fn config2_json(&self) -> String {
        let mut out = String::with_capacity(12 * 1024);
        out.push('[');
        for (index, def) in KEYS.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            let (level, value) = self.effective(index);
            out.push_str("{\"key\":");
            push_json_string(&mut out, def.name);
            out.push_str(",\"value\":");
            push_json_string(&mut out, value.unwrap_or("(null)"));
            out.push_str(",\"modified\":");
            push_json_string(&mut out, level.as_str());
            out.push('}');
        }
        out.push(']');
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::Level;
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn config2_is_an_array_of_key_value_modified_with_null_placeholder() {
        let mut c = Config::defaults();
        c.set_override("PH_CREDS_PORT", Some("43"), Level::Env)
            .unwrap();
        let body = c.config2_json();
        assert!(body.starts_with(
            r#"[{"key":"PH_CREDS_HOST","value":"api.pantahub.com","modified":"default"},{"key":"PH_CREDS_ID","value":"(null)","modified":"default"},{"key":"PH_CREDS_PORT","value":"43","modified":"env"},"#
        ), "{body}");
        let parsed: Vec<Value> = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed.len(), KEYS.len());
        assert!(
            parsed
                .iter()
                .all(|o| o.as_object().unwrap().len() == 3 && o["value"].is_string())
        );
        let last = parsed.last().unwrap();
        assert_eq!(last["key"], "TERN_HUB_REQUEST_TIMEOUT");
    }

    #[test]
    fn config2_prints_bools_as_digits_and_escapes_strings() {
        let mut c = Config::defaults();
        c.set_override("PV_DEBUG_SSH", Some("false"), Level::Env)
            .unwrap();
        c.set_override("TERN_BOARD", Some("a \"quoted\"\\board\n"), Level::Args)
            .unwrap();
        let parsed: Vec<Value> = serde_json::from_str(&c.config2_json()).unwrap();
        let find = |k: &str| parsed.iter().find(|o| o["key"] == k).unwrap().clone();
        assert_eq!(
            find("PV_DEBUG_SSH"),
            json!({"key":"PV_DEBUG_SSH","value":"0","modified":"env"})
        );
        assert_eq!(find("TERN_BOARD")["value"], "a \"quoted\"\\board\n");
        assert_eq!(find("PV_SYSTEM_INIT_MODE")["value"], "embedded");
        assert_eq!(find("PV_LOG_SERVER_OUTPUTS")["value"], "132");
    }

    #[test]
    fn config_json_types_numbers_bools_strings_and_enum_numbers() {
        let mut c = Config::defaults();
        c.set_override("PV_SYSTEM_INIT_MODE", Some("appengine"), Level::PvConfFile)
            .unwrap();
        c.set_override("PV_POLICY", Some("test"), Level::Env)
            .unwrap();
        c.set_override("PH_CREDS_PORT", Some("43"), Level::Env)
            .unwrap();
        c.set_override("PV_DEBUG_SSH", Some("0"), Level::Env)
            .unwrap();
        let body = c.config_json();
        assert!(
            body.starts_with(
                r#"{"creds.host":"api.pantahub.com","creds.id":null,"creds.port":43,"#
            ),
            "{body}"
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["system.init.mode"], json!(2));
        assert_eq!(v["policy"], json!("test"));
        assert_eq!(v["debug.ssh"], json!(false));
        assert_eq!(v["debug.shell"], json!(true));
        assert_eq!(v["log.level"], json!(0));
        assert_eq!(v["secureboot.mode"], json!(2));
        assert_eq!(v["wdt.mode"], json!(1));
        assert_eq!(v["bootloader.type"], json!(0));
        assert_eq!(v["log.server.outputs"], json!(132));
        assert_eq!(v["storage.mntpoint"], Value::Null);
        assert_eq!(
            v["PV_SECUREBOOT_OEM_TRUSTORE"],
            json!("ca-oem-certificates")
        );
        let obj = v.as_object().unwrap();
        assert!(!obj.contains_key("PV_LOG_LEVEL"));
        assert!(!obj.keys().any(|k| k.starts_with("TERN_")));
        assert!(!obj.contains_key("meta.cache.dir"));
    }
}
