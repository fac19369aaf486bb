//! The board support package: `bsp/run.json` (kernel, initrd, FIT, modules, firmware,
//! addons) and `bsp/drivers.json` (`driver-aliases@1`: driver name → module strings). Module
//! strings keep their `${user-meta:key}` references; [`resolve_module`] fills them in later.

use std::collections::BTreeMap;

use serde_json::Value;

use super::SpecError;
use super::fields::Obj;

pub const DRIVER_ALIASES_SPEC: &str = "driver-aliases@1";

/// `bsp/run.json`. Every path is relative to `bsp/`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bsp {
    pub linux: Option<String>,
    pub initrd: Option<String>,
    pub fdt: Option<String>,
    pub fit: Option<String>,
    pub rpiab: Option<String>,
    pub modules: Option<String>,
    /// `modules_<kernel release>` keys: chosen over `modules` when the running kernel's
    /// release matches.
    pub modules_by_release: BTreeMap<String, String>,
    pub firmware: Option<String>,
    pub addons: Vec<String>,
    pub initrd_config: Option<String>,
}

impl Bsp {
    pub fn parse(artifact: &str, doc: &Value) -> Result<Bsp, SpecError> {
        let o = Obj::root(artifact, doc)?;
        let s =
            |k: &str| -> Result<Option<String>, SpecError> { Ok(o.str(k)?.map(str::to_string)) };
        let mut modules_by_release = BTreeMap::new();
        for key in o.map.keys() {
            if let Some(release) = key.strip_prefix("modules_")
                && let Some(path) = s(key)?
            {
                modules_by_release.insert(release.to_string(), path);
            }
        }
        Ok(Bsp {
            linux: s("linux")?,
            initrd: s("initrd")?,
            fdt: s("fdt")?,
            fit: s("fit")?,
            rpiab: s("rpiab")?,
            modules: s("modules")?,
            modules_by_release,
            firmware: s("firmware")?,
            addons: o.strings("addons")?,
            initrd_config: s("initrd_config")?,
        })
    }

    /// Whether the BSP names something a bootloader can boot: a FIT, an rpiab image, or a
    /// kernel with an initrd (Pantavisor refuses a BSP without one outside appengine mode).
    pub fn has_boot_image(&self) -> bool {
        self.fit.is_some()
            || self.rpiab.is_some()
            || (self.linux.is_some() && self.initrd.is_some())
    }

    /// The modules squashfs for kernel `release`.
    pub fn modules_for(&self, release: &str) -> Option<&str> {
        self.modules_by_release
            .get(release)
            .or(self.modules.as_ref())
            .map(String::as_str)
    }
}

/// Which boards a section of drivers.json applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverScope {
    All,
    Dtb(String),
    Ovl(String),
    FitConfig(String),
}

impl DriverScope {
    fn parse(key: &str) -> Option<DriverScope> {
        if key == "all" {
            return Some(DriverScope::All);
        }
        let (kind, name) = key.split_once(':')?;
        let name = name.to_string();
        match kind {
            "dtb" => Some(DriverScope::Dtb(name)),
            "ovl" => Some(DriverScope::Ovl(name)),
            "fitconfig" => Some(DriverScope::FitConfig(name)),
            _ => None,
        }
    }
}

/// One driver alias: a name containers refer to, and the module strings (module name plus
/// arguments, possibly with `${user-meta:key}`) it loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverAlias {
    pub name: String,
    pub modules: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverSection {
    pub scope: DriverScope,
    pub drivers: Vec<DriverAlias>,
}

/// `bsp/drivers.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverAliases {
    pub sections: Vec<DriverSection>,
    /// Keys that are neither `#spec` nor a known scope (ignored).
    pub ignored: Vec<String>,
}

impl DriverAliases {
    pub fn parse(artifact: &str, doc: &Value) -> Result<DriverAliases, SpecError> {
        let o = Obj::root(artifact, doc)?;
        match o.str("#spec")? {
            None | Some(DRIVER_ALIASES_SPEC) => {}
            Some(other) => {
                return Err(o.err("#spec", format!("'{other}' is not '{DRIVER_ALIASES_SPEC}'")));
            }
        }
        let mut out = DriverAliases::default();
        for (key, value) in o.map {
            if key == "#spec" {
                continue;
            }
            let Some(scope) = DriverScope::parse(key) else {
                out.ignored.push(key.clone());
                continue;
            };
            let section = o.nested(key, value)?;
            let mut drivers = Vec::with_capacity(section.map.len());
            for name in section.map.keys() {
                drivers.push(DriverAlias {
                    name: name.clone(),
                    modules: section.strings(name)?,
                });
            }
            out.sections.push(DriverSection { scope, drivers });
        }
        Ok(out)
    }

    /// The module strings of driver `name` in the sections that apply (`all` always, plus
    /// those `applies` accepts), in section order.
    pub fn modules_of(&self, name: &str, applies: impl Fn(&DriverScope) -> bool) -> Vec<&str> {
        self.sections
            .iter()
            .filter(|s| s.scope == DriverScope::All || applies(&s.scope))
            .flat_map(|s| s.drivers.iter().filter(|d| d.name == name))
            .flat_map(|d| d.modules.iter().map(String::as_str))
            .collect()
    }
}

/// Replace every `${user-meta:key}` in `module` with `lookup(key)` (empty when unset).
/// Other `${…}` and a `${` without a closing `}` are kept verbatim.
pub fn resolve_module(module: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(module.len());
    let mut rest = module;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &after[..end];
        match inner.strip_prefix("user-meta:") {
            Some(key) => out.push_str(&lookup(key).unwrap_or_default()),
            None => out.push_str(&rest[start..start + 2 + end + 1]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn example_a_bsp_parses() {
        let doc = json!({"addons":["addon-plymouth.cpio.xz4"],"firmware":"firmware.squashfs",
            "initrd":"pantavisor","initrd_config":"","linux":"kernel.img","modules":"modules.squashfs"});
        let b = Bsp::parse("bsp/run.json", &doc).unwrap_or_default();
        assert_eq!(b.linux.as_deref(), Some("kernel.img"));
        assert_eq!(b.initrd.as_deref(), Some("pantavisor"));
        assert_eq!(b.addons, ["addon-plymouth.cpio.xz4"]);
        assert_eq!(b.initrd_config.as_deref(), Some(""));
        assert!(b.has_boot_image());
    }

    #[test]
    fn example_c_fit_bsp_parses() {
        let doc = json!({"addons":[],"firmware":"firmware.squashfs","fit":"pantavisor.fit",
            "initrd_config":"","modules":"modules.squashfs"});
        let b = Bsp::parse("bsp/run.json", &doc).unwrap_or_default();
        assert_eq!(b.fit.as_deref(), Some("pantavisor.fit"));
        assert!(b.addons.is_empty());
        assert!(b.has_boot_image());
    }

    #[test]
    fn kernel_without_initrd_is_not_bootable() {
        let b = Bsp::parse("bsp/run.json", &json!({"linux":"k"})).unwrap_or_default();
        assert!(!b.has_boot_image());
    }

    #[test]
    fn release_specific_modules_win() {
        let doc = json!({"modules":"m.squashfs","modules_6.1.0":"m61.squashfs"});
        let b = Bsp::parse("bsp/run.json", &doc).unwrap_or_default();
        assert_eq!(b.modules_for("6.1.0"), Some("m61.squashfs"));
        assert_eq!(b.modules_for("5.4.0"), Some("m.squashfs"));
    }

    #[test]
    fn invalid_bsp_values_are_named() {
        let cases = [
            (
                json!("x"),
                "bsp/run.json: must be an inline JSON object, not a string",
            ),
            (
                json!({"linux":1}),
                "bsp/run.json: linux: expected a string, got a number",
            ),
            (
                json!({"addons":"a"}),
                "bsp/run.json: addons: expected an array, got a string",
            ),
            (
                json!({"modules_5.4":2}),
                "bsp/run.json: modules_5.4: expected a string, got a number",
            ),
        ];
        for (doc, want) in cases {
            assert_eq!(
                Bsp::parse("bsp/run.json", &doc).map_err(|e| e.to_string()),
                Err(want.to_string())
            );
        }
    }

    #[test]
    fn drivers_json_keeps_scopes_and_user_meta_references() {
        let doc = json!({"#spec":"driver-aliases@1",
            "all":{"wifi":["cfg80211","brcmfmac ${user-meta:wifi.opts}"]},
            "dtb:imx8":{"usb":["ci_hdrc"]},
            "ovl:cam":{"cam":["ov5640"]},
            "fitconfig:conf-1":{"wifi":["mwifiex"]},
            "future:x":{}});
        let d = DriverAliases::parse("bsp/drivers.json", &doc).unwrap_or_default();
        let scopes: Vec<_> = d.sections.iter().map(|s| s.scope.clone()).collect();
        assert_eq!(
            scopes,
            vec![
                DriverScope::All,
                DriverScope::Dtb("imx8".into()),
                DriverScope::FitConfig("conf-1".into()),
                DriverScope::Ovl("cam".into()),
            ]
        );
        assert_eq!(d.ignored, ["future:x"]);
        assert_eq!(
            d.modules_of("wifi", |_| false),
            ["cfg80211", "brcmfmac ${user-meta:wifi.opts}"]
        );
        assert_eq!(
            d.modules_of("wifi", |s| *s == DriverScope::FitConfig("conf-1".into())),
            ["cfg80211", "brcmfmac ${user-meta:wifi.opts}", "mwifiex"]
        );
    }

    #[test]
    fn invalid_drivers_json_values_are_named() {
        let cases = [
            (
                json!({"#spec":"x@1"}),
                "bsp/drivers.json: #spec: 'x@1' is not 'driver-aliases@1'",
            ),
            (
                json!({"all":[]}),
                "bsp/drivers.json: all: expected an object, got an array",
            ),
            (
                json!({"all":{"wifi":"cfg80211"}}),
                "bsp/drivers.json: all.wifi: expected an array, got a string",
            ),
            (
                json!({"dtb:x":{"wifi":[1]}}),
                "bsp/drivers.json: dtb:x.wifi[0]: expected a string, got a number",
            ),
        ];
        for (doc, want) in cases {
            assert_eq!(
                DriverAliases::parse("bsp/drivers.json", &doc).map_err(|e| e.to_string()),
                Err(want.to_string())
            );
        }
    }

    #[test]
    fn user_meta_references_resolve() {
        let meta = |k: &str| (k == "wifi.opts").then(|| "country=DE".to_string());
        let cases = [
            ("brcmfmac ${user-meta:wifi.opts}", "brcmfmac country=DE"),
            ("m ${user-meta:wifi.opts} x=1", "m country=DE x=1"),
            ("m ${user-meta:missing}", "m "),
            ("m ${device-meta:x}", "m ${device-meta:x}"),
            ("m ${user-meta:wifi.opts", "m ${user-meta:wifi.opts"),
            ("plain", "plain"),
            (
                "${user-meta:wifi.opts}${user-meta:wifi.opts}",
                "country=DEcountry=DE",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(resolve_module(input, meta), want, "{input}");
        }
    }
}
