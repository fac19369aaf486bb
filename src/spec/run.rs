//! `<c>/run.json` (`service-manifest-run@1`): one container's runtime description. This
//! file turns the JSON into [`RunJson`], with the fields a group may fill in still optional;
//! `super::parse_state` places the container in a group and resolves them into a
//! [`super::Container`]. Unknown keys are ignored; a present key with a bad value is refused.

use std::collections::BTreeMap;

use serde_json::Value;

use super::fields::{Obj, show};
use super::recovery::AutoRecovery;
use super::services::{Services, parse_requirements};
use super::{RestartPolicy, SpecError, StatusGoal};

/// `storage.<path>.persistence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    Permanent,
    Revision,
    Boot,
}

impl Persistence {
    pub fn parse(s: &str) -> Option<Persistence> {
        match s {
            "permanent" => Some(Persistence::Permanent),
            "revision" => Some(Persistence::Revision),
            "boot" => Some(Persistence::Boot),
            _ => None,
        }
    }
}

/// One `storage` entry: a path (or name, e.g. `lxc-overlay`) in the container and how long
/// what is written there lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    pub path: String,
    pub persistence: Persistence,
    /// A disk of device.json, when not the default one.
    pub disk: Option<String>,
}

/// `drivers` of run.json: driver alias names of bsp/drivers.json.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drivers {
    pub required: Vec<String>,
    pub optional: Vec<String>,
    pub manual: Vec<String>,
}

/// `network.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    Host,
    Pool,
}

/// `network` of run.json. A `pool` implies pool mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub mode: NetworkMode,
    pub pool: Option<String>,
    pub hostname: Option<String>,
    pub ip: Option<String>,
    pub mac: Option<String>,
}

/// Which group a run.json asks for, and through which key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRequest {
    None,
    Group(String),
    /// Deprecated `runlevel` (one of data, root, platform, app).
    Runlevel(String),
}

/// A parsed run.json before group defaults are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct RunJson {
    pub name: String,
    pub kind: String,
    pub config: Option<String>,
    pub root_volume: Option<String>,
    pub volumes: Vec<String>,
    pub storage: Vec<Storage>,
    pub group: GroupRequest,
    pub status_goal: Option<StatusGoal>,
    pub restart_policy: Option<RestartPolicy>,
    pub mgmt: bool,
    pub auto_recovery: Option<AutoRecovery>,
    pub drivers: Drivers,
    pub services: Services,
    pub logs: Vec<BTreeMap<String, String>>,
    pub network: Option<Network>,
    pub export: bool,
    pub dev_log: Option<bool>,
    pub automodfw: bool,
    pub share: Option<String>,
    /// Non-fatal remarks (deprecated keys, …) for the caller to log.
    pub warnings: Vec<String>,
}

const RUNLEVELS: [&str; 4] = ["data", "root", "platform", "app"];

pub fn parse(artifact: &str, doc: &Value) -> Result<RunJson, SpecError> {
    let o = Obj::root(artifact, doc)?;
    let mut warnings = Vec::new();
    let name = match o.str("name")? {
        Some(n) if !n.is_empty() && n != "." && n != ".." && !n.contains(['/', '\0']) => {
            n.to_string()
        }
        Some(n) => return Err(o.err("name", format!("'{n}' is not a valid container name"))),
        None => return Err(o.err("name", "missing (every container needs a name)")),
    };
    let kind = match o.str("type")? {
        None | Some("lxc") => "lxc".to_string(),
        Some(other) => return Err(o.err("type", format!("'{other}' is not lxc"))),
    };
    let group = match (o.str("group")?, o.str("runlevel")?) {
        (Some(g), rl) => {
            if rl.is_some() {
                warnings.push(format!("{artifact}: runlevel ignored, group '{g}' is set"));
            }
            GroupRequest::Group(g.to_string())
        }
        (None, Some(rl)) if RUNLEVELS.contains(&rl) => {
            warnings.push(format!("{artifact}: runlevel is deprecated, use group"));
            GroupRequest::Runlevel(rl.to_string())
        }
        (None, Some(rl)) => {
            return Err(o.err(
                "runlevel",
                format!("'{rl}' is not data, root, platform or app"),
            ));
        }
        (None, None) => GroupRequest::None,
    };
    let status_goal = match o.str("status_goal")? {
        None => None,
        Some(s) => {
            Some(StatusGoal::parse(s).ok_or_else(|| o.err("status_goal", StatusGoal::invalid(s)))?)
        }
    };
    let restart_policy = match o.str("restart_policy")? {
        None => None,
        Some(s) => Some(
            RestartPolicy::parse(s)
                .ok_or_else(|| o.err("restart_policy", RestartPolicy::invalid(s)))?,
        ),
    };
    let auto_recovery = match o.get("auto_recovery") {
        None => None,
        Some(v) => Some(AutoRecovery::parse(o.nested("auto_recovery", v)?)?),
    };
    let services = match o.get("services") {
        None => Services::default(),
        Some(v) => parse_requirements(o.nested("services", v)?)?,
    };
    let drivers = match o.get("drivers") {
        None => Drivers::default(),
        Some(v) => {
            let d = o.nested("drivers", v)?;
            Drivers {
                required: d.strings("required")?,
                optional: d.strings("optional")?,
                manual: d.strings("manual")?,
            }
        }
    };
    let automodfw = match o.get("automodfw") {
        None => true,
        Some(Value::String(s)) => s != "no",
        Some(Value::Bool(b)) => *b,
        Some(v) => return Err(o.err("automodfw", format!("{} is not \"no\" or \"yes\"", show(v)))),
    };
    Ok(RunJson {
        name,
        kind,
        config: o.str("config")?.map(str::to_string),
        root_volume: o.str("root-volume")?.map(str::to_string),
        volumes: o.strings("volumes")?,
        storage: storage(o)?,
        group,
        status_goal,
        restart_policy,
        mgmt: roles(o)?,
        auto_recovery,
        drivers,
        services,
        logs: logs(o)?,
        network: network(o)?,
        export: o.array("exports")?.is_some(),
        dev_log: o.bool("dev-log")?,
        automodfw,
        share: o.str("share")?.map(str::to_string),
        warnings,
    })
}

/// `roles`: absent ⇒ mgmt; an array grants mgmt only if it lists `"mgmt"` (`"nobody"` is
/// accepted and grants nothing); an object (Pantavisor accepts one) grants nothing.
fn roles(o: Obj) -> Result<bool, SpecError> {
    match o.get("roles") {
        None => Ok(true),
        Some(Value::Object(_)) => Ok(false),
        Some(Value::Array(_)) => {
            let mut mgmt = false;
            for (i, r) in o.strings("roles")?.iter().enumerate() {
                match r.as_str() {
                    "mgmt" => mgmt = true,
                    "nobody" => {}
                    other => {
                        return Err(o.err(
                            &format!("roles[{i}]"),
                            format!("'{other}' is not mgmt or nobody"),
                        ));
                    }
                }
            }
            Ok(mgmt)
        }
        Some(v) => Err(o.err("roles", format!("{} is not an array of roles", show(v)))),
    }
}

fn storage(o: Obj) -> Result<Vec<Storage>, SpecError> {
    let Some(map) = o.object("storage")? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(map.len());
    for (path, v) in map {
        let field = o.field(&format!("storage.{path}"));
        let e = o.nested(&field, v)?;
        let persistence = match e.str("persistence")? {
            Some(p) => Persistence::parse(p).ok_or_else(|| {
                e.err(
                    "persistence",
                    format!("'{p}' is not permanent, revision or boot"),
                )
            })?,
            None => return Err(e.err("persistence", "missing (permanent, revision or boot)")),
        };
        out.push(Storage {
            path: path.clone(),
            persistence,
            disk: e.str("disk")?.map(str::to_string),
        });
    }
    Ok(out)
}

/// `logs`: objects of `{file, maxsize, truncate, name, …}` kept as text pairs (numbers and
/// booleans written out), the way Pantavisor hands them to its logger.
fn logs(o: Obj) -> Result<Vec<BTreeMap<String, String>>, SpecError> {
    let Some(items) = o.array("logs")? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = o.field(&format!("logs[{i}]"));
        let e = o.nested(&field, item)?;
        let mut pairs = BTreeMap::new();
        for (k, v) in e.map {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    return Err(e.err(
                        k,
                        format!("{} is not a string, number or boolean", show(other)),
                    ));
                }
            };
            pairs.insert(k.clone(), text);
        }
        out.push(pairs);
    }
    Ok(out)
}

fn network(o: Obj) -> Result<Option<Network>, SpecError> {
    let Some(v) = o.get("network") else {
        return Ok(None);
    };
    let n = o.nested("network", v)?;
    let pool = n.str("pool")?.map(str::to_string);
    let mode = match (n.str("mode")?, &pool) {
        (Some("host"), None) => Some(NetworkMode::Host),
        (Some("host"), Some(_)) => {
            return Err(n.err("mode", "'host' cannot be combined with a pool"));
        }
        (Some("pool"), _) | (None, Some(_)) => Some(NetworkMode::Pool),
        (Some(m), _) => return Err(n.err("mode", format!("'{m}' is not host or pool"))),
        (None, None) => None,
    };
    let Some(mode) = mode else {
        return Ok(None);
    };
    Ok(Some(Network {
        mode,
        pool,
        hostname: n.str("hostname")?.map(str::to_string),
        ip: n.str("ip")?.map(str::to_string),
        mac: n.str("mac")?.map(str::to_string),
    }))
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
