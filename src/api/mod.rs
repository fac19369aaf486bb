//! Routes → handlers for the pv-ctrl API. A request is handled in two steps, because bodies
//! may be large and arrive over many reads: [`Api::begin`] looks at the head and says where
//! the body goes (or answers at once), [`Api::complete`] gets the received body and answers.
//! Handlers are plain functions of (state, request) → response; they never see a socket.

mod caller;
pub mod commands;
mod containers;
mod error;
pub mod gc;
mod info;
pub mod meta;
mod objects;
pub mod programs;
mod route;
pub mod selector;
mod sink;
mod steps;
pub mod tcp_peer;
pub mod v1;

pub use caller::{Owner, identify, owner_from_cgroup};
pub use error::ApiError;
pub use route::{MetaKind, Route, route};
pub use sink::{Sink, SinkError};

pub use crate::device::{Device, Running};
use crate::engine::Action;
use crate::engine::daemons::{DaemonAction, Daemons};
use crate::http::{RequestHead, Response};

/// Largest state JSON accepted by `PUT /steps/locals/X`.
pub const MAX_STATE_BYTES: u64 = 1024 * 1024;
/// Largest metadata value, signal or command body (Pantavisor's caps).
pub const MAX_META_BYTES: usize = 4096;
/// Largest commit message.
pub const MAX_COMMITMSG_BYTES: usize = 256;
/// Bodies sent to endpoints that take none are read and dropped up to this size.
pub const MAX_IGNORED_BODY: usize = 4096;

/// Who is calling, from the socket's peer credentials, resolved once when it connects.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    pub pid: Option<i32>,
    pub uid: Option<u32>,
    pub owner: Owner,
    /// Came in on the v1 (balena-style) TCP listener rather than the control socket.
    pub v1: bool,
}

/// What to do with a request once its head is known.
pub enum Plan {
    /// Answer now; the body, if any, is not wanted.
    Respond(Response),
    /// Receive the body into this sink, then call [`Api::complete`].
    Receive(Route, Sink),
}

pub struct Api {
    /// The device the handlers act on, shared with the hub client and the reactor.
    pub device: Device,
    /// What handlers asked the engine to do; the reactor drains it after every request.
    pub actions: Vec<Action>,
    /// The single command slot of `POST /commands`; the reactor empties it.
    pub command: Option<commands::Command>,
    /// The board's helper daemons; what handlers asked of them waits in `daemon_actions`.
    pub daemons: Daemons,
    pub daemon_actions: Vec<DaemonAction>,
    /// Status of every driver alias, and `PUT /drivers` requests for the reactor:
    /// (container, driver or all of its manual ones, unload).
    pub drivers: crate::engine::drivers::Drivers,
    pub driver_requests: Vec<(String, Option<String>, bool)>,
    /// The v1 API's key (persisted under `<storage>/cache/v1-api-key`) and the effects its
    /// handlers leave for the reactor.
    pub v1_key: String,
    pub v1_effects: Vec<v1::Effect>,
    /// Test-only (`TERN_TEST_UNHEALTHY`): a reason `/v1/healthy` must fail with.
    pub forced_unhealthy: Option<String>,
}

impl Api {
    pub fn new(device: Device) -> Api {
        Api {
            device,
            actions: Vec::new(),
            command: None,
            daemons: Daemons::default(),
            daemon_actions: Vec::new(),
            drivers: Default::default(),
            driver_requests: Vec::new(),
            v1_key: String::new(),
            v1_effects: Vec::new(),
            forced_unhealthy: None,
        }
    }

    /// Remote mode (see [`Device::remote_mode`]).
    pub fn remote_mode(&self) -> bool {
        self.device.remote_mode()
    }

    /// An update is between its transition and its commit or rollback.
    pub fn update_in_progress(&self) -> bool {
        self.device.update.is_some()
    }

    /// User metadata named after configuration keys overrides them (at start, and again
    /// after a SIGHUP reload built a fresh configuration).
    pub fn apply_meta_overrides(&mut self) {
        let entries: Vec<(String, String)> = self.device.storage.user_meta.entries().to_vec();
        for (k, v) in entries {
            meta::config_override(&mut self.device, &k, Some(&v));
        }
    }

    /// Write every metadata key into the run dir views (at start, and when the supervisor's
    /// own device keys change).
    pub fn rebuild_meta_views(&self) {
        let user = self.device.storage.user_meta.entries();
        let user = user.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        if let Err(e) = self.device.user_view.rebuild(user) {
            log::warn!("meta: cannot write the user-meta view: {e}");
        }
        let own = meta::own_device_meta(&self.device);
        let stored = self.device.storage.device_meta.entries();
        let device = stored
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(own.iter().map(|(k, v)| (*k, v.as_str())));
        if let Err(e) = self.device.device_view.rebuild(device) {
            log::warn!("meta: cannot write the device-meta view: {e}");
        }
    }

    /// Who a peer is: the host, or a container of the running revision.
    pub fn identify(&self, pid: i32) -> Owner {
        // Climbing the ancestry costs a read per parent on every connection: only worth it
        // while some container init runs (a flood of connections must stay cheap to refuse).
        let Some(run) = self
            .device
            .running
            .as_ref()
            .filter(|r| r.supervisor.containers().iter().any(|c| c.pid.is_some()))
        else {
            return caller::cgroup_owner(pid);
        };
        caller::identify(pid, |p| {
            run.supervisor
                .containers()
                .iter()
                .find(|c| c.pid == Some(p))
                .map(|c| c.name().to_string())
        })
    }

    /// Decide, from the head alone, how to handle a request.
    pub fn begin(&mut self, head: &RequestHead, caller: &Caller) -> Plan {
        if caller.v1 {
            return match v1::begin(self, head) {
                Ok(route) => Plan::Receive(route, Sink::memory(MAX_META_BYTES)),
                Err(resp) => Plan::Respond(resp),
            };
        }
        if let Err(e) = check_host(head) {
            return Plan::Respond(e.into_response().closing());
        }
        let route = match route(&head.method, head.path()) {
            Ok(Route::Programs { op, tag, .. }) => Route::Programs {
                op,
                tag,
                query: head.query().map(str::to_string),
            },
            Ok(r) => r,
            Err(e) => return Plan::Respond(e.into()),
        };
        if route.needs_mgmt()
            && let Err(e) = containers::check_mgmt(self, &caller.owner)
        {
            return Plan::Respond(e.into());
        }
        let declared = match head.framing {
            crate::http::BodyFraming::Length(n) => Some(n),
            _ => None,
        };
        let sink = match &route {
            Route::ObjectPut(sha) => objects::plan_put(self, sha, declared),
            Route::StepPut(_) => steps::plan_put(self, declared),
            Route::CommitMsgPut(_) => Ok(Sink::memory(MAX_COMMITMSG_BYTES)),
            Route::MetaPut(..) | Route::Signal | Route::Commands => {
                Ok(Sink::memory(MAX_META_BYTES))
            }
            Route::ContainerPut(_) => Ok(Sink::memory(containers::MAX_ACTION_BYTES)),
            _ => Ok(Sink::memory(MAX_IGNORED_BODY)),
        };
        match sink {
            Ok(sink) => {
                if let (Some(cap), Some(n)) = (sink.cap(), declared)
                    && n > cap
                {
                    return Plan::Respond(too_large(cap).closing());
                }
                Plan::Receive(route, sink)
            }
            Err(resp) => Plan::Respond(resp),
        }
    }

    /// The body arrived whole: handle the request.
    pub fn complete(&mut self, route: Route, sink: Sink, caller: &Caller) -> Response {
        let result = match route {
            Route::ObjectsList => objects::list(self),
            Route::ObjectGet(sha) => objects::get(self, &sha),
            Route::ObjectPut(_) => objects::finish_put(sink),
            Route::StepsList => Ok(Response::json(200, self.device.storage.trails.steps_json())),
            Route::StepGet(rev) => steps::get(self, &rev),
            Route::StepPut(rev) => steps::finish_put(self, &rev, sink),
            Route::ProgressGet(rev) => steps::progress(self, &rev),
            Route::CommitMsgPut(rev) => steps::commitmsg(self, &rev, sink),
            Route::MetaList(kind) => Ok(meta::list(self, kind)),
            Route::MetaPut(kind, key) => meta::put(self, kind, &key, sink),
            Route::MetaDelete(kind, key) => meta::delete(self, kind, &key),
            Route::BuildInfo => Ok(info::buildinfo()),
            Route::Config => Ok(Response::json(200, self.device.config.config_json())),
            Route::Config2 => Ok(Response::json(200, self.device.config.config2_json())),
            Route::ContainersList => containers::list(self),
            Route::ContainerPut(name) => containers::put(self, &name, memory_body(&sink)),
            Route::GroupsList => containers::groups(self),
            Route::Signal => containers::signal(self, &caller.owner, memory_body(&sink)),
            Route::Commands => commands::post(self, memory_body(&sink)),
            Route::StorageGc => gc::run(self),
            Route::DaemonsList => Ok(Response::json(200, self.daemons.json())),
            Route::DaemonPut(name) => daemon_put(self, &name, memory_body(&sink)),
            Route::DriversList => Ok(drivers_list(self, &caller.owner)),
            Route::XconnectGraph => Ok(Response::json(200, xconnect_graph(self))),
            Route::V1(call) => Ok(v1::complete(self, call, memory_body(&sink))),
            Route::Programs { op, tag, query } => {
                programs::selector_of(tag.as_deref(), query.as_deref(), memory_body(&sink))
                    .and_then(|sel| programs::handle(self, op, &sel))
            }
            Route::DriversPut { name, unload } => drivers_put(self, &caller.owner, name, unload),
        };
        result.unwrap_or_else(ApiError::into_response)
    }

    /// The body could not be received whole: the answer, after which the connection closes.
    pub fn body_failed(&mut self, err: SinkError) -> Response {
        match err {
            SinkError::TooLarge(cap) => too_large(cap),
            SinkError::NoSpace => ApiError::no_space().into_response(),
            SinkError::Io(e) => ApiError::internal(e).into_response(),
        }
        .closing()
    }
}

/// `PUT /daemons/{name}` `{"action":"start|stop"}`; like Pantavisor, an unknown or missing
/// action is accepted and does nothing.
fn daemon_put(api: &mut Api, name: &str, body: &[u8]) -> Result<Response, ApiError> {
    let action = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("action")?.as_str().map(str::to_string));
    let result = match action.as_deref() {
        Some("start") => api.daemons.start(name),
        Some("stop") => api.daemons.stop(name),
        _ => match api.daemons.get(name) {
            Some(_) => Ok(Vec::new()),
            None => Err(crate::engine::daemons::NOT_FOUND),
        },
    };
    let actions = result.map_err(|(status, msg)| ApiError::new(status, msg))?;
    api.daemon_actions.extend(actions);
    Ok(Response::ok())
}

/// `GET /xconnect-graph`: every link with the pids of the moment.
fn xconnect_graph(api: &Api) -> String {
    use crate::engine::xconnect;
    match &api.device.running {
        Some(run) => xconnect::json(&xconnect::graph(&run.state), |n| {
            run.supervisor.container(n).and_then(|c| c.pid)
        }),
        None => "[]".into(),
    }
}

/// The caller's drivers (a container's; the host has none).
fn caller_drivers(api: &Api, owner: &Owner) -> Vec<(String, crate::engine::drivers::Kind)> {
    match (owner, &api.device.running) {
        (Owner::Container(name), Some(run)) => {
            crate::engine::drivers::of_container(&run.state, name)
        }
        _ => Vec::new(),
    }
}

fn drivers_list(api: &Api, owner: &Owner) -> Response {
    Response::json(200, api.drivers.json(&caller_drivers(api, owner)))
}

/// Queue a load or unload of the caller's manual drivers. The loader runs after the answer
/// (Pantavisor waits for it); `GET /drivers` shows the outcome.
fn drivers_put(
    api: &mut Api,
    owner: &Owner,
    name: Option<String>,
    unload: bool,
) -> Result<Response, ApiError> {
    use crate::engine::drivers::Kind;
    let mine = caller_drivers(api, owner);
    let any = mine
        .iter()
        .any(|(n, k)| *k == Kind::Manual && name.as_ref().is_none_or(|w| w == n));
    let (Owner::Container(container), true) = (owner, any) else {
        return Err(ApiError::bad_request("Error loading driver(s)"));
    };
    api.driver_requests.push((container.clone(), name, unload));
    Ok(Response::ok())
}

fn too_large(cap: u64) -> Response {
    Response::error(413, &format!("Request body too large (limit {cap} bytes)"))
}

/// pv-ctrl serves only local clients: the Host header must be absent, empty or `localhost`.
fn check_host(head: &RequestHead) -> Result<(), ApiError> {
    let Some(host) = head.header("host") else {
        return Ok(());
    };
    let name = host.split(|&b| b == b':').next().unwrap_or_default();
    if host.is_empty() || name.eq_ignore_ascii_case(b"localhost") {
        Ok(())
    } else {
        Err(ApiError::bad_request("Host not allowed"))
    }
}

/// The bytes a memory sink received (empty for other sinks).
fn memory_body(sink: &Sink) -> &[u8] {
    match sink {
        Sink::Memory { buf, .. } => buf,
        _ => &[],
    }
}
