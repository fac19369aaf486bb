//! A fake Pantacor Hub (pantahub-base's device API) for Tern's end-to-end tests: HTTPS on
//! 127.0.0.1 with a test CA, the device endpoints answering as pantahub-base does, a
//! user side driven from Rust (claim, steps, user-meta, objects), counters and a request
//! log, and faults a test can switch on and off while the device runs.
//!
//! `TestHub` is the handle a test holds; the server threads share its state under mutexes.

pub mod certs;
pub mod client;
mod faults;
mod message;
mod model;
mod objects;
mod routes;
mod server;
mod shared;
mod text;
mod trails;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustls::ServerConfig;
use serde_json::{Map, Value};

#[allow(unused_imports)]
pub use client::{HubClient, HubReply};
#[allow(unused_imports)]
pub use shared::{ConnStats, HubStats, Logged};

use certs::{CertKind, Certs};
use shared::{Shared, lock};

/// How to start a hub.
#[derive(Clone, Debug)]
pub struct HubOpts {
    /// Serve a certificate for `wrong.invalid` instead of `localhost`/127.0.0.1.
    pub wrong_name: bool,
    /// Serve a certificate that expired in 2000.
    pub expired: bool,
    /// Lifetime of a login token (pantahub-base: 60 minutes).
    pub token_ttl: Duration,
    /// Send an `ETag` with user-meta and answer 304 to a matching `If-None-Match`.
    /// pantahub-base does neither; off by default.
    pub etag_user_meta: bool,
    /// Offer only TLS 1.2 (as an mbedTLS device would use).
    pub tls12_only: bool,
    /// The user account `claim` gives devices to, and that owns `add_object`'s objects.
    pub owner: String,
}

impl Default for HubOpts {
    fn default() -> HubOpts {
        HubOpts {
            wrong_name: false,
            expired: false,
            token_ttl: Duration::from_secs(60 * 60),
            etag_user_meta: false,
            tls12_only: false,
            owner: "prn:pantahub.com:auth:/tern-test-user".into(),
        }
    }
}

pub struct TestHub {
    shared: Arc<Shared>,
    certs: Certs,
    accept: Option<JoinHandle<()>>,
}

fn server_config(certs: &Certs, tls12_only: bool) -> Arc<ServerConfig> {
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS12, &rustls::version::TLS13]
    };
    // The process-wide provider: ring, the only one this build enables.
    let config = ServerConfig::builder_with_protocol_versions(versions)
        .with_no_client_auth()
        .with_single_cert(certs.chain.clone(), certs.key.clone_key())
        .expect("server certificate");
    Arc::new(config)
}

impl TestHub {
    pub fn start() -> TestHub {
        TestHub::start_with(HubOpts::default())
    }

    pub fn start_with(opts: HubOpts) -> TestHub {
        let kind = match (opts.wrong_name, opts.expired) {
            (true, _) => CertKind::WrongName,
            (_, true) => CertKind::Expired,
            _ => CertKind::Good,
        };
        let certs = certs::generate(kind);
        let config = server_config(&certs, opts.tls12_only);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind test hub");
        let port = listener.local_addr().expect("local addr").port();
        let shared = Arc::new(Shared::new(opts, port));
        let accept = server::spawn_accept(shared.clone(), listener, config);
        TestHub {
            shared,
            certs,
            accept: Some(accept),
        }
    }

    // ---- where it is ----

    pub fn port(&self) -> u16 {
        self.shared.port
    }
    pub fn host(&self) -> &'static str {
        "localhost"
    }
    /// `https://localhost:<port>`.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port())
    }
    /// A directory holding only `ca.pem`, the CA of the hub's certificate.
    pub fn certs_dir(&self) -> &Path {
        self.certs.dir.path()
    }
    pub fn ca_path(&self) -> PathBuf {
        self.certs.ca_path()
    }
    /// A CA that signed nothing the hub serves, in a directory of its own.
    pub fn untrusted_ca_path(&self) -> PathBuf {
        self.certs.untrusted_ca_path()
    }
    /// The user account devices are claimed for.
    pub fn owner(&self) -> String {
        self.shared.opts.owner.clone()
    }
    /// A test client connected to this hub, trusting its CA.
    pub fn client(&self) -> HubClient {
        HubClient::connect(self.port(), &self.ca_path()).expect("connect to test hub")
    }

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
            .map(|d| model::device_json(d, true))
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
        self.shared.model().trails.get(id).map(model::trail_json)
    }

    /// Posts a NEW step for the device, as its owner would. The trail must exist (the
    /// device made it with its factory state).
    pub fn post_step(&self, device_id: &str, rev: u64, state: Value, commit_msg: &str) {
        self.shared
            .model()
            .add_step(
                device_id,
                rev,
                state,
                commit_msg,
                model::default_progress("NEW", 0),
            )
            .unwrap_or_else(|e| panic!("post_step {device_id} rev {rev}: {e}"));
    }

    /// Sets a step's stored progress as the hub would serve it (e.g. to leave a step
    /// stuck in INPROGRESS); `progress` is decoded like a device's report.
    pub fn set_step_progress(&self, device_id: &str, rev: u64, progress: Value) {
        let decoded = trails::decode_progress(&progress).expect("progress fields");
        if let Some(s) = self
            .shared
            .model()
            .steps
            .get_mut(&(device_id.to_string(), rev))
        {
            s.progress = decoded;
        }
    }

    /// The step as the device gets it.
    pub fn step(&self, device_id: &str, rev: u64) -> Option<Value> {
        self.shared
            .model()
            .steps
            .get(&(device_id.to_string(), rev))
            .map(model::step_json)
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

    /// The device-meta the device last sent (an empty object if none).
    pub fn device_meta(&self, id: &str) -> Value {
        self.shared
            .model()
            .device(id)
            .map_or(Value::Null, |d| Value::Object(d.device_meta.clone()))
    }

    /// Every pushed log entry, with the fields the hub adds.
    pub fn logs(&self) -> Vec<Value> {
        self.shared.model().logs.clone()
    }

    // ---- counters ----

    pub fn stats(&self) -> HubStats {
        lock(&self.shared.counters).total
    }

    pub fn connection_stats(&self) -> Vec<ConnStats> {
        lock(&self.shared.counters)
            .conns
            .values()
            .copied()
            .collect()
    }

    pub fn requests(&self) -> Vec<Logged> {
        lock(&self.shared.log).clone()
    }

    /// Polls `f` every 20 ms until it holds or `timeout` passes; returns whether it held.
    pub fn wait_until(&self, timeout: Duration, mut f: impl FnMut(&TestHub) -> bool) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if f(self) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    // ---- faults ----

    /// Down: new connections are closed as soon as accepted and open ones are closed.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
        if down {
            self.shared.close_all();
        }
    }

    /// Requests whose path (with query) starts with `prefix` get `status` with the error
    /// body, `times` times or (with `None`) until cleared.
    pub fn fail(&self, prefix: &str, status: u16, times: Option<u32>) {
        self.shared.faults().fail(prefix, status, times);
    }

    pub fn clear_fail(&self, prefix: &str) {
        self.shared.faults().clear_fail(prefix);
    }

    /// Answers to paths starting with `prefix` are delayed by `delay` (zero clears).
    pub fn stall(&self, prefix: &str, delay: Duration) {
        self.shared.faults().stall(prefix, delay);
    }

    /// The next download of `sha` sends the full Content-Length but only the blob's bytes
    /// before offset `byte`, then the connection closes.
    pub fn cut_blob_at(&self, sha: &str, byte: u64) {
        self.shared.faults().cut_blob_at(sha, byte);
    }

    /// The next `times` downloads of `sha` carry wrong bytes of the right length.
    pub fn corrupt_blob(&self, sha: &str, times: u32) {
        self.shared.faults().corrupt_blob(sha, times);
    }

    /// Clears every fail, stall, cut and corrupt rule, and brings the hub up.
    pub fn clear_faults(&self) {
        self.shared.faults().clear();
        self.set_down(false);
    }

    /// Stops the server: closes every connection and joins the threads.
    pub fn stop(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.close_all();
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port()));
        let _ = accept.join();
        let threads: Vec<_> = lock(&self.shared.threads).drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        self.stop();
    }
}
