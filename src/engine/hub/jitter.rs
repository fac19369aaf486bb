//! Spreading of the hub client's periodic requests, so a fleet that boots (or comes back)
//! together does not poll in lockstep: every period is the configured interval moved by up
//! to ±`percent` %, and the first steps and user-meta polls after a login wait a phase drawn
//! uniformly over one interval. The randomness is a small xorshift seeded by the caller (the
//! engine reads no clock and no randomness source), so a seed always gives the same schedule.
//!
//! The spread is symmetric so a device makes as many requests on average as without it;
//! the longest wait between two steps polls is the interval plus `percent` %.

use std::time::Duration;

/// Largest accepted spread: beyond it a period could shrink towards nothing.
pub const MAX_PERCENT: u8 = 50;

/// A seeded xorshift64: the same seed gives the same numbers.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Zero is xorshift's one fixed point; mixing the seed keeps nearby seeds apart.
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// `d` moved by up to ±`percent` % (millisecond steps).
    pub fn around(&mut self, d: Duration, percent: u64) -> Duration {
        let percent = percent.min(100);
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 400);
        let span = 2 * ms * percent / 100;
        let r = self.next_u64() % (span + 1);
        Duration::from_millis(ms - ms * percent / 100 + r)
    }
}

/// The jitter of one hub client.
#[derive(Clone, Debug)]
pub struct Jitter {
    rng: Rng,
    percent: u64,
}

impl Jitter {
    /// `percent` 0 turns it off: every period is the interval and every phase zero.
    pub fn new(seed: u64, percent: u8) -> Jitter {
        Jitter {
            rng: Rng::new(seed),
            percent: u64::from(percent.min(MAX_PERCENT)),
        }
    }

    /// The wait until the next request of a periodic kind.
    pub fn period(&mut self, interval: Duration) -> Duration {
        if self.percent == 0 {
            return interval;
        }
        self.rng.around(interval, self.percent)
    }

    /// The wait before the first request of a periodic kind: uniform over one interval.
    pub fn phase(&mut self, interval: Duration) -> Duration {
        if self.percent == 0 {
            return Duration::ZERO;
        }
        let ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX - 1);
        Duration::from_millis(self.rng.next_u64() % (ms + 1))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const FIVE: Duration = Duration::from_secs(5);

    #[test]
    fn periods_stay_within_the_spread_and_average_the_interval() {
        let mut j = Jitter::new(7, 10);
        let p: Vec<Duration> = (0..2000).map(|_| j.period(FIVE)).collect();
        assert!(p.iter().all(|d| *d >= Duration::from_millis(4500)));
        assert!(p.iter().all(|d| *d <= Duration::from_millis(5500)));
        let mean = p.iter().sum::<Duration>() / 2000;
        assert!(
            mean > Duration::from_millis(4950) && mean < Duration::from_millis(5050),
            "{mean:?}"
        );
        // Not a constant: the values cover the range.
        assert!(p.iter().any(|d| *d < Duration::from_millis(4600)));
        assert!(p.iter().any(|d| *d > Duration::from_millis(5400)));
    }

    #[test]
    fn phases_cover_one_interval() {
        let mut j = Jitter::new(3, 10);
        let p: Vec<Duration> = (0..2000).map(|_| j.phase(FIVE)).collect();
        assert!(p.iter().all(|d| *d <= FIVE));
        // Each fifth of the interval gets a fair share (400 expected).
        for fifth in 0..5u64 {
            let lo = Duration::from_secs(fifth);
            let n = p
                .iter()
                .filter(|d| **d >= lo && **d < lo + Duration::from_secs(1))
                .count();
            assert!((300..500).contains(&n), "fifth {fifth}: {n}");
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_others_differ() {
        let take = |seed| {
            let mut j = Jitter::new(seed, 10);
            (0..8).map(|_| j.period(FIVE)).collect::<Vec<_>>()
        };
        assert_eq!(take(1), take(1));
        assert_ne!(take(1), take(2));
        // Seeds that differ in one bit (device ids hashed alike) still part ways.
        let firsts: std::collections::HashSet<Duration> = (0..64u64)
            .map(|s| Jitter::new(1 << s, 10).phase(FIVE))
            .collect();
        assert!(firsts.len() > 48, "{}", firsts.len());
    }

    #[test]
    fn zero_percent_is_the_plain_interval() {
        let mut j = Jitter::new(9, 0);
        assert!((0..50).all(|_| j.period(FIVE) == FIVE && j.phase(FIVE).is_zero()));
    }

    #[test]
    fn a_spread_beyond_the_maximum_is_capped() {
        let mut j = Jitter::new(5, 200);
        assert!((0..500).all(|_| {
            let d = j.period(FIVE);
            d >= FIVE / 2 && d <= FIVE * 3 / 2
        }));
    }
}
