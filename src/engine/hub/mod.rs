//! The Pantacor Hub client as a pure machine: register, wait for the claim, log in, sync the
//! factory revision, then idle (poll steps, exchange metadata) and take updates (object
//! metadata, downloads, the switch, progress reports).
//!
//! It does no I/O and reads no clock. The reactor feeds it [`HubEvent`]s (a timer, the answer
//! to a call, a download's end, a progress the device wrote) with `now` and the wall-clock
//! seconds, and lends it a [`DeviceView`] to look at the device; it answers with
//! [`HubAction`]s: calls on the one kept-alive API connection, downloads on their own
//! connections, files to write, metadata to publish, a revision to run. Its stages and why
//! it moves between them are logged and published as device meta `pantahub.state`.

mod answers;
pub mod backoff;
pub mod creds;
mod download;
pub mod jitter;
pub mod log_batch;
pub mod logs;
mod schedule;
pub mod wire;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use self::backoff::Backoff;
use self::creds::Creds;
use self::download::RemoteUpdate;
use self::jitter::Jitter;
use self::logs::{Cursor, LogPush, LogStream, ReadReq, Slice};
use self::wire::Call;
use crate::store::Progress;

pub type CallId = u64;

/// The whole device meta goes once per this period after the one at login, never more often
/// (the rest of the time, only changes go out).
pub const FULL_DEVMETA_EVERY: Duration = Duration::from_secs(3600);
/// Hub state reports that failed this many times in a row make `/v1/healthy` fail.
pub const UNHEALTHY_REPORT_FAILURES: u32 = 3;

/// The client's stages: the seed's (init, register, claim, sync, idle, update — the last as
/// prep download, download and report) and the internal login and wait hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Init,
    Register,
    Claim,
    Login,
    WaitHub,
    Sync,
    Idle,
    PrepDownload,
    Download,
    Report,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Init => "init",
            Stage::Register => "register",
            Stage::Claim => "claim",
            Stage::Login => "login",
            Stage::WaitHub => "wait hub",
            Stage::Sync => "sync",
            Stage::Idle => "idle",
            Stage::PrepDownload => "prep download",
            Stage::Download => "download",
            Stage::Report => "report",
        }
    }
}

/// Intervals and limits, from the `PH_*` configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    pub updater_interval: Duration,
    pub usrmeta_interval: Duration,
    pub devmeta_interval: Duration,
    pub transfer_max: usize,
    pub network_timeout: Duration,
    pub online_threshold: u32,
    pub autotok: Option<String>,
    pub revision_retries: u32,
    /// Seed of the jitter (the device id's hash, or anything that differs between devices).
    pub seed: u64,
    /// Spread of every periodic request, ± this % of its interval, and first steps and
    /// user-meta polls spread over one interval (`TERN_HUB_JITTER`); 0 polls in lockstep as
    /// Pantavisor does.
    pub jitter_percent: u8,
}

/// What the client reads of the device. The reactor implements it over the device's state;
/// tests implement it with plain values.
pub trait DeviceView {
    fn running_rev(&self) -> Option<String>;
    fn running_state(&self) -> Option<Vec<u8>>;
    /// The objects of the running revision: (name in the state, sha256, size).
    fn running_objects(&self) -> Vec<(String, String, u64)>;
    fn has_object(&self, sha: &str) -> bool;
    fn free_bytes(&self) -> u64;
    /// The progress of a revision as stored on the device.
    fn progress(&self, rev: &str) -> Option<Progress>;
    /// Check a step's state as the device would run it: its objects (name, sha256), or the
    /// parser's message.
    fn check_state(&self, state: &[u8]) -> Result<Vec<(String, String)>, String>;
    /// Check a step's signatures under the device's secureboot mode: the refusal's status
    /// message when the step must not go on (none by default: a view without signatures).
    fn refuse_signatures(&self, _rev: &str, _state: &[u8]) -> Option<&'static str> {
        None
    }
    /// The device meta the hub should have.
    fn device_meta(&self) -> BTreeMap<String, String>;
    /// The remote revision being tried, and whether it reached TESTING.
    fn trying(&self) -> Option<(String, bool)>;
}

/// How a call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Http {
        status: u16,
        body: Vec<u8>,
        /// The answer's `ETag` header, if any (user meta asks again with it).
        etag: Option<String>,
    },
    /// No answer: resolve, connect, TLS, timeout, connection lost.
    Failed(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubEvent {
    /// The wake-up the client asked for (or any time the reactor wants it to look again).
    Timer,
    Answer {
        id: CallId,
        answer: Answer,
    },
    Fetched {
        id: CallId,
        bytes: u64,
    },
    /// A download ended: the sha256 of the whole file, or why not.
    Downloaded {
        id: CallId,
        result: Result<String, String>,
    },
    /// A verified download could not be moved into the object store.
    InstallFailed {
        sha: String,
        error: String,
    },
    /// The device wrote this progress for a revision (the update machine's own steps).
    Progress {
        rev: String,
        progress: Progress,
    },
    /// `POST /v1/update`: poll for steps now.
    PollNow,
    /// UNCLAIM: forget the credentials and register anew.
    Unclaim,
    /// The log tree as [`HubAction::ScanLogs`] found it (`enabled`: `PV_LOG_PUSH` is on).
    LogsScanned {
        enabled: bool,
        streams: Vec<LogStream>,
    },
    /// What [`HubAction::ReadLog`] read.
    LogRead(Slice),
}

#[derive(Clone, Debug, PartialEq)]
pub enum HubAction {
    Call {
        id: CallId,
        call: Call,
    },
    Fetch {
        id: CallId,
        sha: String,
        url: String,
        size: u64,
    },
    Cancel {
        id: CallId,
    },
    /// Wake the client at this instant (replaces the previous wake-up).
    Wake {
        at: Instant,
    },
    /// Write the credentials durably: `pantahub.config` when claimed, else `unclaimed.config`.
    SaveCreds {
        claimed: bool,
        creds: Creds,
    },
    /// A hint file of the run dir (`device-id`, `challenge`, `pantahub-host`).
    Hint {
        name: &'static str,
        value: String,
    },
    /// A `pantahub.*` device meta key the client owns.
    Meta {
        key: &'static str,
        value: String,
    },
    /// Replace the user meta with the hub's.
    UserMeta(Vec<(String, String)>),
    /// Keep a step's state as revision `rev` (before anything of it is downloaded).
    InstallStep {
        rev: String,
        state: Vec<u8>,
        commit_msg: String,
    },
    WriteProgress {
        rev: String,
        progress: Progress,
    },
    /// Move the verified download of this object into the object store.
    InstallObject {
        sha: String,
    },
    /// Delete the partial download of this object.
    DiscardDownload {
        sha: String,
    },
    /// Every object is here: hand the revision to the update machine.
    RunStep {
        rev: String,
    },
    /// A hub rule failed the revision being tried (it rolls back with this message).
    FailTry {
        reason: String,
    },
    Log {
        level: log::Level,
        msg: String,
    },
    /// Look at the log tree (answer with [`HubEvent::LogsScanned`]).
    ScanLogs,
    /// Read a slice of a log file (answer with [`HubEvent::LogRead`]).
    ReadLog(ReadReq),
    /// Write a log's cursor durably (the hub acknowledged the lines before it), or forget
    /// it (`None`: the log is gone).
    SaveLogCursor {
        log: String,
        cursor: Option<Cursor>,
    },
}

/// What the call in flight on the API connection is for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Job {
    Register,
    Login,
    ClaimCheck,
    Trails,
    PostObject {
        index: usize,
    },
    PutObject {
        index: usize,
    },
    PostTrail,
    Steps,
    ObjectMeta {
        sha: String,
    },
    UserMeta,
    DevMeta {
        sent: BTreeMap<String, String>,
        full: bool,
    },
    Progress {
        rev: String,
        progress: Progress,
    },
    Logs,
}

pub struct HubClient {
    settings: Settings,
    stage: Stage,
    creds: Creds,
    claimed: bool,
    token: Option<String>,
    next_id: CallId,
    in_flight: Option<(CallId, Job)>,
    /// Nothing on the API connection before this (backoff after a failure).
    not_before: Option<Instant>,
    backoff: Backoff,
    /// Spreads the periodic requests over time (see [`jitter`]).
    jitter: Jitter,
    challenge: String,
    /// When each periodic call is due next.
    claim_at: Option<Instant>,
    steps_at: Option<Instant>,
    usrmeta_at: Option<Instant>,
    devmeta_at: Option<Instant>,
    full_devmeta_at: Option<Instant>,
    /// The device meta the hub acknowledged last.
    devmeta_sent: BTreeMap<String, String>,
    usermeta_last: Option<Vec<(String, String)>>,
    /// The hub's ETag of `usermeta_last`, sent back as `If-None-Match`.
    usermeta_etag: Option<String>,
    /// The factory sync: the running revision's objects and the next one to upload.
    sync_objects: Vec<(String, String, u64)>,
    /// Progress to report, newest per revision (one in flight at a time).
    progress_out: Vec<(String, Progress)>,
    update: Option<RemoteUpdate>,
    /// Requests without any answer in a row (online/offline).
    unanswered: u32,
    online: bool,
    /// Progress reports that failed in a row (health).
    report_failures: u32,
    /// A remote try began at (for "Hub not reachable"), and the hub answered since.
    try_since: Option<(String, Instant)>,
    reached_since_try: bool,
    testing_failed: bool,
    wake: Option<Instant>,
    last_failed: bool,
    /// The `pantahub.*` keys as last published.
    own_meta: BTreeMap<&'static str, String>,
    /// Log push (off until the reactor enables it with the stored cursors).
    logs: LogPush,
    out: Vec<HubAction>,
}

impl HubClient {
    /// A client for a device with these credentials: `claimed` when they came from
    /// `pantahub.config` with a prn.
    pub fn new(settings: Settings, creds: Creds, claimed: bool) -> HubClient {
        let backoff = Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(60).max(settings.updater_interval),
            settings.seed,
        );
        let logs = LogPush::new(settings.seed.rotate_left(7));
        // Its own stream: the backoff's draws must not shift the periodic schedule.
        let jitter = Jitter::new(
            settings.seed.rotate_left(32) ^ 0x6a09_e667,
            settings.jitter_percent,
        );
        HubClient {
            settings,
            stage: Stage::Init,
            claimed: claimed && creds.is_registered(),
            creds,
            token: None,
            next_id: 1,
            in_flight: None,
            not_before: None,
            backoff,
            jitter,
            challenge: String::new(),
            claim_at: None,
            steps_at: None,
            usrmeta_at: None,
            devmeta_at: None,
            full_devmeta_at: None,
            devmeta_sent: BTreeMap::new(),
            usermeta_last: None,
            usermeta_etag: None,
            sync_objects: Vec::new(),
            progress_out: Vec::new(),
            update: None,
            unanswered: 0,
            online: false,
            report_failures: 0,
            try_since: None,
            reached_since_try: false,
            testing_failed: false,
            wake: None,
            last_failed: false,
            own_meta: BTreeMap::new(),
            logs,
            out: Vec::new(),
        }
    }

    pub fn stage(&self) -> Stage {
        self.stage
    }
    pub fn is_claimed(&self) -> bool {
        self.claimed
    }
    pub fn is_online(&self) -> bool {
        self.online
    }
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }
    pub fn creds(&self) -> &Creds {
        &self.creds
    }
    /// State reports to the hub failed more than a few times in a row while online.
    pub fn reports_failing(&self) -> bool {
        self.online && self.report_failures > UNHEALTHY_REPORT_FAILURES
    }
    /// The hub answered since the remote try began (its commit may go ahead).
    pub fn reached_since_try(&self) -> bool {
        self.reached_since_try
    }
    /// (revision, bytes downloaded, bytes in all) of the update being downloaded.
    pub fn download_progress(&self) -> Option<(String, u64, u64)> {
        self.update
            .as_ref()
            .map(|u| (u.rev.clone(), u.downloaded(), u.total()))
    }
    /// The last update the client took ended WONTGO or ERROR before it could run.
    pub fn update_failed(&self) -> bool {
        self.last_failed
    }

    /// Push logs once claimed and logged in, resuming from these cursors.
    pub fn enable_log_push(&mut self, cursors: BTreeMap<String, Cursor>, now: Instant) {
        self.logs.enable(cursors, now);
    }

    /// Start: publish what is known and decide the first stage.
    pub fn start(&mut self, now: Instant, unix: u64, dev: &dyn DeviceView) -> Vec<HubAction> {
        let url = format!("https://{}:{}", self.settings.host, self.settings.port);
        self.out.push(HubAction::Hint {
            name: "pantahub-host",
            value: url,
        });
        let address = format!("{}:{}", self.settings.host, self.settings.port);
        self.meta("pantahub.address", &address);
        self.publish_claimed();
        self.publish_online(false);
        if self.creds.is_registered() {
            self.out.push(HubAction::Hint {
                name: "device-id",
                value: self.creds.id.clone(),
            });
        }
        let (to, why) = match (self.creds.is_registered(), self.claimed) {
            (false, _) => (Stage::Register, "no credentials yet"),
            (true, false) => (Stage::Claim, "registered, waiting to be claimed"),
            (true, true) => (Stage::Login, "claimed"),
        };
        self.go(to, why);
        self.pump(now, unix, dev);
        std::mem::take(&mut self.out)
    }

    /// Feed one event; returns what to do.
    pub fn handle(
        &mut self,
        event: HubEvent,
        now: Instant,
        unix: u64,
        dev: &dyn DeviceView,
    ) -> Vec<HubAction> {
        match event {
            HubEvent::Timer => {}
            HubEvent::Answer { id, answer } => match self.in_flight.take() {
                Some((expected, job)) if expected == id => self.answered(job, answer, now, dev),
                other => self.in_flight = other,
            },
            HubEvent::Fetched { id, bytes } => self.fetched(id, bytes, now, unix),
            HubEvent::Downloaded { id, result } => self.downloaded(id, result, now),
            HubEvent::InstallFailed { sha, error } => {
                self.log(log::Level::Error, format!("object {sha}: {error}"));
                let fail = Progress::new("ERROR", "Internal error", 100);
                self.end_update(fail, "an object could not be stored");
            }
            HubEvent::Progress { rev, progress } => self.progress_written(rev, progress, now),
            HubEvent::PollNow => {
                self.steps_at = Some(now);
                self.claim_at = self.claim_at.map(|_| now);
            }
            HubEvent::Unclaim => self.unclaim(),
            HubEvent::LogsScanned { enabled, streams } => {
                self.logs
                    .scanned(enabled, streams, now, unix, &mut self.out);
            }
            HubEvent::LogRead(slice) => self.logs.read(slice, now, unix),
        }
        self.pump(now, unix, dev);
        std::mem::take(&mut self.out)
    }

    fn go(&mut self, to: Stage, why: &str) {
        if self.stage == to {
            return;
        }
        self.log(
            log::Level::Info,
            format!("hub: {} -> {} ({why})", self.stage.as_str(), to.as_str()),
        );
        self.stage = to;
        self.meta("pantahub.state", to.as_str());
    }

    fn log(&mut self, level: log::Level, msg: String) {
        self.out.push(HubAction::Log { level, msg });
    }

    fn meta(&mut self, key: &'static str, value: &str) {
        self.own_meta.insert(key, value.to_string());
        self.out.push(HubAction::Meta {
            key,
            value: value.to_string(),
        });
    }

    fn publish_claimed(&mut self) {
        self.meta("pantahub.claimed", if self.claimed { "1" } else { "0" });
    }

    fn publish_online(&mut self, online: bool) {
        self.online = online;
        self.meta("pantahub.online", if online { "1" } else { "0" });
    }

    fn call(&mut self, job: Job, call: Call) {
        let id = self.next_id;
        self.next_id += 1;
        self.in_flight = Some((id, job));
        self.out.push(HubAction::Call { id, call });
    }

    fn new_id(&mut self) -> CallId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

/// A status after which nothing more happens to a revision.
pub fn is_final(status: &str) -> bool {
    matches!(status, "DONE" | "UPDATED" | "ERROR" | "WONTGO")
}

fn job_name(job: &Job) -> &'static str {
    match job {
        Job::Register => "POST /devices/",
        Job::Login => "POST /auth/login",
        Job::ClaimCheck => "GET /devices/<id>",
        Job::Trails => "GET /trails/",
        Job::PostObject { .. } => "POST /objects/",
        Job::PutObject { .. } => "PUT object",
        Job::PostTrail => "POST /trails/",
        Job::Steps => "GET steps",
        Job::ObjectMeta { .. } => "GET /objects/<sha>",
        Job::UserMeta => "GET user-meta",
        Job::DevMeta { .. } => "device-meta",
        Job::Progress { .. } => "PUT progress",
        Job::Logs => "POST /logs/",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
