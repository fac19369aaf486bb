//! Who gets a connection slot: per-caller accounting and the eviction choice, as plain
//! functions of a snapshot of the open connections (no sockets, no clock but `now`).
//!
//! A caller is a container (by cgroup), a host process (by uid), or, on the v1 listener, a
//! client address until its connection presented the API key. Each listener is a pool with
//! its own caps: a total, a share reserved for privileged callers (the host's root, mgmt
//! containers, v1 clients holding the key), a cap on connections per caller and a cap on
//! request heads in flight per caller. A caller over its own cap is refused (it alone); a
//! full pool makes room by closing, in order, an idle connection, one of the caller holding
//! the most, then the slowest unfinished head. A connection in the middle of a request body
//! or an answer is never chosen. Unprivileged newcomers never take a privileged slot.
//!
//! This module must never touch a socket or read the clock.

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// An unfinished head younger than this is a request on its way, not a slow one: rule 3
/// leaves it alone.
pub const SLOW_HEAD: Duration = Duration::from_secs(1);

/// Whom a connection is counted against.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallerKey {
    /// A host process, by uid.
    Uid(u32),
    /// A container, by name.
    Container(String),
    /// A v1 client that has not presented the key yet, by address.
    Addr(IpAddr),
    /// A v1 client that presented the key.
    Keyed,
    /// No peer credentials could be read.
    Unknown,
}

impl std::fmt::Display for CallerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallerKey::Uid(u) => write!(f, "uid {u}"),
            CallerKey::Container(n) => write!(f, "container {n}"),
            CallerKey::Addr(a) => write!(f, "v1 client {a} (no key yet)"),
            CallerKey::Keyed => f.write_str("v1 key holders"),
            CallerKey::Unknown => f.write_str("unknown peer"),
        }
    }
}

/// A caller as admission sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Who {
    pub key: CallerKey,
    /// May use the reserved slots and is never evicted for an unprivileged newcomer.
    pub privileged: bool,
}

/// What a connection is doing, for the eviction choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Between requests (or closing) with nothing to write, since this instant.
    Idle(Instant),
    /// A request head is arriving, its first byte at this instant.
    Head(Instant),
    /// Receiving a body or writing an answer: never evicted.
    Busy,
}

/// One open connection of the pool.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    pub slot: usize,
    pub who: &'a Who,
    pub phase: Phase,
}

/// The caps of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// Connections open at once.
    pub max: usize,
    /// Of `max`, slots only privileged callers may fill.
    pub reserved: usize,
    /// Connections one caller may hold.
    pub per_caller: usize,
    /// Request heads one caller may have arriving at once.
    pub heads_per_caller: usize,
    /// A caller known only by its address, at its cap, closes its own oldest idle or slow
    /// connection rather than being refused: clients behind one address (a NAT, a host whose
    /// sockets the kernel would not attribute) cannot be told apart, so refusing the address
    /// would refuse the well-behaved ones too.
    pub replace_own: bool,
}

/// Why a connection is closed to make room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evict {
    /// The newcomer's caller was at its cap; its own oldest idle or slowest connection goes.
    OwnOldest,
    /// Rule 1: idle the longest.
    Idle,
    /// Rule 2: one of the caller holding the most connections.
    Hog,
    /// Rule 3: the slowest unfinished head.
    SlowHead,
}

/// Why a newcomer is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refuse {
    /// Its caller already holds `per_caller` connections.
    CallerCap,
    /// The pool (or its unreserved share) is full of connections that may not be closed.
    Full,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Admit,
    /// Close this slot, then admit.
    Evict(usize, Evict),
    Refuse(Refuse),
}

/// Whether `newcomer` gets a slot in a pool holding `open`.
pub fn decide(open: &[Entry<'_>], caps: &Caps, newcomer: &Who, now: Instant) -> Decision {
    let own: Vec<&Entry<'_>> = open.iter().filter(|e| e.who.key == newcomer.key).collect();
    // Privileged callers are bounded by the pool alone.
    if !newcomer.privileged && own.len() >= caps.per_caller {
        // Its own idle connections first, then its oldest unfinished head.
        let pick = own
            .iter()
            .filter_map(|e| match e.phase {
                Phase::Idle(t) => Some((0, t, e.slot)),
                Phase::Head(t)
                    if caps.replace_own && matches!(newcomer.key, CallerKey::Addr(_)) =>
                {
                    Some((1, t, e.slot))
                }
                _ => None,
            })
            .min();
        return match pick {
            Some((0, _, slot)) => Decision::Evict(slot, Evict::OwnOldest),
            Some((_, _, slot)) => Decision::Evict(slot, Evict::OwnOldest),
            None => Decision::Refuse(Refuse::CallerCap),
        };
    }
    let limit = if newcomer.privileged {
        caps.max
    } else {
        caps.max.saturating_sub(caps.reserved)
    };
    // An unprivileged newcomer counts only the unprivileged share against its limit, and may
    // only displace unprivileged connections.
    let counted = open
        .iter()
        .filter(|e| newcomer.privileged || !e.who.privileged)
        .count();
    if counted < limit && open.len() < caps.max {
        return Decision::Admit;
    }
    let fair_game = |e: &&Entry<'_>| newcomer.privileged || !e.who.privileged;
    // 1. Idle the longest.
    if let Some(e) = open
        .iter()
        .filter(fair_game)
        .filter_map(|e| match e.phase {
            Phase::Idle(t) => Some((t, e.slot)),
            _ => None,
        })
        .min()
    {
        return Decision::Evict(e.1, Evict::Idle);
    }
    // 2. The caller holding the most connections, if it holds more than the newcomer's caller
    //    will: its oldest unfinished head.
    if let Some(slot) = hog_victim(open, newcomer, own.len() + 1, &fair_game) {
        return Decision::Evict(slot, Evict::Hog);
    }
    // 3. The slowest unfinished head, once it has had time to arrive.
    if let Some((_, slot)) = open
        .iter()
        .filter(fair_game)
        .filter_map(|e| match e.phase {
            Phase::Head(t) if now.saturating_duration_since(t) >= SLOW_HEAD => Some((t, e.slot)),
            _ => None,
        })
        .min()
    {
        return Decision::Evict(slot, Evict::SlowHead);
    }
    Decision::Refuse(Refuse::Full)
}

/// The oldest unfinished head of the caller holding the most connections (more than
/// `newcomer_count`) among those the newcomer may displace.
fn hog_victim(
    open: &[Entry<'_>],
    newcomer: &Who,
    newcomer_count: usize,
    fair_game: &dyn Fn(&&Entry<'_>) -> bool,
) -> Option<usize> {
    let mut counts: Vec<(&CallerKey, usize)> = Vec::new();
    for e in open.iter().filter(fair_game) {
        match counts.iter_mut().find(|(k, _)| *k == &e.who.key) {
            Some((_, n)) => *n += 1,
            None => counts.push((&e.who.key, 1)),
        }
    }
    // Callers in order of holdings, most first; the first with a head to spare loses it.
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    counts
        .iter()
        .filter(|(k, n)| *k != &newcomer.key && *n > newcomer_count)
        .find_map(|(k, _)| {
            open.iter()
                .filter(|e| &e.who.key == *k)
                .filter_map(|e| match e.phase {
                    Phase::Head(t) => Some((t, e.slot)),
                    _ => None,
                })
                .min()
                .map(|(_, slot)| slot)
        })
}

/// Whether a connection of `who` may start another request head: its caller has fewer than
/// `caps.heads_per_caller` heads arriving on other connections (`open` excludes the asker).
pub fn head_allowed(open: &[Entry<'_>], caps: &Caps, who: &Who) -> bool {
    let arriving = open
        .iter()
        .filter(|e| e.who.key == who.key && matches!(e.phase, Phase::Head(_)))
        .count();
    arriving < caps.heads_per_caller
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
