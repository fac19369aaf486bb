//! The state JSON (`pantavisor-service-system@1`): a flat map from artifact paths to either an
//! inline JSON document or a sha256 object id. This module owns its typed form ([`State`]):
//! containers from `<c>/run.json` (+ `services.json`), groups from `device.json`, legacy
//! `groups.json` or the default table, the BSP, and the object list. It parses and checks;
//! it never reads files, never logs (remarks go to [`State::warnings`]) and never starts
//! anything.

mod bsp;
mod error;
mod fields;
mod groups;
mod recovery;
mod run;
mod services;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

pub use bsp::{Bsp, DriverAlias, DriverAliases, DriverScope, DriverSection, resolve_module};
pub use error::SpecError;
pub use groups::{DEFAULT_GOALS_TIMEOUT, Group, GroupSource, assign, default_groups};
pub use recovery::{AutoRecovery, BackoffPolicy, RecoveryPolicy};
pub use run::{Drivers, Network, NetworkMode, Persistence, Storage};
pub use services::{ServiceExport, ServiceRequirement, ServiceType, Services};

pub const SYSTEM_SPEC: &str = "pantavisor-service-system@1";

/// A container's `status_goal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StatusGoal {
    Mounted,
    Started,
    Ready,
}

impl StatusGoal {
    pub fn parse(s: &str) -> Option<StatusGoal> {
        match s {
            "MOUNTED" => Some(StatusGoal::Mounted),
            "STARTED" => Some(StatusGoal::Started),
            "READY" => Some(StatusGoal::Ready),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StatusGoal::Mounted => "MOUNTED",
            StatusGoal::Started => "STARTED",
            StatusGoal::Ready => "READY",
        }
    }

    fn invalid(s: &str) -> String {
        format!("'{s}' is not MOUNTED, STARTED or READY")
    }
}

/// A container's `restart_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Changes reboot the device; not controllable through the API.
    System,
    /// Changes restart only the container; controllable through `PUT /containers/{name}`.
    Container,
}

impl RestartPolicy {
    pub fn parse(s: &str) -> Option<RestartPolicy> {
        match s {
            "system" => Some(RestartPolicy::System),
            "container" => Some(RestartPolicy::Container),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::System => "system",
            RestartPolicy::Container => "container",
        }
    }

    fn invalid(s: &str) -> String {
        format!("'{s}' is not system or container")
    }
}

/// One container, with its group's defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    pub name: String,
    /// The artifact directory (`nginx` for `nginx/run.json`); normally equal to `name`.
    pub dir: String,
    /// `type`; always `lxc`.
    pub kind: String,
    /// `config`: the LXC configuration file, relative to `dir`.
    pub config: Option<String>,
    pub root_volume: Option<String>,
    /// `volumes`, as written (`[handler:]path`).
    pub volumes: Vec<String>,
    pub storage: Vec<Storage>,
    pub group: String,
    pub status_goal: StatusGoal,
    pub restart_policy: RestartPolicy,
    /// Role `mgmt` (may use every pv-ctrl endpoint).
    pub mgmt: bool,
    /// Its own `auto_recovery`, or else its group's (all or nothing); [`AutoRecovery::NONE`]
    /// when neither has one.
    pub auto_recovery: AutoRecovery,
    pub auto_recovery_from_group: bool,
    pub drivers: Drivers,
    pub services: Services,
    /// What its `services.json` provides.
    pub exports: Vec<ServiceExport>,
    pub logs: Vec<std::collections::BTreeMap<String, String>>,
    pub network: Option<Network>,
    /// `exports` present (Pantavisor keeps only the flag).
    pub export: bool,
    pub dev_log: Option<bool>,
    pub automodfw: bool,
    pub share: Option<String>,
}

/// A whole parsed state.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// In the order of their run.json keys in the state.
    pub containers: Vec<Container>,
    /// In start order.
    pub groups: Vec<Group>,
    pub group_source: GroupSource,
    pub bsp: Option<Bsp>,
    /// `bsp/drivers.json`.
    pub drivers: Option<DriverAliases>,
    /// `(path, sha256)` of every artifact stored as an object, in state order.
    pub objects: Vec<(String, String)>,
    /// Non-fatal remarks for the caller to log.
    pub warnings: Vec<String>,
}

/// Knobs of the parser that come from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// `PV_UPDATER_GOALS_TIMEOUT`: the timeout of a group entry without `timeout`.
    pub goals_timeout: u32,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            goals_timeout: DEFAULT_GOALS_TIMEOUT,
        }
    }
}

/// Check that `bytes` is a state JSON Tern can store and run. Returns the parsed document or a
/// message saying what is wrong (for the daemon log and the client).
pub fn validate_state(bytes: &[u8]) -> Result<Value, String> {
    let (doc, entries) = outer(bytes).map_err(|e| e.to_string())?;
    typed(&entries, &ParseOptions::default()).map_err(|e| e.to_string())?;
    Ok(doc)
}

/// Parse a state JSON into its typed form, with default options.
pub fn parse_state(bytes: &[u8]) -> Result<State, SpecError> {
    parse_state_with(bytes, &ParseOptions::default())
}

pub fn parse_state_with(bytes: &[u8], opts: &ParseOptions) -> Result<State, SpecError> {
    let (_, entries) = outer(bytes)?;
    typed(&entries, opts)
}

/// The top-level keys in document order (serde_json's map would sort them).
struct Ordered(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Ordered, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Ordered, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = m.next_entry::<String, Value>()? {
                    v.push(entry);
                }
                Ok(Ordered(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// The outer shape: JSON object, `#spec`, artifact paths, value kinds, no duplicate keys.
fn outer(bytes: &[u8]) -> Result<(Value, Vec<(String, Value)>), SpecError> {
    let doc: Value = serde_json::from_slice(bytes)
        .map_err(|e| SpecError::state(format!("not valid JSON: {e}")))?;
    let Some(map) = doc.as_object() else {
        return Err(SpecError::state("the state must be a JSON object"));
    };
    match map.get("#spec") {
        Some(Value::String(s)) if s == SYSTEM_SPEC => {}
        Some(Value::String(s)) => {
            return Err(SpecError::state(format!(
                "unsupported #spec '{s}' (expected '{SYSTEM_SPEC}')"
            )));
        }
        Some(_) => return Err(SpecError::state("#spec must be a string")),
        None => return Err(SpecError::state("missing #spec")),
    }
    let Ordered(entries) = serde_json::from_slice(bytes)
        .map_err(|e| SpecError::state(format!("not valid JSON: {e}")))?;
    let mut seen = std::collections::HashSet::new();
    for (key, value) in &entries {
        if !seen.insert(key.as_str()) {
            return Err(SpecError::new(key, "", "appears twice in the state"));
        }
        if key == "#spec" {
            continue;
        }
        if key.is_empty()
            || key.starts_with('/')
            || key
                .split('/')
                .any(|c| c == ".." || c == "." || c.is_empty())
        {
            return Err(SpecError::state(format!("bad artifact path '{key}'")));
        }
        match value {
            Value::Object(_) | Value::Array(_) => {}
            Value::String(id) if is_sha256(id) => {}
            Value::String(_) => {
                return Err(SpecError::new(
                    key,
                    "",
                    "object id must be a 64 character sha256",
                ));
            }
            _ => {
                return Err(SpecError::new(
                    key,
                    "",
                    "value must be an object id or a JSON document",
                ));
            }
        }
    }
    Ok((doc, entries))
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Keys parsed on their own (not containers, not objects).
const INFRA: [&str; 6] = [
    "bsp/run.json",
    "bsp/drivers.json",
    "disks.json",
    "disks_v3.json",
    "groups.json",
    "device.json",
];

fn typed(entries: &[(String, Value)], opts: &ParseOptions) -> Result<State, SpecError> {
    let mut warnings = Vec::new();
    let get = |k: &str| entries.iter().find(|(key, _)| key == k).map(|(_, v)| v);

    let (groups, group_source) =
        groups_of(get("device.json"), get("groups.json"), opts, &mut warnings)?;
    let bsp = get("bsp/run.json")
        .map(|v| Bsp::parse("bsp/run.json", v))
        .transpose()?;
    let drivers = get("bsp/drivers.json")
        .map(|v| DriverAliases::parse("bsp/drivers.json", v))
        .transpose()?;
    if let Some(d) = &drivers {
        for k in &d.ignored {
            warnings.push(format!("bsp/drivers.json: unknown section '{k}' ignored"));
        }
    }

    let mut runs: Vec<(String, String, run::RunJson)> = Vec::new();
    let mut exports: Vec<(String, String, Vec<ServiceExport>)> = Vec::new();
    let mut objects = Vec::new();
    for (key, value) in entries {
        if key == "#spec" || INFRA.contains(&key.as_str()) {
            continue;
        }
        if let Some(dir) = key.strip_suffix("/run.json") {
            let r = run::parse(key, value)?;
            if let Some((_, other, _)) = runs.iter().find(|(_, _, x)| x.name == r.name) {
                return Err(SpecError::new(
                    key,
                    "name",
                    format!("container '{}' is already defined by {other}", r.name),
                ));
            }
            if r.name != dir {
                warnings.push(format!(
                    "{key}: name '{}' differs from its directory",
                    r.name
                ));
            }
            runs.push((dir.to_string(), key.clone(), r));
        } else if let Some(dir) = key.strip_suffix("/services.json") {
            exports.push((
                dir.to_string(),
                key.clone(),
                services::parse_exports(key, value)?,
            ));
        } else if let Value::String(id) = value {
            objects.push((key.clone(), id.clone()));
        }
    }

    let mut wanted = Vec::with_capacity(runs.len());
    for (_, key, r) in &runs {
        let by_name = |n: &str, field: &str| {
            groups
                .iter()
                .position(|g| g.name == n)
                .map(Some)
                .ok_or_else(|| {
                    let known: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
                    SpecError::new(
                        key,
                        field,
                        format!("'{n}' is not a group of this state ({})", known.join(", ")),
                    )
                })
        };
        wanted.push(match &r.group {
            run::GroupRequest::None => None,
            run::GroupRequest::Group(n) => by_name(n, "group")?,
            run::GroupRequest::Runlevel(n) => by_name(n, "runlevel")?,
        });
    }
    let placed = assign(&wanted, &groups, group_source).map_err(|i| {
        let key = runs.get(i).map(|(_, k, _)| k.as_str()).unwrap_or("state");
        SpecError::new(
            key,
            "group",
            "missing, and the state defines no group to put it in",
        )
    })?;

    let mut containers = Vec::with_capacity(runs.len());
    for ((dir, key, r), gi) in runs.into_iter().zip(placed) {
        let Some(g) = groups.get(gi) else {
            return Err(SpecError::new(
                &key,
                "group",
                "internal: group index out of range",
            ));
        };
        warnings.extend(r.warnings);
        let from_group = r.auto_recovery.is_none();
        let mine: Vec<ServiceExport> = exports
            .iter()
            .filter(|(d, _, _)| *d == dir)
            .flat_map(|(_, _, e)| e.iter().cloned())
            .collect();
        containers.push(Container {
            name: r.name,
            dir,
            kind: r.kind,
            config: r.config,
            root_volume: r.root_volume,
            volumes: r.volumes,
            storage: r.storage,
            group: g.name.clone(),
            status_goal: r.status_goal.unwrap_or(g.status_goal),
            restart_policy: r.restart_policy.unwrap_or(g.restart_policy),
            mgmt: r.mgmt,
            auto_recovery: r.auto_recovery.unwrap_or(g.auto_recovery),
            auto_recovery_from_group: from_group && g.auto_recovery.is_active(),
            drivers: r.drivers,
            services: r.services,
            exports: mine,
            logs: r.logs,
            network: r.network,
            export: r.export,
            dev_log: r.dev_log,
            automodfw: r.automodfw,
            share: r.share,
        });
    }
    for (dir, key, _) in &exports {
        if !containers.iter().any(|c| c.dir == *dir) {
            warnings.push(format!(
                "{key}: no container '{dir}' in this state; ignored"
            ));
        }
    }

    Ok(State {
        containers,
        groups,
        group_source,
        bsp,
        drivers,
        objects,
        warnings,
    })
}

fn groups_of(
    device: Option<&Value>,
    legacy: Option<&Value>,
    opts: &ParseOptions,
    warnings: &mut Vec<String>,
) -> Result<(Vec<Group>, GroupSource), SpecError> {
    if let Some(dev) = device {
        let o = fields::Obj::root("device.json", dev)?;
        if legacy.is_some() {
            warnings.push("groups.json ignored: device.json is present".into());
        }
        return match o.get("groups") {
            Some(v) => Ok((
                groups::parse_groups("device.json", "groups", v, opts.goals_timeout)?,
                GroupSource::DeviceJson,
            )),
            None => {
                warnings.push("device.json: no groups defined".into());
                Ok((Vec::new(), GroupSource::DeviceJson))
            }
        };
    }
    if let Some(v) = legacy {
        return Ok((
            groups::parse_groups("groups.json", "", v, opts.goals_timeout)?,
            GroupSource::GroupsJson,
        ));
    }
    Ok((default_groups(), GroupSource::Default))
}

#[cfg(test)]
mod tests;
