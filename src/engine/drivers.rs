//! Kernel drivers of the revision (research §1.3, §2.1): each container names driver aliases
//! as `required`, `optional` or `manual`; `bsp/drivers.json` maps an alias to module strings
//! (`name arg=value`, with `${user-meta:key}` filled in). Required and optional drivers are
//! loaded before their container starts (a required one that fails stops the start); manual
//! ones only through `PUT /drivers/...`.
//!
//! Pure: this module turns aliases into loader command lines and keeps the status of every
//! alias; running the loader is the reactor's.

use std::collections::BTreeMap;

use crate::spec::{DriverAliases, DriverScope, State, resolve_module};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Required,
    Optional,
    Manual,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Required => "REQUIRED",
            Kind::Optional => "OPTIONAL",
            Kind::Manual => "MANUAL",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverStatus {
    Loaded,
    Unloaded,
    /// Never tried, or its last load failed.
    Unknown,
}

impl DriverStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DriverStatus::Loaded => "LOADED",
            DriverStatus::Unloaded => "UNLOADED",
            DriverStatus::Unknown => "UNKNOWN",
        }
    }
}

/// Every alias's status, shared by the containers that name it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drivers {
    status: BTreeMap<String, DriverStatus>,
}

/// The drivers a container names, in run.json order: required, optional, manual.
pub fn of_container(state: &State, container: &str) -> Vec<(String, Kind)> {
    let Some(c) = state.containers.iter().find(|c| c.name == container) else {
        return Vec::new();
    };
    let d = &c.drivers;
    d.required
        .iter()
        .map(|n| (n.clone(), Kind::Required))
        .chain(d.optional.iter().map(|n| (n.clone(), Kind::Optional)))
        .chain(d.manual.iter().map(|n| (n.clone(), Kind::Manual)))
        .collect()
}

/// The loader command lines that load (or, `unload`, remove) alias `name`: one per module, the
/// loader's own words then the module string's, split on whitespace and never given to a
/// shell (user metadata ends up in them). `None` when the BSP does not define the alias.
pub fn commands(
    aliases: &DriverAliases,
    name: &str,
    loader: &str,
    unload: bool,
    meta: impl Fn(&str) -> Option<String>,
) -> Option<Vec<Vec<String>>> {
    // Board-specific sections (dtb:, ovl:, fitconfig:) would need the running board's
    // identity, which Tern does not read yet: only `all` applies.
    let modules = aliases.modules_of(name, |s| *s == DriverScope::All);
    let defined = aliases
        .sections
        .iter()
        .any(|s| s.drivers.iter().any(|d| d.name == name));
    if !defined {
        return None;
    }
    let base: Vec<String> = loader.split_whitespace().map(str::to_string).collect();
    Some(
        modules
            .iter()
            .filter_map(|m| {
                let resolved = resolve_module(m, &meta);
                let mut words = resolved.split_whitespace().map(str::to_string);
                let module = words.next()?;
                let mut argv = base.clone();
                if unload {
                    argv.push("-r".into());
                    argv.push(module);
                } else {
                    argv.push(module);
                    argv.extend(words);
                }
                Some(argv)
            })
            .collect(),
    )
}

impl Drivers {
    pub fn status(&self, name: &str) -> DriverStatus {
        self.status
            .get(name)
            .copied()
            .unwrap_or(DriverStatus::Unknown)
    }

    pub fn set(&mut self, name: &str, status: DriverStatus) {
        self.status.insert(name.to_string(), status);
    }

    /// The `GET /drivers` body for a container: `{}` (an object, as Pantavisor) when it names
    /// none, else `[{"name","type","status"}]`.
    pub fn json(&self, drivers: &[(String, Kind)]) -> String {
        if drivers.is_empty() {
            return "{}".into();
        }
        // Pantavisor's key order (serde_json's map would sort them).
        let items: Vec<String> = drivers
            .iter()
            .map(|(n, k)| {
                format!(
                    r#"{{"name":{},"type":"{}","status":"{}"}}"#,
                    serde_json::Value::from(n.as_str()),
                    k.as_str(),
                    self.status(n).as_str()
                )
            })
            .collect();
        format!("[{}]", items.join(","))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::spec::parse_state;
    use serde_json::json;

    fn state() -> State {
        let s = json!({
            "#spec": "pantavisor-service-system@1",
            "bsp/run.json": {"linux": "k"},
            "bsp/k": "a".repeat(64),
            "bsp/drivers.json": {"#spec": "driver-aliases@1",
                "all": {"usbnet": ["g_ether host_addr=${user-meta:usb.mac} quiet"],
                        "wifi": ["cfg80211", "mt76x2e"], "none": []},
                "dtb:board-a": {"wifi": ["brcmfmac"]}},
            "app/run.json": {"name": "app", "type": "lxc", "root-volume": "r",
                "drivers": {"required": ["wifi"], "optional": ["usbnet"], "manual": ["bt"]}},
            "app/r": "b".repeat(64),
        });
        parse_state(s.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn containers_name_their_drivers_by_kind() {
        let s = state();
        assert_eq!(
            of_container(&s, "app"),
            [
                ("wifi".to_string(), Kind::Required),
                ("usbnet".to_string(), Kind::Optional),
                ("bt".to_string(), Kind::Manual)
            ]
        );
        assert!(of_container(&s, "nope").is_empty());
    }

    #[test]
    fn aliases_become_loader_command_lines_without_a_shell() {
        let s = state();
        let a = s.drivers.clone().unwrap();
        let meta = |k: &str| (k == "usb.mac").then(|| "02:00:00:00:00:01; reboot".to_string());
        assert_eq!(
            commands(&a, "wifi", "modprobe -q", false, meta).unwrap(),
            [
                vec!["modprobe", "-q", "cfg80211"],
                vec!["modprobe", "-q", "mt76x2e"]
            ]
        );
        // The metadata stays one argument's worth of words: no shell ever sees it.
        assert_eq!(
            commands(&a, "usbnet", "modprobe", false, meta).unwrap(),
            [vec![
                "modprobe",
                "g_ether",
                "host_addr=02:00:00:00:00:01;",
                "reboot",
                "quiet"
            ]]
        );
        assert_eq!(
            commands(&a, "wifi", "modprobe", true, meta).unwrap(),
            [
                vec!["modprobe", "-r", "cfg80211"],
                vec!["modprobe", "-r", "mt76x2e"]
            ]
        );
        assert_eq!(commands(&a, "none", "modprobe", false, meta), Some(vec![]));
        assert_eq!(commands(&a, "bt", "modprobe", false, meta), None);
    }

    #[test]
    fn status_json_is_an_object_when_empty() {
        let mut d = Drivers::default();
        assert_eq!(d.json(&[]), "{}");
        d.set("wifi", DriverStatus::Loaded);
        assert_eq!(
            d.json(&[("wifi".into(), Kind::Required), ("bt".into(), Kind::Manual)]),
            r#"[{"name":"wifi","type":"REQUIRED","status":"LOADED"},{"name":"bt","type":"MANUAL","status":"UNKNOWN"}]"#
        );
    }
}
