//! xconnect inside the loop: for every socket link of the service graph whose two containers
//! run, a listening socket at the consumer's `target` (bound through `/proc/<pid>/root`, so it
//! lands inside the consumer's own file system) and, per accepted connection, a byte pipe to
//! the provider's socket (reached the same way). Links follow the containers: when a pid
//! changes the old listener goes and a new one is bound.
//!
//! Memory is bounded: a fixed buffer per direction, a cap on connections per link and in
//! total; the loop never waits on either side (non-blocking, edge-triggered, drained).

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::path::PathBuf;

use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

use super::Reactor;
use crate::engine::xconnect::{self, Link};

/// Listener tokens are `LISTENER_BASE + slot`, pipe ends `PIPE_BASE + 2 × slot + side`.
pub const LISTENER_BASE: usize = 1 << 21;
pub const PIPE_BASE: usize = 1 << 22;
const BUF: usize = 16 * 1024;
const MAX_PIPES: usize = 256;
const MAX_PIPES_PER_LINK: usize = 32;

struct Listening {
    link: Link,
    pids: (i32, i32),
    listener: UnixListener,
    path: PathBuf,
}

/// One direction: bytes read from one end, not yet written to the other.
struct Flow {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    eof: bool,
    shut: bool,
}

impl Flow {
    fn new() -> Flow {
        Flow {
            buf: vec![0; BUF].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
            shut: false,
        }
    }

    /// Move what can move from `from` to `to` now. Err: the pipe is broken.
    fn run(&mut self, from: &mut UnixStream, to: &mut UnixStream) -> io::Result<()> {
        loop {
            if self.start < self.end {
                match to.write(&self.buf[self.start..self.end]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => self.start += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
                continue;
            }
            self.start = 0;
            self.end = 0;
            if self.eof {
                if !self.shut {
                    self.shut = true;
                    let _ = to.shutdown(Shutdown::Write);
                }
                return Ok(());
            }
            match from.read(&mut self.buf) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

struct Pipe {
    listener: usize,
    consumer: UnixStream,
    provider: UnixStream,
    up: Flow,
    down: Flow,
}

#[derive(Default)]
pub struct Proxies {
    listening: Vec<Option<Listening>>,
    pipes: Vec<Option<Pipe>>,
    /// The links and pids the listeners were last made for.
    signature: Vec<(String, String, i32, i32)>,
}

/// Whether process `pid` has left the host's root for its own.
fn own_root(pid: i32) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata(format!("/proc/{pid}/root/")),
        std::fs::metadata("/"),
    ) {
        (Ok(theirs), Ok(ours)) => (theirs.dev(), theirs.ino()) != (ours.dev(), ours.ino()),
        _ => false,
    }
}

fn in_root(pid: i32, path: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/root")).join(path.trim_start_matches('/'))
}

impl Proxies {
    fn open_pipes(&self, listener: usize) -> usize {
        self.pipes
            .iter()
            .flatten()
            .filter(|p| p.listener == listener)
            .count()
    }

    fn close_pipe(&mut self, slot: usize, registry: &Registry) {
        if let Some(mut p) = self.pipes.get_mut(slot).and_then(Option::take) {
            let _ = registry.deregister(&mut p.consumer);
            let _ = registry.deregister(&mut p.provider);
        }
    }

    fn close_listener(&mut self, slot: usize, registry: &Registry) {
        if let Some(mut l) = self.listening.get_mut(slot).and_then(Option::take) {
            let _ = registry.deregister(&mut l.listener);
            let _ = std::fs::remove_file(&l.path);
            log::info!(
                "xconnect: {} -> {} ({}) closed",
                l.link.consumer,
                l.link.provider,
                l.link.name
            );
        }
        let pipes: Vec<usize> = (0..self.pipes.len())
            .filter(|i| self.pipes[*i].as_ref().is_some_and(|p| p.listener == slot))
            .collect();
        for i in pipes {
            self.close_pipe(i, registry);
        }
    }

    pub fn close_all(&mut self, registry: &Registry) {
        for i in 0..self.listening.len() {
            self.close_listener(i, registry);
        }
        self.signature.clear();
    }

    fn bind(&mut self, link: Link, pids: (i32, i32), registry: &Registry) {
        let path = in_root(pids.0, &link.target);
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::remove_file(&path);
        let slot = match self.listening.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.listening.push(None);
                self.listening.len() - 1
            }
        };
        let bound = UnixListener::bind(&path).and_then(|mut l| {
            registry
                .register(&mut l, Token(LISTENER_BASE + slot), Interest::READABLE)
                .map(|()| l)
        });
        match bound {
            Ok(listener) => {
                log::info!(
                    "xconnect: {} reaches {} of {} at {}",
                    link.consumer,
                    link.name,
                    link.provider,
                    link.target
                );
                self.listening[slot] = Some(Listening {
                    link,
                    pids,
                    listener,
                    path,
                });
            }
            Err(e) => log::warn!(
                "xconnect: cannot offer {} to {} at {}: {e}",
                link.name,
                link.consumer,
                link.target
            ),
        }
    }

    /// A connection waits on listener `slot`: pipe each to the provider.
    fn accept(&mut self, slot: usize, registry: &Registry) {
        loop {
            let Some(l) = self.listening.get(slot).and_then(Option::as_ref) else {
                return;
            };
            let (consumer, _) = match l.listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("xconnect: accept: {e}");
                    return;
                }
            };
            let open = self.pipes.iter().flatten().count();
            if open >= MAX_PIPES || self.open_pipes(slot) >= MAX_PIPES_PER_LINK {
                log::warn!("xconnect: connection limit reached; refusing one");
                continue;
            }
            let provider = match UnixStream::connect(in_root(l.pids.1, &l.link.socket)) {
                Ok(p) => p,
                Err(e) => {
                    log::warn!("xconnect: {} of {}: {e}", l.link.name, l.link.provider);
                    continue;
                }
            };
            let i = match self.pipes.iter().position(Option::is_none) {
                Some(i) => i,
                None => {
                    self.pipes.push(None);
                    self.pipes.len() - 1
                }
            };
            let mut pipe = Pipe {
                listener: slot,
                consumer,
                provider,
                up: Flow::new(),
                down: Flow::new(),
            };
            let both = Interest::READABLE | Interest::WRITABLE;
            let ok = registry
                .register(&mut pipe.consumer, Token(PIPE_BASE + 2 * i), both)
                .and_then(|()| {
                    registry.register(&mut pipe.provider, Token(PIPE_BASE + 2 * i + 1), both)
                });
            if ok.is_ok() {
                self.pipes[i] = Some(pipe);
                self.pump(i, registry);
            }
        }
    }

    /// Readiness on a pipe: move bytes both ways; close when both ways are done or broken.
    fn pump(&mut self, slot: usize, registry: &Registry) {
        let Some(p) = self.pipes.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let up = p.up.run(&mut p.consumer, &mut p.provider);
        let down = p.down.run(&mut p.provider, &mut p.consumer);
        let finished = p.up.shut && p.down.shut;
        if up.is_err() || down.is_err() || finished {
            self.close_pipe(slot, registry);
        }
    }
}

impl Reactor {
    /// Make the listeners match the graph and the containers' pids of the moment (`force`:
    /// rebind everything, XCONNECT_GRAPH).
    pub(super) fn reconcile_xconnect(&mut self, force: bool) {
        let Some(run) = self.api.device.running.as_ref() else {
            return;
        };
        let containers = &self.containers;
        let mut not_ready = false;
        // A pid whose file system is the container's own: an isolated init still on the
        // host's root (between clone and pivot_root) would have the socket land on the host.
        let mut ready_pid = |n: &str| {
            let pid = run.supervisor.container(n).and_then(|c| c.pid)?;
            if containers.mode_of(n) == Some(crate::runtime::Mode::Isolated) && !own_root(pid) {
                not_ready = true;
                return None;
            }
            Some(pid)
        };
        let wanted: Vec<(Link, (i32, i32))> = xconnect::graph(&run.state)
            .into_iter()
            .filter(Link::is_socket)
            .filter_map(|l| {
                let pids = (ready_pid(&l.consumer)?, ready_pid(&l.provider)?);
                Some((l, pids))
            })
            .collect();
        if not_ready {
            self.deadlines.push(
                std::time::Instant::now() + std::time::Duration::from_millis(20),
                super::Due::Xconnect,
            );
        }
        let signature: Vec<(String, String, i32, i32)> = wanted
            .iter()
            .map(|(l, p)| (l.consumer.clone(), l.name.clone(), p.0, p.1))
            .collect();
        if !force && signature == self.proxies.signature {
            return;
        }
        let registry = self.poll.registry();
        for slot in 0..self.proxies.listening.len() {
            let keep = self.proxies.listening[slot].as_ref().is_some_and(|l| {
                !force && wanted.iter().any(|(w, p)| *w == l.link && *p == l.pids)
            });
            if !keep {
                self.proxies.close_listener(slot, registry);
            }
        }
        for (link, pids) in wanted {
            let have = self
                .proxies
                .listening
                .iter()
                .flatten()
                .any(|l| l.link == link && l.pids == pids);
            if !have {
                self.proxies.bind(link, pids, registry);
            }
        }
        self.proxies.signature = signature;
    }

    pub(super) fn xconnect_event(&mut self, token: usize) {
        let registry = self.poll.registry();
        if token >= PIPE_BASE {
            self.proxies.pump((token - PIPE_BASE) / 2, registry);
        } else {
            self.proxies.accept(token - LISTENER_BASE, registry);
        }
    }
}
