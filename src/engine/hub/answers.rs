//! The hub client's answers: what each reply (or its absence) means for the stage, the
//! credentials, the pending steps and the update in hand, and the progress that follows.

use std::time::Instant;

use super::creds::Creds;
use super::download::RemoteUpdate;
use super::{
    Answer, DeviceView, FULL_DEVMETA_EVERY, HubAction, HubClient, Job, Stage, is_final, job_name,
    wire,
};
use crate::store::Progress;

impl HubClient {
    /// The answer to the call in flight.
    pub(super) fn answered(
        &mut self,
        job: Job,
        answer: Answer,
        now: Instant,
        dev: &dyn DeviceView,
    ) {
        let (status, body, etag) = match answer {
            Answer::Http { status, body, etag } => (status, body, etag),
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
            self.requeue(job, now);
            self.go(Stage::Login, "the hub refused the token");
            return;
        }
        match self.on_answer(job.clone(), status, &body, etag, now, dev) {
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
    pub(super) fn no_answer(&mut self, job: &Job, why: &str, now: Instant, dev: &dyn DeviceView) {
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
    pub(super) fn failed(&mut self, job: &Job, now: Instant, dev: &dyn DeviceView) {
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
        self.requeue(job.clone(), now);
        let delay = self.backoff.next_delay();
        self.not_before = Some(now + delay);
    }

    /// Put back what a failed call was carrying.
    pub(super) fn requeue(&mut self, job: Job, now: Instant) {
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
            Job::Logs => self.logs.retry(now),
            _ => {}
        }
    }

    pub(super) fn on_answer(
        &mut self,
        job: Job,
        status: u16,
        body: &[u8],
        etag: Option<String>,
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
                // A fleet that logs in together spreads its first user meta polls over one
                // interval instead of sending them all at once; a poll already due sooner (a
                // login again, mid-life) keeps its time.
                let first = now + self.jitter.phase(self.settings.usrmeta_interval);
                self.usrmeta_at = Some(self.usrmeta_at.map_or(first, |t| t.min(first)));
                if !self.claimed {
                    // At once: the first check brings the challenge the owner claims with.
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
                    self.claim_at = Some(now + self.jitter.period(self.settings.updater_interval));
                }
            }
            (_, Job::ClaimCheck, s) => return Err(format!("device check failed ({s})")),
            (_, Job::Trails, 200) => {
                if wire::parse_has_trail(body).ok_or("not a trail list")? {
                    self.steps_at = Some(now + self.jitter.phase(self.settings.updater_interval));
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
                self.steps_at = Some(now + self.jitter.phase(self.settings.updater_interval));
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
                self.steps_at = Some(now + self.jitter.period(self.settings.updater_interval));
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
                self.requeue(Job::ObjectMeta { sha: sha.clone() }, now);
                return Err(format!("metadata of object {sha} refused ({s})"));
            }
            (_, Job::UserMeta, 200) => {
                let meta = wire::parse_user_meta(body).ok_or("user meta is not an object")?;
                self.usrmeta_at = Some(now + self.jitter.period(self.settings.usrmeta_interval));
                // A hub without ETags sends the whole map each time: compare, and only a
                // change reaches the device.
                self.usermeta_etag = etag;
                if self.usermeta_last.as_ref() != Some(&meta) {
                    self.usermeta_last = Some(meta.clone());
                    self.out.push(HubAction::UserMeta(meta));
                }
            }
            (_, Job::UserMeta, 304) if self.usermeta_last.is_some() => {
                self.usrmeta_at = Some(now + self.jitter.period(self.settings.usrmeta_interval));
            }
            (_, Job::UserMeta, 304) => {
                // Not modified since a copy this client does not have: ask for the whole.
                self.usermeta_etag = None;
                return Err("not modified, but nothing was fetched before".into());
            }
            (_, Job::UserMeta, s) => return Err(format!("user meta fetch failed ({s})")),
            (_, Job::DevMeta { sent, full }, 200) => {
                if full {
                    self.devmeta_sent = sent;
                    // Only ever later than the hour: "at most once an hour" holds with jitter.
                    let spread = self.jitter.phase(FULL_DEVMETA_EVERY / 10);
                    self.full_devmeta_at = Some(now + FULL_DEVMETA_EVERY + spread);
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
            (_, Job::Progress { .. }, 200) => self.report_failures = 0,
            (_, Job::Progress { rev, .. }, s) if (400..500).contains(&s) => {
                // The hub does not know this step (deleted): nothing to retry.
                self.log(
                    log::Level::Warn,
                    format!("hub: progress of {rev} refused ({s}); dropped"),
                );
            }
            (_, Job::Progress { .. }, s) => return Err(format!("progress refused ({s})")),
            (_, Job::Register, s) => return Err(format!("registration refused ({s})")),
            // The log pusher keeps its own backoff: a refused batch never delays a steps poll.
            (_, Job::Logs, s) => self.logs.answered(s, now, &mut self.out),
        }
        Ok(())
    }

    /// Pending steps from the hub, oldest first. What the device already finished is
    /// reported again from its disk (the disk wins); the first step it has not finished is
    /// the next update.
    pub(super) fn take_steps(
        &mut self,
        steps: Vec<wire::Step>,
        now: Instant,
        dev: &dyn DeviceView,
    ) {
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

    pub(super) fn begin_update(
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
        // Before the first object is asked for: a refused step costs no download.
        if let Some(msg) = dev.refuse_signatures(&rev, &state) {
            let mut p = Progress::new("WONTGO", msg, 100);
            p.retries = retries;
            self.write_progress(&rev, p);
            return;
        }
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

    pub(super) fn write_progress(&mut self, rev: &str, p: Progress) {
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

    pub(super) fn queue_progress(&mut self, rev: &str, p: Progress) {
        self.progress_out.retain(|(r, _)| r != rev);
        self.progress_out.push((rev.to_string(), p));
    }

    pub(super) fn queue_disk_progress(&mut self, rev: &str, dev: &dyn DeviceView) {
        if let Some(p) = dev.progress(rev) {
            self.queue_progress(rev, p);
        }
    }

    /// The update machine wrote a progress: mirror it, and follow the try.
    pub(super) fn progress_written(&mut self, rev: String, p: Progress, now: Instant) {
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

    pub(super) fn end_update(&mut self, p: Progress, why: &str) {
        if let Some(u) = self.update.take() {
            for id in u.fetching_ids() {
                self.out.push(HubAction::Cancel { id });
            }
            // A failed update's partial downloads would otherwise stay in the storage forever.
            for sha in u.unfinished() {
                self.out.push(HubAction::DiscardDownload { sha });
            }
            self.write_progress(&u.rev, p);
            self.go(Stage::Idle, why);
        }
    }

    pub(super) fn unclaim(&mut self) {
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
}
