//! xconnect service declarations: what a container requires (`services` in run.json) and
//! what it provides (`<c>/services.json`, `service-manifest-xconnect@1`). Parsing only; the
//! mesh itself is someone else's.

use serde_json::Value;

use super::SpecError;
use super::fields::Obj;

pub const XCONNECT_SPEC: &str = "service-manifest-xconnect@1";

/// `type` of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceType {
    Rest,
    Dbus,
    Unix,
    Drm,
    Wayland,
    Input,
}

impl ServiceType {
    pub fn parse(s: &str) -> Option<ServiceType> {
        match s {
            "rest" => Some(ServiceType::Rest),
            "dbus" => Some(ServiceType::Dbus),
            "unix" => Some(ServiceType::Unix),
            "drm" => Some(ServiceType::Drm),
            "wayland" => Some(ServiceType::Wayland),
            "input" => Some(ServiceType::Input),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::Rest => "rest",
            ServiceType::Dbus => "dbus",
            ServiceType::Unix => "unix",
            ServiceType::Drm => "drm",
            ServiceType::Wayland => "wayland",
            ServiceType::Input => "input",
        }
    }
}

/// One entry of `services.required` / `services.optional` in run.json.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRequirement {
    pub name: String,
    pub kind: Option<ServiceType>,
    pub role: Option<String>,
    pub interface: Option<String>,
    pub target: Option<String>,
}

/// `services` of run.json.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Services {
    pub required: Vec<ServiceRequirement>,
    pub optional: Vec<ServiceRequirement>,
}

/// One entry of `services.json`: a named service on a socket, or (with `owns`) a D-Bus
/// well-known name this container owns on a hosted bus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceExport {
    pub name: Option<String>,
    pub kind: Option<ServiceType>,
    pub socket: Option<String>,
    pub bus: Option<String>,
    pub owns: Option<String>,
    pub role: Option<String>,
    pub allow: Vec<String>,
}

fn kind(o: Obj) -> Result<Option<ServiceType>, SpecError> {
    match o.str("type")? {
        None => Ok(None),
        Some(s) => ServiceType::parse(s).map(Some).ok_or_else(|| {
            o.err(
                "type",
                format!("'{s}' is not rest, dbus, unix, drm, wayland or input"),
            )
        }),
    }
}

fn opt(o: Obj, key: &str) -> Result<Option<String>, SpecError> {
    Ok(o.str(key)?.map(str::to_string))
}

/// `services` of run.json at `o`.
pub fn parse_requirements(o: Obj) -> Result<Services, SpecError> {
    let list = |key: &str| -> Result<Vec<ServiceRequirement>, SpecError> {
        let Some(items) = o.array(key)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{i}]", o.field(key));
            // Pantavisor also takes a bare string as the service name.
            if let Value::String(name) = item {
                out.push(ServiceRequirement {
                    name: name.clone(),
                    kind: None,
                    role: None,
                    interface: None,
                    target: None,
                });
                continue;
            }
            let e = o.nested(&path, item)?;
            let name = match e.str("name")? {
                Some(n) if !n.is_empty() => n.to_string(),
                _ => return Err(e.err("name", "missing (a required service needs a name)")),
            };
            out.push(ServiceRequirement {
                name,
                kind: kind(e)?,
                role: opt(e, "role")?,
                interface: opt(e, "interface")?,
                target: opt(e, "target")?,
            });
        }
        Ok(out)
    };
    Ok(Services {
        required: list("required")?,
        optional: list("optional")?,
    })
}

/// A whole `<c>/services.json` document (`{"#spec":…,"services":[…]}`, or the older bare
/// array of services).
pub fn parse_exports(artifact: &str, doc: &Value) -> Result<Vec<ServiceExport>, SpecError> {
    let (items, field): (&Vec<Value>, &str) = match doc {
        Value::Array(items) => (items, ""),
        Value::Object(_) => {
            let o = Obj::root(artifact, doc)?;
            match o.str("#spec")? {
                None => {}
                Some(XCONNECT_SPEC) => {}
                Some(other) => {
                    return Err(o.err("#spec", format!("'{other}' is not '{XCONNECT_SPEC}'")));
                }
            }
            match o.array("services")? {
                Some(items) => (items, "services"),
                None => return Ok(Vec::new()),
            }
        }
        _ => {
            return Err(SpecError::new(
                artifact,
                "",
                "must be an inline JSON object or array",
            ));
        }
    };
    let holder = serde_json::Map::new();
    let root = Obj {
        artifact,
        path: "",
        map: &holder,
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("{field}[{i}]");
        let e = root.nested(&path, item)?;
        let owns = opt(e, "owns")?;
        let name = opt(e, "name")?;
        if owns.is_none() && name.as_deref().is_none_or(str::is_empty) {
            return Err(e.err("name", "missing (a service needs a name, or 'owns')"));
        }
        out.push(ServiceExport {
            name,
            kind: kind(e)?,
            socket: opt(e, "socket")?,
            bus: opt(e, "bus")?,
            owns,
            role: opt(e, "role")?,
            allow: e.strings("allow")?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reqs(v: Value) -> Result<Services, String> {
        let doc = json!({ "services": v });
        let o = Obj::root("c/run.json", &doc).map_err(|e| e.to_string())?;
        let inner = o.get("services").cloned().unwrap_or(Value::Null);
        let n = o.nested("services", &inner).map_err(|e| e.to_string())?;
        parse_requirements(n).map_err(|e| e.to_string())
    }

    #[test]
    fn example_d_provider_manifest_parses() {
        let doc = json!({"#spec":"service-manifest-xconnect@1","services":[
            {"name":"network-manager","type":"rest","socket":"/run/nm/api.sock"}]});
        assert_eq!(
            parse_exports("nm/services.json", &doc),
            Ok(vec![ServiceExport {
                name: Some("network-manager".into()),
                kind: Some(ServiceType::Rest),
                socket: Some("/run/nm/api.sock".into()),
                ..ServiceExport::default()
            }])
        );
    }

    #[test]
    fn legacy_bare_array_manifest_parses() {
        let doc = json!([{"name":"a","type":"unix","socket":"/s"}]);
        let got = parse_exports("x/services.json", &doc).map(|v| v.len());
        assert_eq!(got, Ok(1));
    }

    #[test]
    fn owns_entry_needs_no_name() {
        let doc = json!({"services":[{"type":"dbus","bus":"system-bus","owns":"org.x.Foo",
            "role":"svc","allow":["a","b"]}]});
        let got = parse_exports("x/services.json", &doc);
        let e = got.ok().and_then(|v| v.into_iter().next());
        assert_eq!(
            e.map(|e| (e.owns, e.bus, e.allow)),
            Some((
                Some("org.x.Foo".into()),
                Some("system-bus".into()),
                vec!["a".into(), "b".into()]
            ))
        );
    }

    #[test]
    fn manifest_without_services_is_empty() {
        assert_eq!(
            parse_exports("x/services.json", &json!({"#spec":XCONNECT_SPEC})),
            Ok(vec![])
        );
    }

    #[test]
    fn invalid_manifests_are_named() {
        let cases = [
            (
                json!("abc"),
                "x/services.json: must be an inline JSON object or array",
            ),
            (
                json!({"#spec":"other@1"}),
                "x/services.json: #spec: 'other@1' is not 'service-manifest-xconnect@1'",
            ),
            (
                json!({"services":{}}),
                "x/services.json: services: expected an array, got an object",
            ),
            (
                json!({"services":[{"type":"rest"}]}),
                "x/services.json: services[0].name: missing (a service needs a name, or 'owns')",
            ),
            (
                json!({"services":[{"name":"a","type":"grpc"}]}),
                "x/services.json: services[0].type: 'grpc' is not rest, dbus, unix, drm, wayland or input",
            ),
            (
                json!([3]),
                "x/services.json: [0]: expected an object, got a number",
            ),
        ];
        for (doc, want) in cases {
            assert_eq!(
                parse_exports("x/services.json", &doc).map_err(|e| e.to_string()),
                Err(want.to_string())
            );
        }
    }

    #[test]
    fn requirements_take_objects_and_bare_names() {
        let s = reqs(
            json!({"required":[{"name":"network-manager","type":"rest","role":"client",
            "interface":"v1","target":"/run/nm.sock"}],"optional":["logs"]}),
        );
        let s = s.unwrap_or_default();
        assert_eq!(s.required.len(), 1);
        assert_eq!(s.required[0].kind, Some(ServiceType::Rest));
        assert_eq!(s.required[0].target.as_deref(), Some("/run/nm.sock"));
        assert_eq!(s.optional[0].name, "logs");
    }

    #[test]
    fn invalid_requirements_are_named() {
        let cases = [
            (
                json!({"required":[{}]}),
                "c/run.json: services.required[0].name: missing (a required service needs a name)",
            ),
            (
                json!({"optional":[{"name":"a","type":"x"}]}),
                "c/run.json: services.optional[0].type: 'x' is not rest, dbus, unix, drm, wayland or input",
            ),
            (
                json!({"required":"a"}),
                "c/run.json: services.required: expected an array, got a string",
            ),
            (
                json!({"required":[1]}),
                "c/run.json: services.required[0]: expected an object, got a number",
            ),
        ];
        for (v, want) in cases {
            assert_eq!(reqs(v), Err(want.to_string()));
        }
    }

    #[test]
    fn service_types_round_trip() {
        for s in ["rest", "dbus", "unix", "drm", "wayland", "input"] {
            assert_eq!(ServiceType::parse(s).map(|t| t.as_str()), Some(s));
        }
    }
}
