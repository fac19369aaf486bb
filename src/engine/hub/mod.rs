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

pub mod backoff;
pub mod creds;
mod download;
pub mod wire;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use self::backoff::Backoff;
use self::creds::Creds;
use self::download::RemoteUpdate;
use self::wire::Call;
use crate::store::Progress;

pub type CallId = u64;

/// A full device-meta PUT at least this often (the rest of the time, only changes go out).
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
            challenge: String::new(),
            claim_at: None,
            steps_at: None,
            usrmeta_at: None,
            devmeta_at: None,
            full_devmeta_at: None,
            devmeta_sent: BTreeMap::new(),
            usermeta_last: None,
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
            HubEvent::Downloaded { id, result } => self.downloaded(id, result, now, unix, dev),
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

    /// The answer to the call in flight.
    fn answered(&mut self, job: Job, answer: Answer, now: Instant, dev: &dyn DeviceView) {
        let (status, body) = match answer {
            Answer::Http { status, body } => (status, body),
            Answer::Failed(why) => {
                self.no_answer(&job, &why, now, dev);
                return;
            }
        };
        // Any HTTP answer, even an error, means the hub is reachable.
        self.unanswered = 0;
        if !self.online {
            self.publish_online(true);
        }
        if self.try_since.is_some() {
            self.reached_since_try = true;
        }
        if status == 401 && !matches!(job, Job::Login | Job::Register) {
            // The token expired or was revoked: log in again; whatever was pending stays.
            self.token = None;
            self.requeue(job);
            self.go(Stage::Login, "the hub refused the token");
            return;
        }
        match self.on_answer(job.clone(), status, &body, now, dev) {
            Ok(()) => self.backoff.reset(),
            Err(why) => {
                self.log(
                    log::Level::Warn,
                    format!("hub: {} {}: {why}", job_name(&job), status),
                );
                self.failed(&job, now, dev);
            }
        }
    }

    /// No answer at all: count it towards offline, back off, apply the try's rules.
    fn no_answer(&mut self, job: &Job, why: &str, now: Instant, dev: &dyn DeviceView) {
        self.log(
            log::Level::Warn,
            format!("hub: {} got no answer: {why}", job_name(job)),
        );
        self.unanswered += 1;
        if self.online && self.unanswered > self.settings.online_threshold {
            self.publish_online(false);
        }
        self.failed(job, now, dev);
    }

    /// A call failed: it is retried after a backoff; during TESTING that ends the try.
    fn failed(&mut self, job: &Job, now: Instant, dev: &dyn DeviceView) {
        if matches!(job, Job::Progress { .. }) {
            self.report_failures += 1;
        }
        // Unstable means it was reached during this try and then failed; a hub never reached
        // since the switch is the network timeout's case ("Hub not reachable").
        if let Some((rev, true)) = dev.trying()
            && self.reached_since_try
            && !self.testing_failed
        {
            self.testing_failed = true;
            self.log(
                log::Level::Error,
                format!("hub: a request failed while {rev} is TESTING"),
            );
            self.out.push(HubAction::FailTry {
                reason: "Hub communication not stable".into(),
            });
        }
        self.requeue(job.clone());
        let delay = self.backoff.next_delay();
        self.not_before = Some(now + delay);
    }

    /// Put back what a failed call was carrying.
    fn requeue(&mut self, job: Job) {
        match job {
            // A newer progress of the same revision, queued meanwhile, wins.
            Job::Progress { rev, progress }
                if !self.progress_out.iter().any(|(r, _)| *r == rev) =>
            {
                self.progress_out.insert(0, (rev, progress));
            }
            Job::ObjectMeta { sha } => {
                if let Some(u) = self.update.as_mut() {
                    u.meta_pending.push(sha);
                }
            }
            _ => {}
        }
    }

    fn on_answer(
        &mut self,
        job: Job,
        status: u16,
        body: &[u8],
        now: Instant,
        dev: &dyn DeviceView,
    ) -> Result<(), String> {
        match (self.stage, job, status) {
            (_, Job::Register, 200) => {
                let creds = wire::parse_registered(body).ok_or("no credentials in the answer")?;
                self.creds = creds.clone();
                self.claimed = false;
                self.out.push(HubAction::SaveCreds {
                    claimed: false,
                    creds,
                });
                self.out.push(HubAction::Hint {
                    name: "device-id",
                    value: self.creds.id.clone(),
                });
                self.token = None;
                self.go(Stage::Claim, "registered");
            }
            (_, Job::Login, 200) => {
                self.token = Some(wire::parse_token(body).ok_or("no token in the answer")?);
                // After a login the hub gets the whole device meta once.
                self.full_devmeta_at = Some(now);
                self.devmeta_at = Some(now);
                self.usrmeta_at = Some(now);
                if !self.claimed {
                    self.claim_at = Some(now);
                    self.go(Stage::Claim, "logged in, not claimed yet");
                } else if let Some((rev, _)) = dev.trying() {
                    self.queue_disk_progress(&rev, dev);
                    self.go(Stage::Report, "logged in while a revision is tried");
                } else if self.stage == Stage::Login || self.stage == Stage::Init {
                    self.go(Stage::WaitHub, "logged in");
                }
                if self.stage == Stage::Login {
                    // A re-login in the middle of work: back to where the work is.
                    let to = if self.update.is_some() {
                        Stage::Download
                    } else {
                        Stage::Idle
                    };
                    self.go(to, "logged in again");
                }
            }
            (_, Job::Login, 401) if !self.claimed => {
                // The hub does not know this registration (deleted, or another hub): a device
                // nobody owns may register again. A claimed one never does (see README).
                self.log(
                    log::Level::Warn,
                    "hub: the registration was refused; registering anew".into(),
                );
                self.creds = Creds::default();
                self.go(Stage::Register, "credentials refused");
            }
            (_, Job::Login, s) => return Err(format!("login refused ({s})")),
            (_, Job::ClaimCheck, 200) => {
                let (owner, challenge) = wire::parse_device(body).ok_or("no device in answer")?;
                if !owner.is_empty() {
                    self.claimed = true;
                    self.out.push(HubAction::SaveCreds {
                        claimed: true,
                        creds: self.creds.clone(),
                    });
                    self.out.push(HubAction::Hint {
                        name: "challenge",
                        value: String::new(),
                    });
                    self.publish_claimed();
                    self.log(log::Level::Info, format!("hub: claimed by {owner}"));
                    // The token of an unclaimed device carries no owner: log in again.
                    self.token = None;
                    self.claim_at = None;
                    self.go(Stage::Login, "claimed");
                } else {
                    if challenge != self.challenge {
                        self.log(
                            log::Level::Info,
                            format!("hub: device challenge: '{challenge}'"),
                        );
                        self.out.push(HubAction::Hint {
                            name: "challenge",
                            value: challenge.clone(),
                        });
                        self.challenge = challenge;
                    }
                    self.claim_at = Some(now + self.settings.updater_interval);
                }
            }
            (_, Job::ClaimCheck, s) => return Err(format!("device check failed ({s})")),
            (_, Job::Trails, 200) => {
                if wire::parse_has_trail(body).ok_or("not a trail list")? {
                    self.steps_at = Some(now);
                    self.go(Stage::Idle, "the hub has this device's trail");
                } else {
                    self.sync_objects = dev.running_objects();
                    self.go(Stage::Sync, "no trail on the hub: first claimed boot");
                }
            }
            (_, Job::Trails, s) => return Err(format!("trail lookup failed ({s})")),
            (Stage::Sync, Job::PostObject { index }, 409) => {
                self.sync_objects.get(index).ok_or("no such object")?;
                self.sync_objects.remove(index);
            }
            (Stage::Sync, Job::PostObject { index }, 200) => {
                let url = wire::parse_put_url(body).ok_or("no signed-puturl")?;
                let sha = self
                    .sync_objects
                    .get(index)
                    .ok_or("no such object")?
                    .1
                    .clone();
                let call = wire::put_object(&url, &sha).ok_or("upload URL without /local-s3")?;
                self.call(Job::PutObject { index }, call);
            }
            (Stage::Sync, Job::PutObject { index }, 200) => {
                self.sync_objects.get(index).ok_or("no such object")?;
                self.sync_objects.remove(index);
            }
            (Stage::Sync, Job::PostTrail, 200) => {
                self.log(log::Level::Info, "hub: factory revision synced".into());
                self.steps_at = Some(now);
                self.go(Stage::Idle, "synced");
            }
            (_, Job::PostTrail, s) => {
                // A trail posted twice is a 500: look again before trying anything else.
                self.go(Stage::WaitHub, "posting the trail failed");
                return Err(format!("trail post failed ({s})"));
            }
            (_, Job::PostObject { .. } | Job::PutObject { .. }, s) => {
                return Err(format!("object upload failed ({s})"));
            }
            (_, Job::Steps, 200) => {
                let steps = wire::parse_steps(body).ok_or("not a step list")?;
                self.steps_at = Some(now + self.settings.updater_interval);
                self.take_steps(steps, now, dev);
            }
            (_, Job::Steps, s) => return Err(format!("steps poll failed ({s})")),
            (_, Job::ObjectMeta { sha }, 200) => {
                let (size, url) = wire::parse_object_meta(body).ok_or("bad object metadata")?;
                if let Some(u) = self.update.as_mut() {
                    u.set_meta(&sha, size, url);
                }
            }
            (_, Job::ObjectMeta { sha }, s) => {
                self.requeue(Job::ObjectMeta { sha: sha.clone() });
                return Err(format!("metadata of object {sha} refused ({s})"));
            }
            (_, Job::UserMeta, 200) => {
                let meta = wire::parse_user_meta(body).ok_or("user meta is not an object")?;
                self.usrmeta_at = Some(now + self.settings.usrmeta_interval);
                if self.usermeta_last.as_ref() != Some(&meta) {
                    self.usermeta_last = Some(meta.clone());
                    self.out.push(HubAction::UserMeta(meta));
                }
            }
            (_, Job::UserMeta, s) => return Err(format!("user meta fetch failed ({s})")),
            (_, Job::DevMeta { sent, full }, 200) => {
                if full {
                    self.devmeta_sent = sent;
                    self.full_devmeta_at = Some(now + FULL_DEVMETA_EVERY);
                } else {
                    for (k, v) in sent {
                        if v.is_empty() {
                            self.devmeta_sent.remove(&k);
                        } else {
                            self.devmeta_sent.insert(k, v);
                        }
                    }
                }
            }
            (_, Job::DevMeta { .. }, s) => return Err(format!("device meta refused ({s})")),
            (_, Job::Progress { rev, .. }, 200) => {
                self.report_failures = 0;
                let _ = rev;
            }
            (_, Job::Progress { rev, .. }, s) if (400..500).contains(&s) => {
                // The hub does not know this step (deleted): nothing to retry.
                self.log(
                    log::Level::Warn,
                    format!("hub: progress of {rev} refused ({s}); dropped"),
                );
            }
            (_, Job::Progress { .. }, s) => return Err(format!("progress refused ({s})")),
            (_, Job::Register, s) => return Err(format!("registration refused ({s})")),
        }
        Ok(())
    }

    /// Pending steps from the hub, oldest first. What the device already finished is
    /// reported again from its disk (the disk wins); the first step it has not finished is
    /// the next update.
    fn take_steps(&mut self, steps: Vec<wire::Step>, now: Instant, dev: &dyn DeviceView) {
        if self.update.is_some() || dev.trying().is_some() {
            // One update at a time; the one in hand goes first.
            for s in &steps {
                if let Some(p) = dev.progress(&s.rev).filter(|p| p.status != s.status) {
                    self.queue_progress(&s.rev, p);
                }
            }
            return;
        }
        let running = dev.running_rev();
        for step in steps {
            let disk = dev.progress(&step.rev);
            match disk {
                Some(p) if is_final(&p.status) => {
                    if p.status != step.status {
                        self.queue_progress(&step.rev, p);
                    }
                    continue;
                }
                // The revision running now but not final on disk: the try in progress.
                Some(p) if running.as_deref() == Some(step.rev.as_str()) => {
                    self.queue_progress(&step.rev, p);
                    continue;
                }
                _ => {}
            }
            self.begin_update(step, disk, now, dev);
            return;
        }
    }

    fn begin_update(
        &mut self,
        step: wire::Step,
        disk: Option<Progress>,
        now: Instant,
        dev: &dyn DeviceView,
    ) {
        let rev = step.rev.clone();
        let state = serde_json::to_vec(&step.state).unwrap_or_default();
        self.out.push(HubAction::InstallStep {
            rev: rev.clone(),
            state: state.clone(),
            commit_msg: step.commit_msg.clone(),
        });
        let retries = disk.map_or(0, |p| p.retries) + 1;
        if retries > self.settings.revision_retries {
            let mut p = Progress::new("WONTGO", "Max update processing retries reached", 100);
            p.retries = retries - 1;
            self.write_progress(&rev, p);
            return;
        }
        let objects = match dev.check_state(&state) {
            Ok(o) => o,
            Err(msg) => {
                self.log(log::Level::Error, format!("hub: step {rev}: {msg}"));
                let mut p = Progress::new("WONTGO", "State JSON has bad format", 100);
                p.retries = retries;
                p.logs = Some(msg);
                self.write_progress(&rev, p);
                return;
            }
        };
        let missing: Vec<String> = objects
            .into_iter()
            .map(|(_, sha)| sha)
            .filter(|sha| !dev.has_object(sha))
            .fold(Vec::new(), |mut v, sha| {
                if !v.contains(&sha) {
                    v.push(sha);
                }
                v
            });
        let mut p = Progress::new("QUEUED", "Downloading update metadata", 5);
        p.retries = retries;
        self.update = Some(RemoteUpdate::new(&rev, missing, retries, now));
        self.write_progress(&rev, p);
        self.go(Stage::PrepDownload, "a new step");
    }

    fn write_progress(&mut self, rev: &str, p: Progress) {
        if matches!(p.status.as_str(), "WONTGO" | "ERROR") {
            self.last_failed = true;
        } else if p.status == "QUEUED" {
            self.last_failed = false;
        }
        self.out.push(HubAction::WriteProgress {
            rev: rev.to_string(),
            progress: p.clone(),
        });
        self.queue_progress(rev, p);
    }

    fn queue_progress(&mut self, rev: &str, p: Progress) {
        self.progress_out.retain(|(r, _)| r != rev);
        self.progress_out.push((rev.to_string(), p));
    }

    fn queue_disk_progress(&mut self, rev: &str, dev: &dyn DeviceView) {
        if let Some(p) = dev.progress(rev) {
            self.queue_progress(rev, p);
        }
    }

    /// The update machine wrote a progress: mirror it, and follow the try.
    fn progress_written(&mut self, rev: String, p: Progress, now: Instant) {
        match p.status.as_str() {
            "INPROGRESS" => {
                if self.try_since.as_ref().is_none_or(|(r, _)| *r != rev) {
                    self.try_since = Some((rev.clone(), now));
                    self.reached_since_try = false;
                    self.testing_failed = false;
                }
                if self.claimed && self.token.is_some() {
                    self.go(Stage::Report, "the revision is being tried");
                }
            }
            s if is_final(s) => {
                self.try_since = None;
                self.reached_since_try = false;
                if self.update.as_ref().is_some_and(|u| u.rev == rev) {
                    self.update = None;
                }
                if matches!(self.stage, Stage::Report) {
                    self.steps_at = Some(now);
                    self.go(Stage::Idle, "the update ended");
                }
            }
            _ => {}
        }
        self.queue_progress(&rev, p);
    }

    fn end_update(&mut self, p: Progress, why: &str) {
        if let Some(u) = self.update.take() {
            for id in u.fetching_ids() {
                self.out.push(HubAction::Cancel { id });
            }
            self.write_progress(&u.rev, p);
            self.go(Stage::Idle, why);
        }
    }

    fn unclaim(&mut self) {
        self.log(log::Level::Info, "hub: UNCLAIM: credentials dropped".into());
        self.creds = Creds::default();
        self.claimed = false;
        self.token = None;
        self.out.push(HubAction::SaveCreds {
            claimed: true,
            creds: Creds::default(),
        });
        self.out.push(HubAction::SaveCreds {
            claimed: false,
            creds: Creds::default(),
        });
        self.publish_claimed();
        self.go(Stage::Register, "unclaimed");
    }

    /// Start the next call if the connection is free, start downloads, ask for a wake-up.
    fn pump(&mut self, now: Instant, unix: u64, dev: &dyn DeviceView) {
        self.check_try(now, dev);
        self.start_downloads(now, unix, dev);
        if self.in_flight.is_none() && self.not_before.is_none_or(|t| t <= now) {
            self.not_before = None;
            if let Some((job, call)) = self.next_call(now, dev) {
                self.call(job, call);
            }
        }
        let wake = self.next_wake(now);
        if wake != self.wake {
            self.wake = wake;
            if let Some(at) = wake {
                self.out.push(HubAction::Wake { at });
            }
        }
    }

    /// The hub must be reached within the network timeout after the switch to a remote
    /// revision.
    fn check_try(&mut self, now: Instant, dev: &dyn DeviceView) {
        match dev.trying() {
            Some((rev, _)) => {
                if self.try_since.as_ref().is_none_or(|(r, _)| *r != rev) {
                    self.try_since = Some((rev, now));
                    self.reached_since_try = false;
                    self.testing_failed = false;
                }
            }
            None => {
                self.try_since = None;
                return;
            }
        }
        if let Some((rev, since)) = self.try_since.clone()
            && !self.reached_since_try
            && !self.testing_failed
            && now >= since + self.settings.network_timeout
        {
            self.testing_failed = true;
            self.log(
                log::Level::Error,
                format!("hub: not reached within the network timeout while trying {rev}"),
            );
            self.out.push(HubAction::FailTry {
                reason: "Hub not reachable".into(),
            });
        }
    }

    fn next_call(&mut self, now: Instant, dev: &dyn DeviceView) -> Option<(Job, Call)> {
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        match self.stage {
            Stage::Init => return None,
            Stage::Register => {
                return Some((
                    Job::Register,
                    wire::register(self.settings.autotok.as_deref()),
                ));
            }
            _ => {}
        }
        if self.token.is_none() {
            return Some((Job::Login, wire::login(&self.creds)));
        }
        if !self.claimed {
            return due(self.claim_at).then(|| (Job::ClaimCheck, wire::get_device(&self.creds.id)));
        }
        if !self.progress_out.is_empty() {
            let (rev, p) = self.progress_out.remove(0);
            let totals = self
                .update
                .as_ref()
                .filter(|u| u.rev == rev)
                .map(|u| u.totals());
            let call = wire::progress(&self.creds.id, &rev, &p, totals);
            return Some((Job::Progress { rev, progress: p }, call));
        }
        match self.stage {
            Stage::WaitHub => return Some((Job::Trails, wire::get_trails())),
            Stage::Sync => return Some(self.next_sync_call(dev)),
            Stage::PrepDownload => {
                if let Some(sha) = self.update.as_mut().and_then(|u| u.meta_pending.pop()) {
                    let call = wire::object_meta(&sha);
                    return Some((Job::ObjectMeta { sha }, call));
                }
            }
            _ => {}
        }
        if due(self.full_devmeta_at) {
            // The whole map goes as a PATCH too: pantahub-base stores a PUT's dotted keys
            // quoted and a PATCH's as sent, so mixing the two leaves stale twins behind.
            let all = self.device_meta(dev);
            let body: Map<String, Value> = all
                .iter()
                .map(|(k, v)| (k.clone(), wire::meta_value(v)))
                .collect();
            self.devmeta_at = Some(now + self.settings.devmeta_interval);
            let call = wire::device_meta_patch(&self.creds.id, &body);
            return Some((
                Job::DevMeta {
                    sent: all,
                    full: true,
                },
                call,
            ));
        }
        if due(self.devmeta_at) {
            self.devmeta_at = Some(now + self.settings.devmeta_interval);
            let all = self.device_meta(dev);
            let mut changes = Map::new();
            let mut sent = BTreeMap::new();
            for (k, v) in &all {
                if self.devmeta_sent.get(k) != Some(v) {
                    changes.insert(k.clone(), wire::meta_value(v));
                    sent.insert(k.clone(), v.clone());
                }
            }
            for k in self.devmeta_sent.keys() {
                if !all.contains_key(k) {
                    changes.insert(k.clone(), Value::Null);
                    sent.insert(k.clone(), String::new());
                }
            }
            if !changes.is_empty() {
                let call = wire::device_meta_patch(&self.creds.id, &changes);
                return Some((Job::DevMeta { sent, full: false }, call));
            }
        }
        if due(self.usrmeta_at) {
            return Some((Job::UserMeta, wire::user_meta(&self.creds.id)));
        }
        if matches!(self.stage, Stage::Idle) && due(self.steps_at) {
            return Some((Job::Steps, wire::pending_steps(&self.creds.id)));
        }
        None
    }

    /// The device's meta with the client's own keys as they are now (the device's copy of
    /// them follows these actions, which are not carried out yet).
    fn device_meta(&self, dev: &dyn DeviceView) -> BTreeMap<String, String> {
        let mut all = dev.device_meta();
        all.extend(
            self.own_meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone())),
        );
        all
    }

    fn next_sync_call(&mut self, dev: &dyn DeviceView) -> (Job, Call) {
        match self.sync_objects.first() {
            Some((name, sha, size)) => (
                Job::PostObject { index: 0 },
                wire::post_object(name, sha, *size),
            ),
            None => (
                Job::PostTrail,
                wire::post_trail(&dev.running_state().unwrap_or_default()),
            ),
        }
    }

    fn next_wake(&self, now: Instant) -> Option<Instant> {
        let mut times: Vec<Instant> = Vec::new();
        if self.in_flight.is_none() {
            if let Some(t) = self.not_before {
                times.push(t);
            } else if self.claimed && self.token.is_some() {
                times.extend(
                    [self.devmeta_at, self.usrmeta_at, self.full_devmeta_at]
                        .into_iter()
                        .flatten(),
                );
                if self.stage == Stage::Idle {
                    times.extend(self.steps_at);
                }
            } else if !self.claimed {
                times.extend(self.claim_at);
            }
        }
        if let Some((_, since)) = &self.try_since
            && !self.reached_since_try
            && !self.testing_failed
        {
            times.push(*since + self.settings.network_timeout);
        }
        if let Some(t) = self.update.as_ref().and_then(|u| u.retry_at) {
            times.push(t);
        }
        // A moment already past would wake the loop for nothing: what is due and could not
        // go out waits for the answer in flight.
        times.into_iter().filter(|t| *t > now).min()
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
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
