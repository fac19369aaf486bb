//! What the hub client does next: the call to start when the API connection is free (in
//! priority order), the downloads to start, the try's network deadline, and the wake-up.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{Map, Value};

use super::wire::{self, Call};
use super::{DeviceView, HubAction, HubClient, Job, Stage};

impl HubClient {
    /// Start the next call if the connection is free, start downloads, ask for a wake-up.
    pub(super) fn pump(&mut self, now: Instant, unix: u64, dev: &dyn DeviceView) {
        self.check_try(now, dev);
        self.start_downloads(now, unix, dev);
        if self.in_flight.is_none() && self.not_before.is_none_or(|t| t <= now) {
            self.not_before = None;
            if let Some((job, call)) = self.next_call(now, dev) {
                self.call(job, call);
            }
        }
        if self.claimed && self.token.is_some() {
            self.logs.poll(now, &mut self.out);
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
    pub(super) fn check_try(&mut self, now: Instant, dev: &dyn DeviceView) {
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

    pub(super) fn next_call(&mut self, now: Instant, dev: &dyn DeviceView) -> Option<(Job, Call)> {
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
            self.devmeta_at = Some(now + self.jitter.period(self.settings.devmeta_interval));
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
            self.devmeta_at = Some(now + self.jitter.period(self.settings.devmeta_interval));
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
            let call = wire::user_meta(&self.creds.id, self.usermeta_etag.as_deref());
            return Some((Job::UserMeta, call));
        }
        if matches!(self.stage, Stage::Idle) && due(self.steps_at) {
            return Some((Job::Steps, wire::pending_steps(&self.creds.id)));
        }
        // Logs last: a steps poll or a report never waits behind more than one batch.
        if let Some(body) = self.logs.take_call(now) {
            return Some((Job::Logs, wire::post_logs(body)));
        }
        None
    }

    /// The device's meta with the client's own keys as they are now (the device's copy of
    /// them follows these actions, which are not carried out yet).
    pub(super) fn device_meta(&self, dev: &dyn DeviceView) -> BTreeMap<String, String> {
        let mut all = dev.device_meta();
        all.extend(
            self.own_meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone())),
        );
        all
    }

    pub(super) fn next_sync_call(&mut self, dev: &dyn DeviceView) -> (Job, Call) {
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

    pub(super) fn next_wake(&self, now: Instant) -> Option<Instant> {
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
                times.extend(self.logs.next_wake());
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
