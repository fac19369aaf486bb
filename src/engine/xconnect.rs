//! The xconnect service graph: which container's required (or optional) service is provided
//! by which other container's `services.json` export, and where the consumer wants it
//! (`target`, by default the provider's own socket path). Pure: the reactor turns the socket
//! links into proxies.

use crate::spec::{ServiceType, State};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub consumer: String,
    pub provider: String,
    pub name: String,
    pub kind: Option<ServiceType>,
    pub role: Option<String>,
    pub interface: Option<String>,
    /// Where the consumer reaches the service (inside its root).
    pub target: String,
    /// Where the provider listens (inside its root).
    pub socket: String,
}

impl Link {
    /// Carried by a proxied unix stream socket (rest, unix, wayland); D-Bus names, DRM and
    /// input devices need other plumbing.
    pub fn is_socket(&self) -> bool {
        matches!(
            self.kind,
            None | Some(ServiceType::Rest | ServiceType::Unix | ServiceType::Wayland)
        )
    }
}

/// Every link of the revision, consumers in state order, requirements in run.json order
/// (required first). A requirement nobody provides makes no link.
pub fn graph(state: &State) -> Vec<Link> {
    let mut out = Vec::new();
    for c in &state.containers {
        for r in c.services.required.iter().chain(&c.services.optional) {
            let provided = state
                .containers
                .iter()
                .filter(|p| p.name != c.name)
                .find_map(|p| {
                    p.exports
                        .iter()
                        .find(|e| {
                            e.name.as_deref() == Some(r.name.as_str())
                                && (r.kind.is_none() || e.kind.is_none() || e.kind == r.kind)
                        })
                        .and_then(|e| e.socket.clone().map(|s| (p, e, s)))
                });
            let Some((p, e, socket)) = provided else {
                continue;
            };
            out.push(Link {
                consumer: c.name.clone(),
                provider: p.name.clone(),
                name: r.name.clone(),
                kind: r.kind.or(e.kind),
                role: r.role.clone().or_else(|| e.role.clone()),
                interface: r.interface.clone(),
                target: r.target.clone().unwrap_or_else(|| socket.clone()),
                socket,
            });
        }
    }
    out
}

/// `GET /xconnect-graph`: Pantavisor's keys in its order, with the pids of the moment (0
/// while a side is not running).
pub fn json(links: &[Link], pid_of: impl Fn(&str) -> Option<i32>) -> String {
    let s = |v: &str| serde_json::Value::from(v).to_string();
    let o = |v: &Option<String>| v.as_deref().map_or("null".to_string(), s);
    let items: Vec<String> = links
        .iter()
        .map(|l| {
            format!(
                r#"{{"consumer":{},"consumer_pid":{},"provider":{},"provider_pid":{},"name":{},"type":{},"role":{},"interface":{},"target":{},"socket":{}}}"#,
                s(&l.consumer),
                pid_of(&l.consumer).unwrap_or(0),
                s(&l.provider),
                pid_of(&l.provider).unwrap_or(0),
                s(&l.name),
                l.kind.map_or("null".to_string(), |k| s(k.as_str())),
                o(&l.role),
                o(&l.interface),
                s(&l.target),
                s(&l.socket),
            )
        })
        .collect();
    format!("[{}]", items.join(","))
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
            "nm/run.json": {"name": "nm", "type": "lxc", "root-volume": "r"},
            "nm/r": "a".repeat(64),
            "nm/services.json": {"#spec": "service-manifest-xconnect@1", "services": [
                {"name": "network-manager", "type": "rest", "socket": "/run/nm/api.sock"},
                {"name": "bus", "type": "dbus", "socket": "/run/dbus.sock"}]},
            "ui/run.json": {"name": "ui", "type": "lxc", "root-volume": "r",
                "services": {"required": [{"name": "network-manager", "type": "rest",
                                            "target": "/run/nm.sock", "interface": "v1"}],
                             "optional": ["bus", "missing"]}},
            "ui/r": "a".repeat(64),
        });
        parse_state(s.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn requirements_meet_exports() {
        let g = graph(&state());
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].consumer, "ui");
        assert_eq!(g[0].provider, "nm");
        assert_eq!(g[0].target, "/run/nm.sock");
        assert_eq!(g[0].socket, "/run/nm/api.sock");
        assert!(g[0].is_socket());
        // The optional bare-name one takes the provider's path; D-Bus is not a plain socket.
        assert_eq!(g[1].name, "bus");
        assert_eq!(g[1].target, "/run/dbus.sock");
        assert!(!g[1].is_socket());
    }

    #[test]
    fn graph_json_has_pantavisor_keys_in_order() {
        let g = graph(&state());
        let text = json(&g[..1], |n| (n == "nm").then_some(42));
        assert_eq!(
            text,
            r#"[{"consumer":"ui","consumer_pid":0,"provider":"nm","provider_pid":42,"name":"network-manager","type":"rest","role":null,"interface":"v1","target":"/run/nm.sock","socket":"/run/nm/api.sock"}]"#
        );
        assert_eq!(json(&[], |_| None), "[]");
    }
}
