//! The reactor's side of admission: who a new connection belongs to, the caps of each
//! listener's pool (from the config), and carrying out what [`admission`] decides: close the
//! chosen connection, refuse with a 503, or admit. Every refusal and eviction is counted in
//! the flood log, which logs each caller once a minute.
//!
//! [`admission`]: super::admission

use std::io::Write;
use std::time::Instant;

use mio::{Interest, Token};

use super::admission::{self, CallerKey, Caps, Decision, Entry, Refuse, Who};
use super::conn::{Conn, Status};
use super::flood_log::Hit;
use super::{FIRST_CONN, Reactor, stream};
use crate::api::{Caller, Owner};
use crate::config::Config;
use crate::http::{Response, Version};

/// The caps of the control socket's pool and of the v1 listener's.
#[derive(Clone, Copy, Debug)]
pub struct Pools {
    pub ctrl: Caps,
    pub v1: Caps,
}

fn num(config: &Config, key: &str, default: usize) -> usize {
    usize::try_from(config.get_u64(key))
        .unwrap_or(default)
        .clamp(1, 1024)
}

pub fn pools_from(config: &Config) -> Pools {
    let caps = |prefix: &str, replace_own: bool| {
        let max = num(config, &format!("{prefix}_MAX_CONNECTIONS"), 64);
        let reserved = config.get_u64(&format!("{prefix}_RESERVED_CONNECTIONS"));
        Caps {
            max,
            // Unprivileged callers always keep half the pool at least.
            reserved: usize::try_from(reserved).unwrap_or(8).min(max / 2),
            per_caller: num(config, &format!("{prefix}_MAX_PER_CALLER"), 16),
            heads_per_caller: num(config, &format!("{prefix}_MAX_HEADS_PER_CALLER"), 4),
            replace_own,
        }
    };
    Pools {
        ctrl: caps("TERN_CTRL", false),
        v1: caps("TERN_V1", true),
    }
}

/// Whom a control-socket peer is counted against, and whether it is privileged: the host's
/// root and mgmt containers are; other uids and containers are not.
pub fn ctrl_who(caller: &Caller, may_manage: impl Fn(&Owner) -> bool) -> Who {
    match (&caller.owner, caller.uid) {
        (Owner::Container(name), _) => Who {
            key: CallerKey::Container(name.clone()),
            privileged: may_manage(&caller.owner),
        },
        (Owner::Host, Some(uid)) => Who {
            key: CallerKey::Uid(uid),
            privileged: uid == 0,
        },
        (Owner::Host, None) => Who {
            key: CallerKey::Unknown,
            privileged: false,
        },
    }
}

impl Reactor {
    fn caps(&self, v1: bool) -> &Caps {
        if v1 { &self.pools.v1 } else { &self.pools.ctrl }
    }

    /// The open connections of one pool, but `except`.
    fn entries(&self, v1: bool, except: Option<usize>) -> Vec<Entry<'_>> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != except)
            .filter_map(|(slot, s)| {
                let c = s.conn.as_ref().filter(|c| c.caller.v1 == v1)?;
                Some(Entry {
                    slot,
                    who: &c.who,
                    phase: c.phase(),
                })
            })
            .collect()
    }

    fn note_flood(&mut self, key: &CallerKey, hit: Hit, now: Instant) {
        for line in self.flood.note(key, hit, now) {
            log::warn!("ctrl: flood: {line}");
        }
    }

    /// A new client of either listener: a slot (after closing another connection if the
    /// pool says so), or a 503.
    pub(super) fn admit(
        &mut self,
        mut stream: stream::Stream,
        caller: Caller,
        who: Who,
        now: Instant,
    ) {
        let v1 = caller.v1;
        let decision = {
            let entries = self.entries(v1, None);
            admission::decide(&entries, self.caps(v1), &who, now)
        };
        match decision {
            Decision::Admit => {}
            Decision::Evict(slot, why) => {
                if let Some(key) = self.slots[slot].conn.as_ref().map(|c| c.who.key.clone()) {
                    log::debug!("ctrl: closing a connection of {key} to make room ({why:?})");
                    self.note_flood(&key, Hit::Evicted, now);
                }
                self.close(slot);
            }
            Decision::Refuse(why) => {
                refuse_busy(&mut stream, why);
                self.note_flood(&who.key, Hit::Refused, now);
                return;
            }
        }
        let slot = self.free_slot();
        let token = Token(slot + FIRST_CONN);
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("ctrl: cannot watch a new connection: {e}");
            return;
        }
        self.slots[slot].conn = Some(Conn::new(stream, caller, who, now));
        self.open += 1;
        self.drive(slot, now);
    }

    /// A head started arriving on `slot`: count it against its caller's cap on heads in
    /// flight, or refuse it. Privileged callers are bounded by the pool alone.
    pub(super) fn gate_head(&mut self, slot: usize, status: Status, now: Instant) -> Status {
        if status != Status::Open {
            return status;
        }
        let Some(conn) = self.slots.get(slot).and_then(|s| s.conn.as_ref()) else {
            return status;
        };
        if conn.head_admitted || !matches!(conn.phase(), admission::Phase::Head(_)) {
            return status;
        }
        let (v1, who) = (conn.caller.v1, conn.who.clone());
        let allowed = who.privileged || {
            let entries = self.entries(v1, Some(slot));
            admission::head_allowed(&entries, self.caps(v1), &who)
        };
        if !allowed {
            self.note_flood(&who.key, Hit::Refused, now);
        }
        let Some(conn) = self.slots.get_mut(slot).and_then(|s| s.conn.as_mut()) else {
            return status;
        };
        if allowed {
            conn.head_admitted = true;
            status
        } else {
            conn.refuse_head(now)
        }
    }
}

/// A newcomer with no slot for it: say why and hang up.
fn refuse_busy(stream: &mut impl Write, why: Refuse) {
    let message = match why {
        Refuse::Full => "Too many connections",
        Refuse::CallerCap => "Too many connections from this caller",
    };
    let resp = Response::error(503, message)
        .closing()
        .with_header("Retry-After", "1");
    let (mut bytes, _) = resp.head_bytes(Version::Http11, false);
    bytes.extend_from_slice(resp.body_bytes());
    let _ = stream.write(&bytes);
}
