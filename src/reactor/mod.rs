//! The loop: one thread, one mio `Poll` over the control socket's listener, its connections
//! and a signalfd, with a deadline heap whose earliest entry is the poll timeout.
//!
//! This is the only code that owns file descriptors of the loop. It never blocks: sockets are
//! non-blocking, signals arrive as readable events, and the only waiting is in `poll`.

mod admission;
mod conn;
mod containers;
mod daemons;
mod deadlines;
mod drivers;
mod engine_io;
mod flood_log;
mod gate;
#[cfg(feature = "hub")]
mod hub;
#[cfg(not(feature = "hub"))]
#[path = "hub_off.rs"]
mod hub;
#[cfg(feature = "hub")]
pub mod hub_net;
mod lifecycle;
#[cfg(feature = "hub")]
mod log_push;
pub mod signals;
mod stream;
pub mod updates;
mod v1;
mod xconnect;

pub use containers::{Containers, Exit};
pub use daemons::from_config as daemons_from_config;

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mio::net::UnixListener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::api::{Api, Caller};
use crate::config::Config;
use crate::http::Limits;
use admission::{CallerKey, Who};
use conn::{Conn, Status, Timeouts};
use containers::{CONSOLE_BASE, ContainerDue, Effects};
use deadlines::Deadlines;

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const V1_LISTENER: Token = Token(2);
const FIRST_CONN: usize = 16;

/// Re-reads the configuration on SIGHUP (supplied by `main`, which knows the command line).
pub type Reload = Box<dyn FnMut() -> Result<Config, String>>;

/// What a deadline in the heap belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    /// A connection, by slot and the generation that slot had when the deadline was set.
    Conn { slot: usize, generation: u64 },
    /// Retry accepting after the process ran out of descriptors (the listener is edge
    /// triggered: without a retry, clients already queued would wait for the next newcomer).
    Accept,
    /// Something the container executor asked for.
    Containers(ContainerDue),
    /// Containers had their grace to stop on shutdown; kill what is left.
    ShutdownGrace,
    /// The commit delay (or a stability re-check) of the update being tried.
    Commit { generation: u64 },
    /// A board daemon's respawn delay is over.
    Daemon { index: usize },
    /// Look at xconnect again (a container's root was not ready).
    Xconnect,
    /// The identify LED's 15 s of blinking are over.
    BlinkOff,
    /// An update waiting for update locks looks again.
    LockedRun,
    /// The hub client's wake-up or a hub connection's timeout (only the latest counts).
    #[cfg_attr(not(feature = "hub"), allow(dead_code))]
    Hub { generation: u64 },
}

struct Slot {
    generation: u64,
    conn: Option<Conn>,
}

pub struct Reactor {
    poll: Poll,
    listener: UnixListener,
    /// The v1 API's TCP listener, when enabled.
    v1: Option<mio::net::TcpListener>,
    socket_path: PathBuf,
    signals: signals::Signals,
    slots: Vec<Slot>,
    open: usize,
    /// Connections whose turn ended with work left (slot, generation): driven again after
    /// the events at hand, before the loop waits.
    again: Vec<(usize, u64)>,
    deadlines: Deadlines<Due>,
    api: Api,
    limits: Limits,
    /// The caps of each listener's connections (per caller, reserved, total).
    pools: gate::Pools,
    /// Refusals and evictions per caller, logged once a minute.
    flood: flood_log::FloodLog,
    timeouts: Timeouts,
    reload: Reload,
    containers: Containers,
    /// The listener is closed and the loop ends once every container is down.
    shutting_down: bool,
    /// A non-reboot transition waiting for its containers to stop.
    pending: Option<updates::Pending>,
    /// Failures the engine reported during an update (they roll back instead of rebooting).
    failures: Vec<String>,
    /// Re-entrancy guard of [`Reactor::check_update`].
    checking: bool,
    /// Only the latest commit deadline counts.
    commit_generation: u64,
    /// Module loaders running, and container starts waiting for them.
    driver_runs: drivers::DriverRuns,
    /// xconnect listeners and the pipes behind them.
    proxies: xconnect::Proxies,
    /// Containers whose data a v1 purge wipes once they are down.
    purges: Vec<String>,
    /// An update held off by an update lock (revision, how to run it).
    locked_run: Option<(String, updates::RunMode)>,
    /// `POST /v1/update` with `force`: the next switch ignores update locks.
    force_switch: bool,
    /// The Pantacor Hub client, when this device talks to a hub.
    #[cfg_attr(not(feature = "hub"), allow(dead_code))]
    hub: Option<hub::Hub>,
}

/// Bind the control socket at `path`. A stale socket file from a previous run is replaced, but
/// a live one (another daemon answering on it) is an error rather than stolen.
pub fn bind_control_socket(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is served by another process", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    UnixListener::bind(path)
}

fn timeouts_from(config: &Config) -> Timeouts {
    Timeouts {
        idle: Duration::from_secs(config.get_u64("TERN_CTRL_IDLE_TIMEOUT").max(1)),
        request: Duration::from_secs(config.get_u64("TERN_CTRL_REQUEST_TIMEOUT").max(1)),
        head: Duration::from_secs(config.get_u64("TERN_CTRL_HEAD_TIMEOUT").max(1)),
        body_min_rate: config.get_u64("TERN_CTRL_BODY_MIN_RATE"),
    }
}

impl Reactor {
    pub fn new(
        mut listener: UnixListener,
        mut v1: Option<mio::net::TcpListener>,
        socket_path: PathBuf,
        api: Api,
        reload: Reload,
        containers: Containers,
    ) -> io::Result<Reactor> {
        let poll = Poll::new()?;
        if let Some(l) = v1.as_mut() {
            poll.registry()
                .register(l, V1_LISTENER, Interest::READABLE)?;
        }
        let signals = signals::Signals::new().map_err(io::Error::from)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        poll.registry().register(
            &mut SourceFd(&signals.raw_fd()),
            SIGNALS,
            Interest::READABLE,
        )?;
        let timeouts = timeouts_from(&api.device.config);
        let pools = gate::pools_from(&api.device.config);
        Ok(Reactor {
            poll,
            listener,
            v1,
            socket_path,
            signals,
            slots: Vec::new(),
            open: 0,
            again: Vec::new(),
            deadlines: Deadlines::default(),
            api,
            limits: Limits::default(),
            pools,
            flood: flood_log::FloodLog::new(Duration::from_secs(60)),
            timeouts,
            reload,
            containers,
            shutting_down: false,
            pending: None,
            failures: Vec::new(),
            checking: false,
            commit_generation: 0,
            driver_runs: drivers::DriverRuns::default(),
            proxies: xconnect::Proxies::default(),
            purges: Vec::new(),
            locked_run: None,
            force_switch: false,
            hub: None,
        })
    }

    /// Run until SIGTERM or SIGINT (or a reboot request); returns once every container is
    /// down.
    pub fn run(&mut self) -> io::Result<Exit> {
        let mut events = Events::with_capacity(64);
        loop {
            if let Some(exit) = self.containers.exit.clone() {
                if !self.shutting_down {
                    self.begin_shutdown(Instant::now());
                }
                if self.containers.is_empty() {
                    self.finish_shutdown();
                    return Ok(exit);
                }
            }
            let timeout = match self.again.is_empty() {
                true => self.deadlines.timeout(Instant::now()),
                false => Some(Duration::ZERO),
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(now),
                    V1_LISTENER => self.accept_v1(now),
                    SIGNALS => self.handle_signals(now),
                    Token(t) if t >= hub::HUB_BASE => {
                        if self.hub_owns(event.token()) {
                            self.hub_ready(event, now);
                        }
                    }
                    Token(t) if t >= xconnect::LISTENER_BASE => self.xconnect_event(t),
                    Token(t) if t >= CONSOLE_BASE => self.pump(t - CONSOLE_BASE, now),
                    Token(t) => self.drive(t - FIRST_CONN, now),
                }
            }
            self.fire_deadlines(Instant::now());
            self.serve_again(Instant::now());
        }
    }

    /// One more turn for each connection that yielded with work left.
    fn serve_again(&mut self, now: Instant) {
        for (slot, generation) in std::mem::take(&mut self.again) {
            if self
                .slots
                .get(slot)
                .is_some_and(|s| s.generation == generation)
            {
                self.drive(slot, now);
            }
        }
    }

    fn accept_v1(&mut self, now: Instant) {
        loop {
            let Some(listener) = self.v1.as_ref() else {
                return;
            };
            let (stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("v1: accept failed: {e}");
                    self.deadlines
                        .push(now + Duration::from_millis(100), Due::Accept);
                    return;
                }
            };
            let _ = stream.set_nodelay(true);
            let caller = Caller {
                v1: true,
                ..Caller::default()
            };
            // Counted by the peer's uid when it is on this host, else by address, until the
            // connection shows the key; the host's root is privileged, as on pv-ctrl.
            let local = stream.local_addr().ok();
            let uid = local.and_then(|l| crate::api::tcp_peer::peer_uid(peer, l));
            let who = Who {
                key: uid.map_or(CallerKey::Addr(peer.ip()), CallerKey::Uid),
                privileged: uid == Some(0),
            };
            self.admit(stream::Stream::Tcp(stream), caller, who, now);
        }
    }

    fn accept_all(&mut self, now: Instant) {
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: leave the rest in the backlog and try again shortly.
                    log::warn!("ctrl: accept failed: {e}");
                    self.deadlines
                        .push(now + Duration::from_millis(100), Due::Accept);
                    return;
                }
            };
            let mut caller = peer_caller(&stream);
            if let Some(pid) = caller.pid {
                caller.owner = self.api.identify(pid);
            }
            let who = gate::ctrl_who(&caller, |owner| self.api.may_manage(owner));
            self.admit(stream::Stream::Unix(stream), caller, who, now);
        }
    }

    fn free_slot(&mut self) -> usize {
        if let Some(i) = self.slots.iter().position(|s| s.conn.is_none()) {
            return i;
        }
        self.slots.push(Slot {
            generation: 0,
            conn: None,
        });
        self.slots.len() - 1
    }

    fn drive(&mut self, slot: usize, now: Instant) {
        let Some(conn) = self.slots.get_mut(slot).and_then(|s| s.conn.as_mut()) else {
            return;
        };
        let status = conn.drive(&mut self.api, &self.limits, now);
        let status = self.gate_head(slot, status, now);
        self.after(slot, status);
        self.drain_api_actions(now);
    }

    /// Close the connection, or make sure the heap will wake us by its deadline.
    fn after(&mut self, slot: usize, status: Status) {
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        let generation = s.generation;
        let Some(conn) = s.conn.as_mut() else { return };
        if status == Status::Close {
            self.close(slot);
            return;
        }
        if status == Status::Yield && !self.again.contains(&(slot, generation)) {
            self.again.push((slot, generation));
        }
        let due = conn.deadline(&self.timeouts);
        // Deadlines only move later with activity; a new entry is needed only when the
        // connection has none that fires early enough.
        if conn.scheduled.is_none_or(|at| at > due) {
            conn.scheduled = Some(due);
            self.deadlines.push(due, Due::Conn { slot, generation });
        }
    }

    fn close(&mut self, slot: usize) {
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        if let Some(mut conn) = s.conn.take() {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            s.generation += 1;
            self.open -= 1;
        }
    }

    fn fire_deadlines(&mut self, now: Instant) {
        while let Some((_, due)) = self.deadlines.pop_due(now) {
            match due {
                Due::Conn { slot, generation } => {
                    let Some(s) = self.slots.get_mut(slot) else {
                        continue;
                    };
                    if s.generation != generation {
                        continue;
                    }
                    let Some(conn) = s.conn.as_mut() else {
                        continue;
                    };
                    conn.scheduled = None;
                    let status = conn.on_timeout(now, &self.timeouts);
                    self.after(slot, status);
                }
                Due::Accept if !self.shutting_down => self.accept_all(now),
                Due::Accept => {}
                Due::Containers(due) => self.container_due(due, now),
                Due::Commit { generation } => self.commit_due(generation, now),
                Due::Daemon { index } => self.daemon_due(index, now),
                Due::Xconnect if !self.shutting_down => self.reconcile_xconnect(false),
                Due::Xconnect => {}
                Due::BlinkOff => self.blink_off(),
                Due::LockedRun => self.locked_run_due(now),
                Due::Hub { generation } => self.hub_due(generation, now),
                Due::ShutdownGrace => {
                    let mut fx = Effects::default();
                    self.containers.kill_all(self.poll.registry(), now, &mut fx);
                    self.push_effects(fx, now);
                }
            }
        }
        // Entries of closed connections linger until due; keep the heap proportional to what
        // is open even when clients come and go faster than the timeouts.
        if self.deadlines.len() > 2 * self.open + 64 {
            let slots = &self.slots;
            self.deadlines.compact(|due| match due {
                Due::Conn { slot, generation } => slots
                    .get(*slot)
                    .is_some_and(|s| s.generation == *generation && s.conn.is_some()),
                Due::Accept
                | Due::Containers(_)
                | Due::ShutdownGrace
                | Due::Commit { .. }
                | Due::Daemon { .. }
                | Due::Xconnect
                | Due::BlinkOff
                | Due::LockedRun
                | Due::Hub { .. } => true,
            });
        }
    }
}

fn peer_caller(stream: &mio::net::UnixStream) -> Caller {
    match nix::sys::socket::getsockopt(&stream.as_fd(), nix::sys::socket::sockopt::PeerCredentials)
    {
        Ok(cred) => Caller {
            pid: Some(cred.pid()),
            uid: Some(cred.uid()),
            owner: crate::api::Owner::Host,
            v1: false,
        },
        Err(_) => Caller::default(),
    }
}

/// The v1 API listener: `TERN_V1_ADDRESS` (loopback by default; `off` or empty disables it).
/// A failure to bind is logged and the daemon goes on with its control socket alone. The
/// daemon binds it before the control socket, so a client that reached pv-ctrl finds it up.
pub fn v1_listener(config: &Config) -> Option<mio::net::TcpListener> {
    let addr = config.get("TERN_V1_ADDRESS").unwrap_or_default().trim();
    if addr.is_empty() || addr.eq_ignore_ascii_case("off") {
        return None;
    }
    let parsed: std::net::SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            log::error!("v1: TERN_V1_ADDRESS {addr:?} is not an address:port ({e}); v1 API off");
            return None;
        }
    };
    match mio::net::TcpListener::bind(parsed) {
        Ok(l) => {
            log::info!("v1: serving the balena-style API on {parsed}");
            Some(l)
        }
        Err(e) => {
            log::error!("v1: cannot listen on {parsed}: {e}; v1 API off");
            None
        }
    }
}
