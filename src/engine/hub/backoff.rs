//! Retry delays: exponential, capped, with jitter, so a fleet that lost its hub together does
//! not come back in lockstep. The randomness is [`Rng`], seeded by the caller, so tests are
//! repeatable.

use std::time::Duration;

use super::jitter::Rng;

#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
    rng: Rng,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration, seed: u64) -> Backoff {
        Backoff {
            base,
            cap,
            failures: 0,
            rng: Rng::new(seed),
        }
    }

    /// A success: the next failure starts from the base again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// One more failure: the delay before the next try (base·2ⁿ capped, then 75–125 %).
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.failures.min(16);
        self.failures = self.failures.saturating_add(1);
        let raw = self.base.saturating_mul(1u32 << exp).min(self.cap);
        self.jitter(raw, 25)
    }

    /// `d` moved by up to ±`percent` %.
    pub fn jitter(&mut self, d: Duration, percent: u64) -> Duration {
        self.rng.around(d, percent)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_then_stop_at_the_cap() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), 7);
        let d: Vec<u128> = (0..10).map(|_| b.next_delay().as_millis()).collect();
        assert!((750..=1250).contains(&d[0]), "{d:?}");
        assert!((1500..=2500).contains(&d[1]), "{d:?}");
        assert!(d[9] <= 75_000 && d[9] >= 45_000, "{d:?}");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(1250));
    }

    #[test]
    fn two_seeds_spread_the_same_delay() {
        let mut a = Backoff::new(Duration::from_secs(10), Duration::from_secs(60), 1);
        let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(60), 99);
        let da: Vec<_> = (0..5)
            .map(|_| a.jitter(Duration::from_secs(10), 25))
            .collect();
        let db: Vec<_> = (0..5)
            .map(|_| b.jitter(Duration::from_secs(10), 25))
            .collect();
        assert_ne!(da, db);
    }
}
