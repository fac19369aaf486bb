//! Table tests of the admission rules: snapshots of a pool in, a decision out.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::*;

const CAPS: Caps = Caps {
    max: 8,
    reserved: 2,
    per_caller: 4,
    heads_per_caller: 2,
    replace_own: false,
};

fn who(key: CallerKey, privileged: bool) -> Who {
    Who { key, privileged }
}
fn hostile() -> Who {
    who(CallerKey::Container("evil".into()), false)
}
fn other() -> Who {
    who(CallerKey::Uid(1000), false)
}
fn mgmt() -> Who {
    who(CallerKey::Uid(0), true)
}
fn secs(t0: Instant, s: u64) -> Instant {
    t0 + Duration::from_secs(s)
}

/// A pool from (who, phase) pairs, slots numbered in order.
fn pool<'a>(conns: &'a [(Who, Phase)]) -> Vec<Entry<'a>> {
    conns
        .iter()
        .enumerate()
        .map(|(slot, (who, phase))| Entry {
            slot,
            who,
            phase: *phase,
        })
        .collect()
}

#[test]
fn room_in_the_pool_admits() {
    let t0 = Instant::now();
    let conns = vec![(hostile(), Phase::Head(t0)); 3];
    assert_eq!(decide(&pool(&conns), &CAPS, &other(), t0), Decision::Admit);
    assert_eq!(
        decide(&pool(&conns), &CAPS, &hostile(), t0),
        Decision::Admit
    );
}

#[test]
fn a_caller_at_its_cap_is_refused_and_others_are_not() {
    let t0 = Instant::now();
    let conns = vec![(hostile(), Phase::Head(t0)); 4];
    assert_eq!(
        decide(&pool(&conns), &CAPS, &hostile(), secs(t0, 9)),
        Decision::Refuse(Refuse::CallerCap)
    );
    assert_eq!(decide(&pool(&conns), &CAPS, &other(), t0), Decision::Admit);
}

#[test]
fn a_caller_at_its_cap_replaces_its_own_idle_connection() {
    let t0 = Instant::now();
    let conns = vec![
        (hostile(), Phase::Head(t0)),
        (hostile(), Phase::Idle(secs(t0, 2))),
        (hostile(), Phase::Idle(secs(t0, 1))),
        (hostile(), Phase::Busy),
    ];
    assert_eq!(
        decide(&pool(&conns), &CAPS, &hostile(), t0),
        Decision::Evict(2, Evict::OwnOldest)
    );
}

#[test]
fn v1_address_at_its_cap_replaces_its_oldest_head_instead_of_being_refused() {
    let t0 = Instant::now();
    let caps = Caps {
        replace_own: true,
        ..CAPS
    };
    let addr = who(CallerKey::Addr(IpAddr::V4(Ipv4Addr::LOCALHOST)), false);
    let conns = vec![
        (addr.clone(), Phase::Head(secs(t0, 3))),
        (addr.clone(), Phase::Head(secs(t0, 1))),
        (addr.clone(), Phase::Head(secs(t0, 2))),
        (addr.clone(), Phase::Busy),
    ];
    assert_eq!(
        decide(&pool(&conns), &caps, &addr, secs(t0, 3)),
        Decision::Evict(1, Evict::OwnOldest)
    );
}

#[test]
fn privileged_callers_have_no_per_caller_cap() {
    let t0 = Instant::now();
    let conns = vec![(mgmt(), Phase::Busy); 5];
    assert_eq!(decide(&pool(&conns), &CAPS, &mgmt(), t0), Decision::Admit);
}

#[test]
fn unprivileged_callers_cannot_take_the_reserved_slots() {
    let t0 = Instant::now();
    // 6 unprivileged connections of 3 callers: the unreserved share (8 - 2) is full.
    let a = who(CallerKey::Uid(1), false);
    let b = who(CallerKey::Uid(2), false);
    let c = who(CallerKey::Uid(3), false);
    let conns = vec![
        (a.clone(), Phase::Busy),
        (a.clone(), Phase::Busy),
        (b.clone(), Phase::Busy),
        (b.clone(), Phase::Busy),
        (c.clone(), Phase::Busy),
        (c.clone(), Phase::Busy),
    ];
    assert_eq!(
        decide(&pool(&conns), &CAPS, &other(), t0),
        Decision::Refuse(Refuse::Full)
    );
    assert_eq!(decide(&pool(&conns), &CAPS, &mgmt(), t0), Decision::Admit);
}

#[test]
fn idle_connections_go_first_oldest_first() {
    let t0 = Instant::now();
    let mut conns = vec![(other(), Phase::Busy); 5];
    conns.push((who(CallerKey::Uid(7), false), Phase::Idle(secs(t0, 5))));
    conns.push((hostile(), Phase::Head(t0)));
    conns.push((who(CallerKey::Uid(8), false), Phase::Idle(secs(t0, 2))));
    assert_eq!(
        decide(&pool(&conns), &CAPS, &mgmt(), secs(t0, 9)),
        Decision::Evict(7, Evict::Idle)
    );
}

#[test]
fn an_unprivileged_newcomer_never_evicts_a_privileged_connection() {
    let t0 = Instant::now();
    let mut conns = vec![(mgmt(), Phase::Idle(t0)); 2];
    conns.extend(vec![(hostile(), Phase::Busy); 4]);
    conns.extend(vec![(other(), Phase::Busy); 2]);
    assert_eq!(
        decide(&pool(&conns), &CAPS, &who(CallerKey::Uid(5), false), t0),
        Decision::Refuse(Refuse::Full)
    );
}

#[test]
fn without_idle_the_caller_holding_most_loses_its_oldest_head() {
    let t0 = Instant::now();
    let conns = vec![
        (other(), Phase::Busy),
        (other(), Phase::Head(t0)),
        (hostile(), Phase::Busy),
        (hostile(), Phase::Head(secs(t0, 2))),
        (hostile(), Phase::Head(secs(t0, 1))),
        (hostile(), Phase::Busy),
        (mgmt(), Phase::Busy),
        (mgmt(), Phase::Busy),
    ];
    assert_eq!(
        decide(&pool(&conns), &CAPS, &mgmt(), secs(t0, 2)),
        Decision::Evict(4, Evict::Hog)
    );
}

#[test]
fn a_hog_is_not_punished_for_the_newcomer_of_its_own_size() {
    let t0 = Instant::now();
    // Two callers holding 4 each; the newcomer is one of them: not its turn to evict.
    let conns: Vec<_> = (0..4)
        .map(|_| (mgmt(), Phase::Head(t0)))
        .chain((0..4).map(|_| (who(CallerKey::Container("m".into()), true), Phase::Busy)))
        .collect();
    assert_eq!(
        decide(&pool(&conns), &CAPS, &mgmt(), t0),
        Decision::Refuse(Refuse::Full)
    );
}

#[test]
fn the_slowest_head_goes_last_and_only_once_it_is_slow() {
    let t0 = Instant::now();
    let conns: Vec<_> = (0..8)
        .map(|i| {
            (
                who(CallerKey::Uid(i), false),
                Phase::Head(secs(t0, u64::from(i))),
            )
        })
        .collect();
    let p = pool(&conns);
    // Every caller holds one: no hog. The oldest head, once older than SLOW_HEAD, goes.
    assert_eq!(
        decide(&p, &CAPS, &mgmt(), secs(t0, 3)),
        Decision::Evict(0, Evict::SlowHead)
    );
    // Heads younger than SLOW_HEAD are requests on their way: refuse instead.
    assert_eq!(
        decide(&p, &CAPS, &mgmt(), t0 + Duration::from_millis(500)),
        Decision::Refuse(Refuse::Full)
    );
}

#[test]
fn busy_connections_are_never_evicted() {
    let t0 = Instant::now();
    let conns: Vec<_> = (0..8)
        .map(|i| (who(CallerKey::Uid(i), false), Phase::Busy))
        .collect();
    assert_eq!(
        decide(&pool(&conns), &CAPS, &mgmt(), secs(t0, 100)),
        Decision::Refuse(Refuse::Full)
    );
}

#[test]
fn heads_in_flight_are_capped_per_caller() {
    let t0 = Instant::now();
    let conns = vec![
        (hostile(), Phase::Head(t0)),
        (hostile(), Phase::Head(t0)),
        (other(), Phase::Head(t0)),
        (hostile(), Phase::Idle(t0)),
    ];
    let p = pool(&conns);
    assert!(!head_allowed(&p, &CAPS, &hostile()));
    assert!(head_allowed(&p, &CAPS, &other()));
}
