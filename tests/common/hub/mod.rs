//! A fake Pantacor Hub (pantahub-base's device API) for Tern's end-to-end tests: HTTPS on
//! 127.0.0.1 with a test CA, the device endpoints answering as pantahub-base does, a
//! user side driven from Rust (claim, steps, user-meta, objects), counters and a request
//! log, and faults a test can switch on and off while the device runs.
//!
//! `TestHub` is the handle a test holds; the server threads share its state under mutexes.
//!
//! A test typically points the device at `hub.host()`, `hub.port()` and `hub.certs_dir()`,
//! then plays the user:
//!
//! ```ignore
//! let hub = TestHub::start();
//! // … start Tern with the hub's host, port and CA directory …
//! let id = hub.wait_for_device(Duration::from_secs(10)).expect("registered");
//! assert!(hub.claim(&id));
//! assert!(hub.wait_until(Duration::from_secs(20), |h| h.trail(&id).is_some()));
//! let sha = hub.add_object(b"new app");
//! hub.post_step(&id, 1, json!({"#spec": "pantavisor-service-system@1", "app/x": sha}), "update");
//! hub.wait_until(Duration::from_secs(30), |h| {
//!     h.progress(&id, 1).is_some_and(|p| p["status"] == "DONE")
//! });
//! ```
//!
//! Two pantahub-base behaviours are off by default, the stricter or simpler answer being
//! the default, and `HubOpts` switches them on: writes by an owner-less token
//! (`empty_owner_passes`) and chunked large answers (`go_chunking`).

pub mod certs;
pub mod client;
mod faults;
mod message;
mod model;
mod objects;
mod progress;
mod routes;
mod server;
mod shared;
mod text;
mod trails;
mod user;
mod views;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustls::ServerConfig;

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
    /// Let a device token whose owner is `""` (logged in before the claim) create objects,
    /// trails and logs, under owner `""`. This is what pantahub-base's handlers do: they
    /// only check that the token has an owner claim, and a device token always has one.
    /// Off by default: such calls get 403 instead.
    pub empty_owner_passes: bool,
    /// Send JSON answers over 2 KiB with chunked transfer encoding, as Go's server (and so
    /// pantahub-base) does for a handler that sets no length. Off by default: every
    /// answer has a Content-Length.
    pub go_chunking: bool,
    /// Close a kept-alive connection after this long without a request (nginx, which
    /// fronts the real hub, closes after 75 s by default). `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Close a connection (with `Connection: close`) after this many requests (nginx's
    /// default: 1000). `None`: never.
    pub max_requests: Option<u64>,
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
            empty_owner_passes: false,
            go_chunking: false,
            idle_timeout: None,
            max_requests: None,
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
    /// The `--set`s that point a Tern daemon at this hub and turn its client on: the hub's
    /// address, its CA as the only trusted one, and a hosts file in `dir` that names it.
    pub fn device_sets(&self, dir: &Path) -> Vec<String> {
        let hosts = dir.join("hosts");
        std::fs::write(&hosts, "127.0.0.1 localhost\n").expect("hosts file");
        vec![
            format!("PH_CREDS_HOST={}", self.host()),
            format!("PH_CREDS_PORT={}", self.port()),
            format!("PV_LIBTHTTP_CERTSDIR={}", self.certs_dir().display()),
            format!("TERN_HUB_HOSTS={}", hosts.display()),
            "TERN_HUB=on".into(),
        ]
    }

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

    /// The logged requests whose path (with query) starts with `prefix`.
    pub fn requests_to(&self, prefix: &str) -> Vec<Logged> {
        lock(&self.shared.log)
            .iter()
            .filter(|l| l.path.starts_with(prefix))
            .cloned()
            .collect()
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

    /// Closes every open connection now (the hub stays up): the device's next request on
    /// a kept-alive connection finds it gone.
    pub fn close_connections(&self) {
        self.shared.close_all();
    }

    /// Requests whose path (with query) starts with `prefix` get `status` with the error
    /// body, `times` times or (with `None`) until cleared. Status 0 hangs up instead: the
    /// connection closes with no answer (logged with status 0).
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
