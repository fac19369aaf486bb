//! The deadline heap: its earliest entry is the poll timeout. Entries are never removed in
//! place; an owner whose deadline moved re-checks on expiry, and [`Deadlines::compact`] drops
//! entries of owners that are gone, so the heap stays proportional to what is live.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

pub struct Deadlines<K: Ord + Copy> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
}

impl<K: Ord + Copy> Default for Deadlines<K> {
    fn default() -> Self {
        Deadlines {
            heap: BinaryHeap::new(),
        }
    }
}

impl<K: Ord + Copy> Deadlines<K> {
    pub fn push(&mut self, at: Instant, key: K) {
        self.heap.push(Reverse((at, key)));
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Time until the earliest deadline (zero if it passed), or None when there is none.
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        self.heap
            .peek()
            .map(|Reverse((at, _))| at.saturating_duration_since(now))
    }

    /// Pop one entry that is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, K)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// Keep only entries whose key is still live.
    pub fn compact(&mut self, mut live: impl FnMut(&K) -> bool) {
        let entries = std::mem::take(&mut self.heap).into_vec();
        self.heap = entries
            .into_iter()
            .filter(|Reverse((_, k))| live(k))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_deadline_sets_the_timeout_and_pops_first() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        d.push(t0 + Duration::from_secs(5), 1u32);
        d.push(t0 + Duration::from_secs(2), 2u32);
        assert_eq!(d.timeout(t0), Some(Duration::from_secs(2)));
        assert_eq!(d.pop_due(t0 + Duration::from_secs(1)), None);
        assert_eq!(d.pop_due(t0 + Duration::from_secs(3)).map(|e| e.1), Some(2));
        assert_eq!(d.pop_due(t0 + Duration::from_secs(9)).map(|e| e.1), Some(1));
        assert!(d.is_empty());
    }

    #[test]
    fn past_deadline_means_zero_timeout() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        d.push(t0, 1u8);
        assert_eq!(d.timeout(t0 + Duration::from_secs(1)), Some(Duration::ZERO));
    }

    #[test]
    fn compact_drops_dead_owners() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        for k in 0..10u32 {
            d.push(t0, k);
        }
        d.compact(|k| k % 2 == 0);
        assert_eq!(d.len(), 5);
    }
}
