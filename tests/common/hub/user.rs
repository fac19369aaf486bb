//! The user's side of the test hub handle: devices and their claim, auto-tokens, login
//! tokens, objects, trails and steps as the owner sees and changes them, user-meta and
//! device-meta, and pushed logs.

use std::time::Duration;

use serde_json::{Map, Value};

use super::{TestHub, model, progress, routes, text, views};

impl TestHub {
    // ---- devices and the user side ----

    /// Registered device ids, oldest first.
    pub fn devices(&self) -> Vec<String> {
        self.shared
            .model()
            .devices
            .iter()
            .map(|d| d.id.clone())
            .collect()
    }

    /// Waits for the first registered device.
    pub fn wait_for_device(&self, timeout: Duration) -> Option<String> {
        let mut id = None;
        self.wait_until(timeout, |h| {
            id = h.devices().into_iter().next();
            id.is_some()
        });
        id
    }

    /// The device as the hub stores it (with its secret).
    pub fn device(&self, id: &str) -> Option<Value> {
        self.shared
            .model()
            .device(id)
            .map(|d| views::device_json(d, true))
    }

    /// Lets `token` in `Pantahub-Devices-Auto-Token-V1` register devices owned by `owner`
    /// with this user-meta.
    pub fn add_autotoken(&self, token: &str, owner: &str, user_meta: Value) {
        let user_meta = match user_meta {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        self.shared.model().autotokens.insert(
            token.to_string(),
            model::AutoToken {
                owner: owner.to_string(),
                user_meta,
            },
        );
    }

    /// Claims the device with its current challenge; false if it has none (or no device).
    pub fn claim(&self, id: &str) -> bool {
        let mut m = self.shared.model();
        let Some(c) = m.device(id).map(|d| d.challenge.clone()) else {
            return false;
        };
        m.claim_with(id, &c)
    }

    /// Claims with a given challenge, as a user typing it would; false if wrong.
    pub fn claim_with(&self, id: &str, challenge: &str) -> bool {
        self.shared.model().claim_with(id, challenge)
    }

    /// The device is unowned again, with a new challenge. Tokens keep the owner they had.
    pub fn reset_claim(&self, id: &str) {
        self.shared.model().reset_claim(id);
    }

    /// A bearer token of the test user, for the user's own calls over HTTP (the claim
    /// `PUT /devices/<id>?challenge=<c>`, objects).
    pub fn user_token(&self) -> String {
        self.shared.model().user_token(self.shared.opts.token_ttl)
    }

    /// Every login token now fails with 401.
    pub fn expire_all_tokens(&self) {
        self.shared.model().expire_all_tokens();
    }

    // ---- objects, trails, steps ----

    /// Stores `data` as an uploaded object of the test user; returns its sha256.
    pub fn add_object(&self, data: &[u8]) -> String {
        let owner = self.owner();
        self.add_object_for(&owner, data)
    }

    pub fn add_object_for(&self, owner: &str, data: &[u8]) -> String {
        let sha = text::sha256_hex(data);
        self.shared.model().add_object(owner, &sha, data.to_vec())
    }

    /// Shas of all objects of all owners (announced or uploaded).
    pub fn objects(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .shared
            .model()
            .objects
            .values()
            .map(|o| o.sha.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The uploaded content of an object, of any owner.
    pub fn object_data(&self, sha: &str) -> Option<Vec<u8>> {
        let m = self.shared.model();
        m.objects
            .values()
            .find(|o| o.sha == sha && o.data.is_some())
            .and_then(|o| o.data.clone())
    }

    pub fn trail(&self, id: &str) -> Option<Value> {
        self.shared.model().trails.get(id).map(views::trail_json)
    }

    /// Posts a NEW step for the device, as its owner would. As pantahub-base requires, the
    /// trail must exist (the device made it with its factory state), step `rev - 1` must
    /// exist, and the state's objects must be the owner's and uploaded (`add_object`).
    pub fn post_step(&self, device_id: &str, rev: u64, state: Value, commit_msg: &str) {
        self.try_post_step(device_id, rev, state, commit_msg)
            .unwrap_or_else(|e| panic!("post_step {device_id} rev {rev}: {e}"));
    }

    /// `post_step` that says why the hub refuses the step instead of panicking.
    pub fn try_post_step(
        &self,
        device_id: &str,
        rev: u64,
        state: Value,
        commit_msg: &str,
    ) -> Result<(), String> {
        self.shared
            .model()
            .add_step(device_id, rev, state, commit_msg)
    }

    /// Sets a step's stored progress as the hub would serve it (e.g. to leave a step
    /// stuck in INPROGRESS); `progress` is decoded like a device's report.
    pub fn set_step_progress(&self, device_id: &str, rev: u64, progress: Value) {
        let decoded = progress::decode(&progress);
        if let Some(s) = self
            .shared
            .model()
            .steps
            .get_mut(&(device_id.to_string(), rev))
        {
            s.progress = decoded;
        }
    }

    /// The owner cancels a step, as pantahub-base's `…/steps/<rev>/cancel` does.
    pub fn cancel_step(&self, device_id: &str, rev: u64) {
        let mut p = views::default_progress("CANCEL", 0);
        p["status-msg"] = Value::from("Cancel as requested by owner");
        if let Some(s) = self
            .shared
            .model()
            .steps
            .get_mut(&(device_id.to_string(), rev))
        {
            s.progress = p;
        }
    }

    /// The step as the device gets it.
    pub fn step(&self, device_id: &str, rev: u64) -> Option<Value> {
        self.shared
            .model()
            .steps
            .get(&(device_id.to_string(), rev))
            .map(views::step_json)
    }

    /// The last progress body the device sent for this step, in full.
    pub fn progress(&self, device_id: &str, rev: u64) -> Option<Value> {
        self.progress_history(device_id, rev).pop()
    }

    /// Every progress body the device sent for this step, in order.
    pub fn progress_history(&self, device_id: &str, rev: u64) -> Vec<Value> {
        self.shared
            .model()
            .steps
            .get(&(device_id.to_string(), rev))
            .map(|s| s.progress_bodies.clone())
            .unwrap_or_default()
    }

    // ---- metadata and logs ----

    /// Replaces the device's user-meta.
    pub fn set_user_meta(&self, id: &str, meta: Value) {
        if let (Some(d), Value::Object(m)) = (self.shared.model().device_mut(id), meta) {
            d.user_meta = m;
        }
    }

    /// Merges into the device's user-meta; `null` deletes a key.
    pub fn patch_user_meta(&self, id: &str, patch: Value) {
        if let (Some(d), Value::Object(p)) = (self.shared.model().device_mut(id), patch) {
            routes::merge(&mut d.user_meta, p);
        }
    }

    pub fn user_meta(&self, id: &str) -> Value {
        self.shared
            .model()
            .device(id)
            .map_or(Value::Null, |d| Value::Object(d.user_meta.clone()))
    }

    /// The device-meta as the hub would answer it (an empty object if none was sent).
    pub fn device_meta(&self, id: &str) -> Value {
        self.shared.model().device(id).map_or(Value::Null, |d| {
            Value::Object(model::unquote_keys(&d.device_meta))
        })
    }

    /// Every pushed log entry, with the fields the hub adds.
    pub fn logs(&self) -> Vec<Value> {
        self.shared.model().logs.clone()
    }

    /// How many log entries the hub holds (cheap: nothing is copied).
    pub fn log_count(&self) -> usize {
        self.shared.model().logs.len()
    }
}
