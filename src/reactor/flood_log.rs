//! Flood reports: refusals and evictions are counted per caller and logged once per caller
//! per period, with the counts, instead of once per connection (a flood must not also flood
//! the log). Pure: time is an input, and the returned lines are for the caller to log.

use std::time::{Duration, Instant};

use super::admission::CallerKey;

/// Callers tracked at once; the one whose window started first makes room (and is reported).
const MAX_TRACKED: usize = 32;

/// What happened to one of a caller's connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hit {
    /// A new connection (or a request head) was refused.
    Refused,
    /// One of its connections was closed to make room.
    Evicted,
}

struct Window {
    key: CallerKey,
    since: Instant,
    refused: u64,
    evicted: u64,
}

impl Window {
    fn report(&self, now: Instant) -> String {
        format!(
            "{}: {} refused, {} evicted in the last {} s",
            self.key,
            self.refused,
            self.evicted,
            now.saturating_duration_since(self.since).as_secs()
        )
    }
}

pub struct FloodLog {
    period: Duration,
    windows: Vec<Window>,
}

impl FloodLog {
    pub fn new(period: Duration) -> FloodLog {
        FloodLog {
            period,
            windows: Vec::new(),
        }
    }

    /// Count a hit; returns the lines to log now: the first hit of a caller, and the counts
    /// of every window that is over (ended by this hit or already past its period).
    pub fn note(&mut self, key: &CallerKey, hit: Hit, now: Instant) -> Vec<String> {
        let mut lines = Vec::new();
        let period = self.period;
        self.windows.retain(|w| {
            let over = now.saturating_duration_since(w.since) >= period;
            if over && (w.refused > 0 || w.evicted > 0) {
                lines.push(w.report(now));
            }
            !over
        });
        let window = match self.windows.iter().position(|w| &w.key == key) {
            Some(i) => &mut self.windows[i],
            None => {
                if self.windows.len() >= MAX_TRACKED
                    && let Some(i) = (0..self.windows.len()).min_by_key(|&i| self.windows[i].since)
                {
                    let old = self.windows.remove(i);
                    lines.push(old.report(now));
                }
                lines.push(format!(
                    "{key}: over its connection quota ({}); further refusals and evictions \
                     are reported once a minute",
                    match hit {
                        Hit::Refused => "refused",
                        Hit::Evicted => "evicted",
                    }
                ));
                self.windows.push(Window {
                    key: key.clone(),
                    since: now,
                    refused: 0,
                    evicted: 0,
                });
                return lines;
            }
        };
        match hit {
            Hit::Refused => window.refused += 1,
            Hit::Evicted => window.evicted += 1,
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn a_flood_is_logged_once_then_once_a_minute_with_counts() {
        let t0 = Instant::now();
        let mut log = FloodLog::new(MIN);
        let k = CallerKey::Uid(1000);
        assert_eq!(log.note(&k, Hit::Refused, t0).len(), 1);
        for i in 0..3000 {
            let at = t0 + Duration::from_millis(i * 10);
            assert!(log.note(&k, Hit::Refused, at).is_empty());
        }
        assert!(
            log.note(&k, Hit::Evicted, t0 + Duration::from_secs(40))
                .is_empty()
        );
        let lines = log.note(&k, Hit::Refused, t0 + MIN);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("3000 refused, 1 evicted"), "{lines:?}");
    }

    #[test]
    fn callers_are_reported_separately() {
        let t0 = Instant::now();
        let mut log = FloodLog::new(MIN);
        let a = CallerKey::Container("a".into());
        let b = CallerKey::Uid(7);
        assert_eq!(log.note(&a, Hit::Refused, t0).len(), 1);
        assert_eq!(log.note(&b, Hit::Refused, t0).len(), 1);
        assert!(log.note(&a, Hit::Refused, t0).is_empty());
    }

    #[test]
    fn tracking_is_bounded() {
        let t0 = Instant::now();
        let mut log = FloodLog::new(MIN);
        for u in 0..(MAX_TRACKED as u32 + 10) {
            log.note(&CallerKey::Uid(u), Hit::Refused, t0);
        }
        assert_eq!(log.windows.len(), MAX_TRACKED);
    }
}
