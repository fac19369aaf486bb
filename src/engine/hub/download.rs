//! The update being downloaded: which objects are missing, what the hub said of each (size,
//! signed URL), which are being fetched, retried or done, and the totals the progress
//! reports carry. The client's download steps (start, progress, end) live here too.

use std::time::{Duration, Instant};

use super::wire::Totals;
use super::{CallId, DeviceView, HubAction, HubClient, Stage};
use crate::store::Progress;

/// A download whose bytes do not hash to its name is tried this many times in all.
pub const BAD_DOWNLOADS: u32 = 3;
/// Download progress goes to the hub at most this often.
const REPORT_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct Obj {
    sha: String,
    size: Option<u64>,
    url: Option<String>,
    fetching: Option<CallId>,
    bytes: u64,
    done: bool,
    bad: u32,
}

#[derive(Debug)]
pub(super) struct RemoteUpdate {
    pub rev: String,
    /// Objects whose metadata is still to be asked for.
    pub meta_pending: Vec<String>,
    objects: Vec<Obj>,
    pub retries: u32,
    start_unix: u64,
    now_unix: u64,
    pub retry_at: Option<Instant>,
    last_report: Option<Instant>,
}

impl RemoteUpdate {
    pub fn new(rev: &str, missing: Vec<String>, retries: u32, _now: Instant) -> RemoteUpdate {
        RemoteUpdate {
            rev: rev.to_string(),
            meta_pending: missing.iter().rev().cloned().collect(),
            objects: missing
                .into_iter()
                .map(|sha| Obj {
                    sha,
                    size: None,
                    url: None,
                    fetching: None,
                    bytes: 0,
                    done: false,
                    bad: 0,
                })
                .collect(),
            retries,
            start_unix: 0,
            now_unix: 0,
            retry_at: None,
            last_report: None,
        }
    }

    pub fn set_meta(&mut self, sha: &str, size: u64, url: String) {
        for o in self.objects.iter_mut().filter(|o| o.sha == sha) {
            o.size = Some(size);
            o.url = Some(url.clone());
        }
    }

    fn meta_complete(&self) -> bool {
        self.meta_pending.is_empty() && self.objects.iter().all(|o| o.url.is_some())
    }

    pub fn total(&self) -> u64 {
        self.objects.iter().filter_map(|o| o.size).sum()
    }

    pub fn downloaded(&self) -> u64 {
        self.objects
            .iter()
            .map(|o| {
                if o.done {
                    o.size.unwrap_or(o.bytes)
                } else {
                    o.bytes
                }
            })
            .sum()
    }

    pub fn totals(&self) -> Totals {
        Totals {
            total: self.total(),
            done: self.downloaded(),
            start_unix: self.start_unix,
            now_unix: self.now_unix.max(self.start_unix),
        }
    }

    /// Objects not downloaded whole (their partial files are left to discard).
    pub fn unfinished(&self) -> Vec<String> {
        self.objects
            .iter()
            .filter(|o| !o.done)
            .map(|o| o.sha.clone())
            .collect()
    }

    pub fn fetching_ids(&self) -> Vec<CallId> {
        self.objects.iter().filter_map(|o| o.fetching).collect()
    }
}

fn downloading(retries: u32) -> Progress {
    let mut p = Progress::new(
        "DOWNLOADING",
        &format!("Downloading update artifacts, retry {retries}"),
        25,
    );
    p.retries = retries;
    p
}

impl HubClient {
    /// Move the update on: from metadata to downloads (after the space check), start as many
    /// downloads as allowed, and hand over the revision once every object is here.
    pub(super) fn start_downloads(&mut self, now: Instant, unix: u64, dev: &dyn DeviceView) {
        let Some(u) = self.update.as_mut() else {
            return;
        };
        if self.stage == Stage::PrepDownload {
            let meta_in_flight = matches!(self.in_flight, Some((_, super::Job::ObjectMeta { .. })));
            if !u.meta_complete() || meta_in_flight {
                return;
            }
            let need = u.total();
            let free = dev.free_bytes();
            if need > free {
                let msg = format!("Space required {need} B, available {free} B");
                let mut p = Progress::new("WONTGO", &msg, 100);
                p.retries = u.retries;
                self.end_update(p, "not enough space");
                return;
            }
            u.start_unix = unix;
            let p = downloading(u.retries);
            let rev = u.rev.clone();
            self.write_progress(&rev, p);
            self.go(Stage::Download, "object metadata known");
        }
        if self.stage != Stage::Download {
            return;
        }
        let Some(u) = self.update.as_mut() else {
            return;
        };
        if u.objects.iter().all(|o| o.done) {
            let rev = u.rev.clone();
            self.update = None;
            self.out.push(HubAction::RunStep { rev });
            self.go(Stage::Report, "every object downloaded");
            return;
        }
        if u.retry_at.is_some_and(|t| t > now) {
            return;
        }
        u.retry_at = None;
        let busy = u.objects.iter().filter(|o| o.fetching.is_some()).count();
        let room = self.settings.transfer_max.max(1).saturating_sub(busy);
        let mut starts = Vec::new();
        for o in u
            .objects
            .iter_mut()
            .filter(|o| !o.done && o.fetching.is_none())
        {
            if starts.len() >= room {
                break;
            }
            let (Some(url), Some(size)) = (o.url.clone(), o.size) else {
                continue;
            };
            starts.push((o.sha.clone(), url, size));
        }
        for (sha, url, size) in starts {
            let id = self.new_id();
            if let Some(u) = self.update.as_mut()
                && let Some(o) = u.objects.iter_mut().find(|o| o.sha == sha)
            {
                o.fetching = Some(id);
            }
            self.out.push(HubAction::Fetch { id, sha, url, size });
        }
    }

    pub(super) fn fetched(&mut self, id: CallId, bytes: u64, now: Instant, unix: u64) {
        let Some(u) = self.update.as_mut() else {
            return;
        };
        if let Some(o) = u.objects.iter_mut().find(|o| o.fetching == Some(id)) {
            o.bytes = bytes;
        }
        u.now_unix = unix;
        if u.last_report.is_none_or(|t| now >= t + REPORT_EVERY) {
            u.last_report = Some(now);
            let (rev, p) = (u.rev.clone(), downloading(u.retries));
            self.queue_progress(&rev, p);
        }
    }

    pub(super) fn downloaded(&mut self, id: CallId, result: Result<String, String>, now: Instant) {
        let Some(u) = self.update.as_mut() else {
            return;
        };
        let Some(o) = u.objects.iter_mut().find(|o| o.fetching == Some(id)) else {
            return;
        };
        o.fetching = None;
        let sha = o.sha.clone();
        match result {
            Ok(got) if got == sha => {
                o.done = true;
                self.out.push(HubAction::InstallObject { sha });
            }
            Ok(got) => {
                o.bad += 1;
                o.bytes = 0;
                let (bad, retries) = (o.bad, u.retries);
                self.out
                    .push(HubAction::DiscardDownload { sha: sha.clone() });
                self.log(
                    log::Level::Warn,
                    format!("hub: object {sha} downloaded as {got} (try {bad} of {BAD_DOWNLOADS})"),
                );
                if bad >= BAD_DOWNLOADS {
                    let mut p = Progress::new("ERROR", "Object validation went wrong", 100);
                    p.retries = retries;
                    p.logs = Some(format!("object {sha}: {bad} downloads with a wrong sha256"));
                    self.end_update(p, "an object never downloaded right");
                }
            }
            Err(why) => {
                let delay = self.backoff.next_delay();
                if let Some(u) = self.update.as_mut() {
                    u.retry_at = Some(now + delay);
                }
                self.log(
                    log::Level::Warn,
                    format!("hub: download of {sha} stopped: {why}; resuming in {delay:?}"),
                );
            }
        }
    }
}
