//! The reactor's side of the hub client: it owns the [`HubClient`] machine and its
//! [`Transport`], feeds the machine the transport's completions, timers and the device's
//! progress writes, and carries out what the machine asks (calls, downloads, durable
//! credential and progress writes, metadata, handing a downloaded revision to the update
//! path). The machine sees the device through [`View`], a read-only look at [`Device`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::Token;

use super::hub_net::{Blob, Completion, Proxy, Request, Transport, TransportConfig};
use super::{Due, Reactor};
use crate::device::{Device, HubStatus};
use crate::engine::hub::creds::Creds;
use crate::engine::hub::{Answer, CallId, DeviceView, HubAction, HubClient, HubEvent, Settings};
use crate::engine::update::{Phase, UpdateEvent};
use crate::spec::{ParseOptions, parse_state_with};
use crate::store::Progress;

/// Hub sockets are `HUB_BASE ..`, above every other token.
pub const HUB_BASE: usize = 1 << 24;
/// Buffered hub answers (JSON) are capped at this size.
const MAX_JSON: usize = 2 * 1024 * 1024;
const CLAIMED_FILE: &str = "config/pantahub.config";
const UNCLAIMED_FILE: &str = "config/unclaimed.config";

/// The client, its connections and the downloads in flight.
pub struct Hub {
    client: HubClient,
    net: Transport,
    downloads: HashMap<CallId, String>,
    wake: Option<Instant>,
    scheduled: Option<Instant>,
    pub generation: u64,
    host: String,
    port: u16,
    downloads_dir: PathBuf,
    /// Log reads the client asked for, done after its current actions (so a wake-up it
    /// gave before them is not undone by one it gives while answering them).
    log_io: VecDeque<HubAction>,
    /// The log I/O loop is running (an answer's actions queue more; the loop takes them, so
    /// a scan, a read and the next scan follow each other without nesting).
    log_io_busy: bool,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn secs(config: &crate::config::Config, key: &str, min: u64) -> Duration {
    Duration::from_secs(config.get_u64(key).max(min))
}

/// The credentials this device has: claimed ones from `pantahub.config` (read into the
/// configuration), else registered ones from `unclaimed.config`.
fn load_creds(device: &Device) -> (Creds, bool) {
    let c = &device.config;
    let claimed = Creds {
        id: c.get("PH_CREDS_ID").unwrap_or_default().to_string(),
        prn: c.get("PH_CREDS_PRN").unwrap_or_default().to_string(),
        secret: c.get("PH_CREDS_SECRET").unwrap_or_default().to_string(),
    };
    // The file may have changed since the configuration was read (a claim, an UNCLAIM).
    let file = std::fs::read_to_string(device.storage.root().join(CLAIMED_FILE))
        .map(|t| Creds::parse(&t))
        .unwrap_or(claimed);
    if file.is_registered() {
        return (file, true);
    }
    let unclaimed = std::fs::read_to_string(device.storage.root().join(UNCLAIMED_FILE))
        .map(|t| Creds::parse(&t))
        .unwrap_or_default();
    (unclaimed, false)
}

impl Hub {
    /// The client for this device, when it should run: `TERN_HUB` on and remote mode.
    pub fn for_device(device: &Device, seed: u64) -> Option<Result<Hub, String>> {
        let c = &device.config;
        if c.get("TERN_HUB") == Some("off") || !device.remote_mode() {
            return None;
        }
        let host = c
            .get("PH_CREDS_HOST")
            .unwrap_or("api.pantahub.com")
            .to_string();
        let port = u16::try_from(c.get_u64("PH_CREDS_PORT")).unwrap_or(443);
        let (creds, claimed) = load_creds(device);
        let settings = Settings {
            host: host.clone(),
            port,
            updater_interval: secs(c, "PH_UPDATER_INTERVAL", 1),
            usrmeta_interval: secs(c, "PH_METADATA_USRMETA_INTERVAL", 1),
            devmeta_interval: secs(c, "PH_METADATA_DEVMETA_INTERVAL", 1),
            transfer_max: usize::try_from(c.get_u64("PH_UPDATER_TRANSFER_MAX_COUNT"))
                .unwrap_or(5)
                .clamp(1, 16),
            network_timeout: secs(c, "PH_UPDATER_NETWORK_TIMEOUT", 1),
            online_threshold: u32::try_from(c.get_u64("PH_ONLINE_REQUEST_THRESHOLD")).unwrap_or(0),
            autotok: c.get("PH_FACTORY_AUTOTOK").map(str::to_string),
            revision_retries: u32::try_from(c.get_u64("PV_REVISION_RETRIES")).unwrap_or(10),
            seed: seed ^ fnv(&creds.id),
            jitter_percent: u8::try_from(c.get_u64("TERN_HUB_JITTER")).unwrap_or(u8::MAX),
        };
        let proxy = c
            .get("PH_CREDS_PROXY_HOST")
            .filter(|h| !h.is_empty())
            .map(|h| Proxy {
                host: h.to_string(),
                port: u16::try_from(c.get_u64("PH_CREDS_PROXY_PORT")).unwrap_or(3218),
                connect: !c.get_bool("PH_CREDS_PROXY_NOPROXYCONNECT"),
            });
        let timeout = secs(c, "TERN_HUB_REQUEST_TIMEOUT", 1);
        let cfg = TransportConfig {
            host: host.clone(),
            port,
            proxy,
            certs_dir: PathBuf::from(c.get("PV_LIBTHTTP_CERTSDIR").unwrap_or("/certs")),
            extra_ca: c
                .get("TERN_HUB_CA")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            insecure: c.get_bool("TERN_HUB_INSECURE"),
            user_agent: format!(
                "Tern/{} (Linux; {})",
                env!("CARGO_PKG_VERSION"),
                crate::sysinfo::arch()
            ),
            connect_timeout: timeout,
            request_timeout: timeout,
            idle_close: Duration::from_secs(300),
            max_body: MAX_JSON,
            hosts_file: PathBuf::from(c.get("TERN_HUB_HOSTS").unwrap_or("/etc/hosts")),
            resolv_conf: PathBuf::from(c.get("TERN_HUB_RESOLV_CONF").unwrap_or("/etc/resolv.conf")),
        };
        let net = match Transport::new(cfg, HUB_BASE) {
            Ok(n) => n,
            Err(e) => return Some(Err(e)),
        };
        Some(Ok(Hub {
            client: HubClient::new(settings, creds, claimed),
            net,
            downloads: HashMap::new(),
            wake: None,
            scheduled: None,
            generation: 0,
            host,
            port,
            downloads_dir: device.storage.root().join("cache/downloads"),
            log_io: VecDeque::new(),
            log_io_busy: false,
        }))
    }

    pub fn owns(&self, token: Token) -> bool {
        self.net.owns(token)
    }

    pub fn status(&self) -> HubStatus {
        HubStatus {
            running: true,
            download: self.client.download_progress().map(|(_, d, t)| (d, t)),
            reports_failing: self.client.reports_failing(),
            failed: self.client.update_failed(),
        }
    }
}

/// A stable small hash (FNV-1a) to seed each device's jitter differently.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The device as the hub client reads it.
pub struct View<'a>(pub &'a Device);

impl DeviceView for View<'_> {
    fn running_rev(&self) -> Option<String> {
        self.0.running.as_ref().map(|r| r.rev.clone())
    }

    fn running_state(&self) -> Option<Vec<u8>> {
        let rev = self.running_rev()?;
        self.0.storage.trails.read_state(&rev).ok()
    }

    fn running_objects(&self) -> Vec<(String, String, u64)> {
        let Some(run) = &self.0.running else {
            return Vec::new();
        };
        let mut out: Vec<(String, String, u64)> = Vec::new();
        for (name, sha) in &run.state.objects {
            if out.iter().any(|(_, s, _)| s == sha) {
                continue;
            }
            let path = self.0.storage.objects.path(sha);
            if let Ok(meta) = std::fs::metadata(&path) {
                out.push((name.clone(), sha.clone(), meta.len()));
            }
        }
        out
    }

    fn has_object(&self, sha: &str) -> bool {
        self.0.storage.objects.exists(sha)
    }

    fn free_bytes(&self) -> u64 {
        crate::sysinfo::space(self.0.storage.root()).map_or(u64::MAX, |s| s.free)
    }

    fn progress(&self, rev: &str) -> Option<Progress> {
        let bytes = self.0.storage.trails.read_progress(rev).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        let mut p = Progress::new(
            v.get("status")?.as_str()?,
            v.get("status-msg").and_then(|m| m.as_str()).unwrap_or(""),
            v.get("progress")
                .and_then(serde_json::Value::as_u64)
                .and_then(|n| u8::try_from(n).ok())
                .unwrap_or(0),
        );
        p.retries = v
            .get("retries")
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0);
        p.logs = v.get("logs").and_then(|l| l.as_str()).map(str::to_string);
        Some(p)
    }

    fn check_state(&self, state: &[u8]) -> Result<Vec<(String, String)>, String> {
        let opts = ParseOptions {
            goals_timeout: u32::try_from(self.0.config.get_u64("PV_UPDATER_GOALS_TIMEOUT"))
                .unwrap_or(u32::MAX),
        };
        parse_state_with(state, &opts)
            .map(|s| s.objects)
            .map_err(|e| e.to_string())
    }

    fn refuse_signatures(&self, rev: &str, state: &[u8]) -> Option<&'static str> {
        let sb = &self.0.secureboot;
        sb.check(&self.0.config, "hub step", rev, state).refused()
    }

    fn device_meta(&self) -> BTreeMap<String, String> {
        let mut m: BTreeMap<String, String> = self
            .0
            .storage
            .device_meta
            .entries()
            .iter()
            .cloned()
            .collect();
        for (k, v) in crate::api::meta::own_device_meta(self.0) {
            // Free space moves all the time; the hub gets it with the hourly full report.
            if k != "storage" {
                m.insert(k.to_string(), v);
            }
        }
        m
    }

    fn trying(&self) -> Option<(String, bool)> {
        let u = self.0.update.as_ref()?;
        if u.rev.starts_with("locals/") {
            return None;
        }
        Some((u.rev.clone(), matches!(u.phase, Phase::Testing { .. })))
    }
}

impl Reactor {
    /// Start the hub client if this device should talk to the hub (and is not yet).
    pub fn start_hub(&mut self, now: Instant) {
        if self.hub.is_some() {
            return;
        }
        let seed = u64::from(std::process::id()) ^ unix_now().rotate_left(17);
        match Hub::for_device(&self.api.device, seed) {
            None => {}
            Some(Err(e)) => log::error!("hub: cannot start the client: {e}"),
            Some(Ok(mut hub)) => {
                log::info!("hub: client for https://{}:{}", hub.host, hub.port);
                let cursors = crate::store::log_cursor::load(self.api.device.storage.root());
                hub.client.enable_log_push(cursors, now);
                let actions = hub.client.start(now, unix_now(), &View(&self.api.device));
                self.hub = Some(hub);
                self.hub_actions(actions, now);
            }
        }
    }

    /// A readiness event on one of the hub's sockets.
    pub(super) fn hub_ready(&mut self, event: &mio::event::Event, now: Instant) {
        let mut done = Vec::new();
        if let Some(hub) = self.hub.as_mut() {
            hub.net.ready(self.poll.registry(), event, now, &mut done);
        }
        self.hub_completions(done, now);
        // Work left over by a read or write budget needs a deadline even when nothing ended.
        self.schedule_hub();
    }

    pub(super) fn hub_owns(&self, token: Token) -> bool {
        self.hub.as_ref().is_some_and(|h| h.owns(token))
    }

    /// The hub's deadline (a client wake-up or a transport timeout).
    pub(super) fn hub_due(&mut self, generation: u64, now: Instant) {
        let Some(hub) = self.hub.as_mut() else {
            return;
        };
        if generation != hub.generation {
            return;
        }
        hub.scheduled = None;
        let mut done = Vec::new();
        hub.net.expire(self.poll.registry(), now, &mut done);
        self.hub_completions(done, now);
        let woken = self.hub.as_mut().is_some_and(|h| {
            let due = h.wake.is_some_and(|w| w <= now);
            if due {
                h.wake = None;
            }
            due
        });
        if woken {
            self.hub_event(HubEvent::Timer, now);
        }
        self.schedule_hub();
    }

    /// The device wrote a progress (the update machine): mirror it to the hub.
    pub(super) fn hub_progress(&mut self, rev: &str, p: &Progress) {
        // Local revisions are the device's own business; the hub has no step for them.
        if self.hub.is_some() && !rev.starts_with("locals/") {
            let ev = HubEvent::Progress {
                rev: rev.to_string(),
                progress: p.clone(),
            };
            self.hub_event(ev, Instant::now());
        }
    }

    /// UNCLAIM, GO_REMOTE and `POST /v1/update` reach the client here.
    pub(super) fn hub_command(&mut self, ev: HubEvent, now: Instant) {
        if self.hub.is_some() {
            self.hub_event(ev, now);
        } else {
            log::info!("hub: {ev:?} ignored: the hub client is not running");
        }
    }

    /// A remote revision being tried is not committed before the hub was reached.
    pub(super) fn hub_holds_commit(&self) -> bool {
        let remote_try = View(&self.api.device).trying().is_some();
        remote_try
            && self
                .hub
                .as_ref()
                .is_some_and(|h| !h.client.reached_since_try())
    }

    fn hub_completions(&mut self, done: Vec<Completion>, now: Instant) {
        for c in done {
            let ev = match c {
                Completion::Reply { id, result } => HubEvent::Answer {
                    id,
                    answer: match result {
                        Ok(r) => Answer::Http {
                            etag: r
                                .headers
                                .iter()
                                .find(|(k, _)| k.eq_ignore_ascii_case("etag"))
                                .map(|(_, v)| v.clone()),
                            status: r.status,
                            body: r.body,
                        },
                        Err(e) => Answer::Failed(e.to_string()),
                    },
                },
                Completion::BlobProgress { id, bytes } => HubEvent::Fetched { id, bytes },
                Completion::BlobDone { id, result } => {
                    if let Some(h) = self.hub.as_mut() {
                        h.downloads.remove(&id);
                    }
                    HubEvent::Downloaded {
                        id,
                        result: result.map(|d| d.sha256_hex).map_err(|e| e.to_string()),
                    }
                }
            };
            self.hub_event(ev, now);
        }
        if let Some(h) = self.hub.as_mut() {
            h.log_io_busy = false;
        }
    }

    fn hub_event(&mut self, ev: HubEvent, now: Instant) {
        let Some(hub) = self.hub.as_mut() else {
            return;
        };
        let actions = hub
            .client
            .handle(ev, now, unix_now(), &View(&self.api.device));
        self.hub_actions(actions, now);
    }

    fn hub_actions(&mut self, actions: Vec<HubAction>, now: Instant) {
        for a in actions {
            self.hub_action(a, now);
        }
        self.hub_log_io(now);
        // A local revision now runs (LOCAL_APPLY of a locals/ revision): it never talks to
        // the hub until GO_REMOTE. Dropping the client closes its connections.
        if self.hub.is_some() && !self.api.device.remote_mode() {
            log::info!("hub: a local revision runs; the hub client stops until GO_REMOTE");
            self.hub = None;
            self.api.device.hub_status = HubStatus::default();
            return;
        }
        if let Some(h) = self.hub.as_ref() {
            self.api.device.hub_status = h.status();
        }
        self.schedule_hub();
    }

    fn hub_action(&mut self, action: HubAction, now: Instant) {
        let root = self.api.device.storage.root().to_path_buf();
        match action {
            HubAction::Call { id, call } => {
                let Some(hub) = self.hub.as_mut() else { return };
                let mut headers = call.headers;
                if call.auth
                    && let Some(t) = hub.client.token()
                {
                    headers.push(("Authorization".into(), format!("Bearer {t}")));
                }
                let body_file = call
                    .body_object
                    .as_ref()
                    .map(|sha| self.api.device.storage.objects.path(sha));
                let req = Request {
                    method: call.method.to_string(),
                    path: call.path,
                    headers,
                    body: call.body,
                    body_file,
                };
                hub.net.call(self.poll.registry(), now, id, req);
            }
            HubAction::Fetch { id, sha, url, size } => {
                let Some(hub) = self.hub.as_mut() else { return };
                if let Err(e) = crate::store::durable::create_dir_durable(&hub.downloads_dir) {
                    log::error!("hub: {}: {e}", hub.downloads_dir.display());
                }
                let blob = Blob {
                    url,
                    dest: hub.downloads_dir.join(&sha),
                    expected_size: Some(size),
                };
                hub.downloads.insert(id, sha);
                hub.net.fetch(self.poll.registry(), now, id, blob);
            }
            HubAction::Cancel { id } => {
                if let Some(hub) = self.hub.as_mut() {
                    hub.downloads.remove(&id);
                    hub.net.cancel(self.poll.registry(), id);
                }
            }
            HubAction::Wake { at } => {
                if let Some(hub) = self.hub.as_mut() {
                    hub.wake = Some(at);
                }
            }
            HubAction::SaveCreds { claimed, creds } => {
                let (host, port) = self
                    .hub
                    .as_ref()
                    .map_or((String::new(), 443), |h| (h.host.clone(), h.port));
                let file = root.join(if claimed {
                    CLAIMED_FILE
                } else {
                    UNCLAIMED_FILE
                });
                let old = std::fs::read_to_string(&file).unwrap_or_default();
                let text = creds.merge_into(&old, &host, port);
                match crate::store::durable::write_atomic(&file, text.as_bytes()) {
                    Ok(()) => log::info!("hub: credentials saved to {}", file.display()),
                    Err(e) => log::error!("hub: cannot save {}: {e}", file.display()),
                }
            }
            HubAction::Hint { name, value } => {
                let path = self.api.device.config.rundir().join(name);
                if let Err(e) = crate::store::durable::write_atomic(&path, value.as_bytes()) {
                    log::warn!("hub: {}: {e}", path.display());
                }
            }
            HubAction::Meta { key, value } => {
                if let Err(e) = self.api.device.device_view.set(key, &value) {
                    log::warn!("hub: {key} not written to the run dir view: {e}");
                }
                self.api.device.hub_meta.insert(key.to_string(), value);
            }
            HubAction::UserMeta(entries) => self.replace_user_meta(entries),
            HubAction::InstallStep {
                rev,
                state,
                commit_msg,
            } => {
                let trails = &self.api.device.storage.trails;
                if !trails.exists(&rev) {
                    let queued = Progress::new("QUEUED", "Retried 0 of 10", 0);
                    if let Err(e) = trails.install(&rev, &state, &queued) {
                        log::error!("hub: cannot keep step {rev}: {e}");
                    }
                    if let Err(e) = trails.write_commitmsg(&rev, commit_msg.as_bytes()) {
                        log::warn!("hub: commit message of {rev}: {e}");
                    }
                }
            }
            HubAction::WriteProgress { rev, progress } => {
                if let Err(e) = self
                    .api
                    .device
                    .storage
                    .trails
                    .write_progress(&rev, &progress)
                {
                    log::error!("hub: cannot write the progress of {rev}: {e}");
                }
                log::info!("update {rev}: {} {}", progress.status, progress.status_msg);
            }
            HubAction::InstallObject { sha } => {
                let Some(dir) = self.hub.as_ref().map(|h| h.downloads_dir.clone()) else {
                    return;
                };
                let target = self.api.device.storage.objects.path(&sha);
                if let Err(e) = crate::store::durable::commit_temp(&dir.join(&sha), &target) {
                    let ev = HubEvent::InstallFailed {
                        sha,
                        error: e.to_string(),
                    };
                    self.hub_event(ev, now);
                }
            }
            HubAction::DiscardDownload { sha } => {
                if let Some(dir) = self.hub.as_ref().map(|h| h.downloads_dir.clone()) {
                    let _ = std::fs::remove_file(dir.join(&sha));
                }
            }
            HubAction::RunStep { rev } => {
                log::info!("hub: every object of {rev} is here; running it");
                self.run_remote(&rev, now);
            }
            HubAction::FailTry { reason } => {
                self.update_event(UpdateEvent::HubLost { msg: reason }, now);
            }
            HubAction::Log { level, msg } => log::log!(level, "{msg}"),
            HubAction::ScanLogs | HubAction::ReadLog(_) => {
                if let Some(hub) = self.hub.as_mut() {
                    hub.log_io.push_back(action);
                }
            }
            HubAction::SaveLogCursor { log, cursor } => {
                if let Err(e) = crate::store::log_cursor::save(&root, &log, cursor.as_ref()) {
                    // The hub has these lines; they go again after a restart (at-least-once).
                    log::error!("log push: cannot save the cursor of {log}: {e}");
                }
            }
        }
    }

    /// The log scans and reads the client asked for, answered in turn.
    fn hub_log_io(&mut self, now: Instant) {
        match self.hub.as_mut() {
            Some(h) if !h.log_io_busy => h.log_io_busy = true,
            _ => return,
        }
        while let Some(action) = self.hub.as_mut().and_then(|h| h.log_io.pop_front()) {
            let logs = self.api.device.storage.root().join("logs");
            let ev = match action {
                HubAction::ScanLogs => {
                    let enabled = self.api.device.config.get_bool("PV_LOG_PUSH");
                    let rev = View(&self.api.device).running_rev().unwrap_or_default();
                    let streams = if enabled {
                        super::log_push::scan(&logs, &rev)
                    } else {
                        Vec::new()
                    };
                    HubEvent::LogsScanned { enabled, streams }
                }
                HubAction::ReadLog(req) => HubEvent::LogRead(super::log_push::read(&logs, &req)),
                _ => continue,
            };
            self.hub_event(ev, now);
        }
    }

    /// The hub's user meta replaces the device's: keys it dropped are dropped.
    fn replace_user_meta(&mut self, entries: Vec<(String, String)>) {
        let device = &mut self.api.device;
        let old: Vec<(String, String)> = device.storage.user_meta.entries().to_vec();
        for (k, _) in old
            .iter()
            .filter(|(k, _)| !entries.iter().any(|(n, _)| n == k))
        {
            if let Err(e) = device.storage.user_meta.delete(k) {
                log::warn!("hub: user meta {k}: {e:?}");
            }
            let _ = device.user_view.remove(k);
            crate::api::meta::config_override(device, k, None);
        }
        for (k, v) in &entries {
            if old.iter().any(|(n, o)| n == k && o == v) {
                continue;
            }
            if let Err(e) = device.storage.user_meta.put(k, v) {
                log::warn!("hub: user meta {k}: {e:?}");
                continue;
            }
            let _ = device.user_view.set(k, v);
            crate::api::meta::config_override(device, k, Some(v));
        }
    }

    /// Ask the deadline heap for the hub's next moment, when it moved earlier.
    fn schedule_hub(&mut self) {
        let Some(hub) = self.hub.as_mut() else {
            return;
        };
        let want = [hub.wake, hub.net.next_deadline()]
            .into_iter()
            .flatten()
            .min();
        if let Some(at) = want
            && hub.scheduled.is_none_or(|s| s > at)
        {
            hub.generation += 1;
            hub.scheduled = Some(at);
            self.deadlines.push(
                at,
                Due::Hub {
                    generation: hub.generation,
                },
            );
        }
    }
}
