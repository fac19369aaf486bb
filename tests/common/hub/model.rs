//! What the test hub knows, and the rules for changing it: devices and their claim, login
//! tokens and auto-tokens, trails and their steps, objects with their blobs and
//! signed-URL grants, and pushed logs. (Their JSON is in `views`.)

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::{text, views};

pub struct Device {
    pub id: String,
    pub prn: String,
    pub nick: String,
    pub owner: String,
    pub secret: String,
    pub challenge: String,
    pub created: String,
    pub modified: String,
    pub user_meta: Map<String, Value>,
    pub device_meta: Map<String, Value>,
}

/// A login. A device's keeps the owner the device had when it logged in; the test user's
/// has no device id.
#[derive(Clone)]
pub struct Token {
    pub device_id: String,
    pub prn: String,
    pub owner: String,
    pub expires: Instant,
}

/// What a registration asks for.
#[derive(Default)]
pub struct Registration {
    pub secret: Option<String>,
    pub nick: Option<String>,
    pub device_meta: Map<String, Value>,
    /// The caller's prn when a logged-in caller registers the device.
    pub owner: Option<String>,
    /// A known auto-token.
    pub auto: Option<String>,
}

pub struct AutoToken {
    pub owner: String,
    pub user_meta: Map<String, Value>,
}

pub struct Trail {
    pub id: String,
    pub owner: String,
    pub device: String,
    pub factory_state: Value,
    pub used_objects: Vec<String>,
    pub last_insync: String,
    pub last_touched: String,
}

pub struct Step {
    pub trail_id: String,
    pub rev: u64,
    pub owner: String,
    pub device: String,
    pub commit_msg: String,
    pub state: Value,
    pub state_sha: String,
    /// The progress as the hub stores it (decoded into its own fields).
    pub progress: Value,
    /// Every progress body a device sent for this step, in order, as sent.
    pub progress_bodies: Vec<Value>,
    pub used_objects: Vec<String>,
    pub step_time: String,
    pub progress_time: String,
    pub created: String,
    pub modified: String,
}

pub struct Object {
    pub sha: String,
    pub owner: String,
    pub storage_id: String,
    pub name: String,
    pub size: u64,
    /// The uploaded content; `None` until a PUT to its signed URL succeeded.
    pub data: Option<Vec<u8>>,
    pub created: String,
    pub modified: String,
}

/// What a `/local-s3/<token>` URL grants.
#[derive(Clone)]
pub struct BlobGrant {
    pub method: &'static str,
    pub owner: String,
    pub sha: String,
    pub size: u64,
    pub expires: Instant,
}

/// Signed URLs last a day, as the hub's do.
const GRANT_TTL: Duration = Duration::from_secs(86_400);

pub struct Model {
    /// The account that `claim` gives devices to.
    pub user_owner: String,
    pub port: u16,
    pub devices: Vec<Device>,
    pub tokens: HashMap<String, Token>,
    pub autotokens: HashMap<String, AutoToken>,
    pub trails: BTreeMap<String, Trail>,
    pub steps: BTreeMap<(String, u64), Step>,
    /// Keyed by (owner, sha).
    pub objects: BTreeMap<(String, String), Object>,
    pub grants: HashMap<String, BlobGrant>,
    pub logs: Vec<Value>,
}

/// The hub stores metadata keys with `.` replaced by U+FF2E (its database cannot hold
/// dots in keys) and turns them back when it answers.
pub fn quote_keys(m: Map<String, Value>) -> Map<String, Value> {
    m.into_iter()
        .map(|(k, v)| (k.replace('.', "\u{FF2E}"), v))
        .collect()
}

pub fn unquote_keys(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .map(|(k, v)| (k.replace('\u{FF2E}', "."), v.clone()))
        .collect()
}

/// The storage id of an owner's copy of an object.
pub fn storage_id(owner: &str, sha: &str) -> String {
    text::sha256_hex(format!("{owner}/{sha}").as_bytes())
}

impl Token {
    pub fn is_device(&self) -> bool {
        !self.device_id.is_empty()
    }
}

impl Model {
    pub fn new(user_owner: String, port: u16) -> Model {
        Model {
            user_owner,
            port,
            devices: Vec::new(),
            tokens: HashMap::new(),
            autotokens: HashMap::new(),
            trails: BTreeMap::new(),
            steps: BTreeMap::new(),
            objects: BTreeMap::new(),
            grants: HashMap::new(),
            logs: Vec::new(),
        }
    }

    pub fn device(&self, id: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.id == id)
    }

    pub fn device_mut(&mut self, id: &str) -> Option<&mut Device> {
        self.devices.iter_mut().find(|d| d.id == id)
    }

    /// Registers a new device. With an owner (a logged-in caller, or an auto-token's) it
    /// is owned at once and has no challenge.
    pub fn register(&mut self, r: Registration) -> &Device {
        let id = text::random_hex(24);
        let now = text::rfc3339_now();
        let auto = r.auto.as_deref().and_then(|t| self.autotokens.get(t));
        let (owner, user_meta) = match (r.owner, auto) {
            (Some(o), _) => (o, Map::new()),
            (None, Some(a)) => (a.owner.clone(), a.user_meta.clone()),
            (None, None) => (String::new(), Map::new()),
        };
        let challenge = if owner.is_empty() && r.auto.is_none() {
            text::petname3()
        } else {
            String::new()
        };
        let nick = match r.nick {
            Some(n) => n,
            None if owner.is_empty() => text::unregistered_nick(),
            None => text::petname3_nick(),
        };
        self.devices.push(Device {
            prn: format!("prn:::devices:/{id}"),
            id,
            nick,
            owner,
            secret: r.secret.unwrap_or_else(|| text::random_alnum(15)),
            challenge,
            created: now.clone(),
            modified: now,
            user_meta,
            device_meta: quote_keys(r.device_meta),
        });
        self.devices.last().expect("just pushed")
    }

    /// Gives the device to the test user if `challenge` is its current, non-empty one.
    pub fn claim_with(&mut self, id: &str, challenge: &str) -> bool {
        let owner = self.user_owner.clone();
        let Some(d) = self.device_mut(id) else {
            return false;
        };
        if d.challenge.is_empty() || d.challenge != challenge {
            return false;
        }
        d.owner = owner;
        d.challenge.clear();
        if d.nick.starts_with("__unregistered__") {
            d.nick = text::petname3_nick();
        }
        d.modified = text::rfc3339_now();
        true
    }

    /// Makes the device unowned again, with a new challenge.
    pub fn reset_claim(&mut self, id: &str) {
        if let Some(d) = self.device_mut(id) {
            d.owner.clear();
            d.challenge = text::petname3();
            d.modified = text::rfc3339_now();
        }
    }

    /// A login token for the device with this prn and secret.
    pub fn login(&mut self, prn: &str, secret: &str, ttl: Duration) -> Option<String> {
        if !prn.starts_with("prn:::devices:") {
            return None;
        }
        let d = self.devices.iter().find(|d| d.prn == prn)?;
        if d.secret != secret {
            return None;
        }
        let now = text::unix_now();
        let claims = json!({
            "exp": now + ttl.as_secs(),
            "id": d.prn,
            "nick": d.nick,
            "orig_iat": now,
            "owner": d.owner,
            "prn": d.prn,
            "roles": "device",
            "scopes": "prn:pantahub.com:apis:/base/all",
            "type": "DEVICE",
        });
        let token = text::jwt_like("RS256", &claims, 256);
        let t = Token {
            device_id: d.id.clone(),
            prn: d.prn.clone(),
            owner: d.owner.clone(),
            expires: Instant::now() + ttl,
        };
        self.tokens.insert(token.clone(), t);
        Some(token)
    }

    /// A token of the test user (for the user's own calls, like a claim over HTTP).
    pub fn user_token(&mut self, ttl: Duration) -> String {
        let now = text::unix_now();
        let claims = json!({
            "exp": now + ttl.as_secs(),
            "id": self.user_owner,
            "orig_iat": now,
            "prn": self.user_owner,
            "roles": "user",
            "type": "USER",
        });
        let token = text::jwt_like("RS256", &claims, 256);
        let t = Token {
            device_id: String::new(),
            prn: self.user_owner.clone(),
            owner: self.user_owner.clone(),
            expires: Instant::now() + ttl,
        };
        self.tokens.insert(token.clone(), t);
        token
    }

    /// The token's login, if it is known and not expired.
    pub fn token(&self, token: &str) -> Option<Token> {
        self.tokens
            .get(token)
            .filter(|t| t.expires > Instant::now())
            .cloned()
    }

    pub fn expire_all_tokens(&mut self) {
        let now = Instant::now();
        for t in self.tokens.values_mut() {
            t.expires = now;
        }
    }

    /// Stores an already-uploaded object for `owner`; returns its sha.
    pub fn add_object(&mut self, owner: &str, name: &str, data: Vec<u8>) -> String {
        let sha = text::sha256_hex(&data);
        let now = text::rfc3339_now();
        let obj = Object {
            sha: sha.clone(),
            owner: owner.to_string(),
            storage_id: storage_id(owner, &sha),
            name: name.to_string(),
            size: data.len() as u64,
            data: Some(data),
            created: now.clone(),
            modified: now,
        };
        self.objects.insert((owner.to_string(), sha.clone()), obj);
        sha
    }

    fn grant(&mut self, method: &'static str, obj: &Object) -> String {
        let now = text::unix_now();
        let issuer = format!("https://localhost:{}/objects", self.port);
        let claims = json!({
            "aud": obj.storage_id,
            "exp": now + GRANT_TTL.as_secs(),
            "iat": now,
            "iss": issuer,
            "sub": obj.owner,
            "DispositionName": obj.name,
            "Size": obj.size,
            "Method": method,
            "Sha": obj.sha,
        });
        let tok = text::jwt_like("HS256", &claims, 32);
        self.grants.insert(
            tok.clone(),
            BlobGrant {
                method,
                owner: obj.owner.clone(),
                sha: obj.sha.clone(),
                size: obj.size,
                expires: Instant::now() + GRANT_TTL,
            },
        );
        format!("https://localhost:{}/local-s3/{tok}", self.port)
    }

    /// The `ObjectWithAccess` JSON of (owner, sha), with fresh signed URLs.
    pub fn object_with_access(&mut self, owner: &str, sha: &str) -> Option<Value> {
        let key = (owner.to_string(), sha.to_string());
        let obj = self.objects.remove(&key)?;
        let put = self.grant("PUT", &obj);
        let get = self.grant("GET", &obj);
        let v = json!({
            "id": obj.sha,
            "storage-id": obj.storage_id,
            "owner": obj.owner,
            "objectname": obj.name,
            "sha256sum": obj.sha,
            "size": obj.size.to_string(),
            "sizeint": obj.size,
            "mime-type": "",
            "time-created": obj.created,
            "time-modified": obj.modified,
            "signed-puturl": put,
            "signed-geturl": get,
            "now": text::unix_now().to_string(),
            "expire-time": "15",
        });
        self.objects.insert(key, obj);
        Some(v)
    }

    /// True if `owner` has the object with its content uploaded.
    pub fn has_blob(&self, owner: &str, sha: &str) -> bool {
        self.objects
            .get(&(owner.to_string(), sha.to_string()))
            .is_some_and(|o| o.data.is_some())
    }

    /// The storage ids of the owner's uploaded objects that `state` names; an error names
    /// the first key whose value is not one of them.
    pub fn state_objects(
        &self,
        owner: &str,
        state: &Map<String, Value>,
    ) -> Result<Vec<String>, String> {
        let mut used = Vec::new();
        for (k, v) in state {
            if k == "#spec" || k.ends_with(".json") {
                continue;
            }
            let sha = v.as_str().ok_or_else(|| format!("{k}: not a sha"))?;
            // Announced is not enough: the content must have been uploaded.
            if !text::is_sha256(sha) || !self.has_blob(owner, sha) {
                return Err(format!("{k}: no stored object {sha} under owner {owner}"));
            }
            used.push(storage_id(owner, sha));
        }
        Ok(used)
    }
}

impl Model {
    /// Creates the device's trail from its factory state, with step 0 DONE.
    pub fn create_trail(
        &mut self,
        device_id: &str,
        owner: &str,
        state: Value,
    ) -> Result<&Trail, String> {
        let prn = format!("prn:::devices:/{device_id}");
        if self.trails.contains_key(device_id) {
            return Err("duplicate key error: trail exists".into());
        }
        let used = {
            let map = state.as_object().ok_or("state is not an object")?;
            match map.get("#spec").and_then(Value::as_str) {
                Some(
                    "pantavisor-multi-platform@1"
                    | "pantavisor-service-embed@1"
                    | "pantavisor-service-system@1",
                ) => {}
                _ => return Err("unsupported or missing #spec".into()),
            }
            self.state_objects(owner, map)?
        };
        // The hub leaves both times at Go's zero time until a progress report touches it.
        let zero = text::GO_ZERO_TIME.to_string();
        self.trails.insert(
            device_id.to_string(),
            Trail {
                id: device_id.to_string(),
                owner: owner.to_string(),
                device: prn,
                factory_state: state.clone(),
                used_objects: used.clone(),
                last_insync: zero.clone(),
                last_touched: zero,
            },
        );
        let progress = views::default_progress("DONE", 0);
        self.insert_step(
            device_id,
            0,
            state,
            "Factory State (rev 0)",
            progress,
            used,
            None,
        );
        Ok(&self.trails[device_id])
    }

    /// Adds the owner's step `rev`, NEW, as pantahub-base accepts one: the previous rev
    /// must exist, and every object of the state must be the owner's, uploaded.
    pub fn add_step(
        &mut self,
        device_id: &str,
        rev: u64,
        state: Value,
        commit_msg: &str,
    ) -> Result<(), String> {
        let trail = self
            .trails
            .get(device_id)
            .ok_or("no trail for this device")?;
        let owner = trail.owner.clone();
        if rev == 0 || !self.steps.contains_key(&(device_id.to_string(), rev - 1)) {
            return Err(format!(
                "bad step rev {rev}: no step {}",
                rev.wrapping_sub(1)
            ));
        }
        if self.steps.contains_key(&(device_id.to_string(), rev)) {
            return Err(format!("step {rev} exists"));
        }
        let map = state.as_object().ok_or("state is not an object")?;
        let used = self.state_objects(&owner, map)?;
        let progress = views::default_progress("NEW", 0);
        let epoch = Some(text::UNIX_EPOCH_TIME);
        self.insert_step(device_id, rev, state, commit_msg, progress, used, epoch);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn insert_step(
        &mut self,
        device_id: &str,
        rev: u64,
        state: Value,
        commit_msg: &str,
        progress: Value,
        used: Vec<String>,
        progress_time: Option<&str>,
    ) {
        let Some(trail) = self.trails.get(device_id) else {
            return;
        };
        let key = (device_id.to_string(), rev);
        let now = text::rfc3339_now();
        let step = Step {
            trail_id: device_id.to_string(),
            rev,
            owner: trail.owner.clone(),
            device: trail.device.clone(),
            commit_msg: commit_msg.to_string(),
            state_sha: text::sha256_hex(state.to_string().as_bytes()),
            state,
            progress,
            progress_bodies: Vec::new(),
            used_objects: used,
            step_time: now.clone(),
            progress_time: progress_time.map_or(now.clone(), String::from),
            created: now.clone(),
            modified: now,
        };
        self.steps.insert(key, step);
    }
}
