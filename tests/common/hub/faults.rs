//! Fault injection of the test hub: failing or stalling requests by path prefix, and
//! cutting or corrupting object downloads. Every rule can be set and cleared while the hub
//! runs. (Being down is a flag on the shared state, since the server threads poll it.)

use std::collections::HashMap;
use std::time::Duration;

struct FailRule {
    prefix: String,
    status: u16,
    /// How many more requests fail; `None` until cleared.
    left: Option<u32>,
}

#[derive(Default)]
pub struct Faults {
    fails: Vec<FailRule>,
    stalls: Vec<(String, Duration)>,
    cuts: HashMap<String, u64>,
    corrupt: HashMap<String, u32>,
}

impl Faults {
    /// Requests whose path (with query) starts with `prefix` get `status`, `times` times or
    /// until cleared. A new rule for the same prefix replaces the old one.
    pub fn fail(&mut self, prefix: &str, status: u16, times: Option<u32>) {
        self.fails.retain(|r| r.prefix != prefix);
        if times != Some(0) {
            self.fails.push(FailRule {
                prefix: prefix.to_string(),
                status,
                left: times,
            });
        }
    }

    pub fn clear_fail(&mut self, prefix: &str) {
        self.fails.retain(|r| r.prefix != prefix);
    }

    /// The status to fail this request with, if a rule matches; uses up one of its times.
    pub fn take_fail(&mut self, target: &str) -> Option<u16> {
        let i = self
            .fails
            .iter()
            .position(|r| target.starts_with(&r.prefix))?;
        let status = self.fails[i].status;
        if let Some(left) = &mut self.fails[i].left {
            *left -= 1;
            if *left == 0 {
                self.fails.remove(i);
            }
        }
        Some(status)
    }

    /// Answers to paths starting with `prefix` wait `delay` first; a zero delay clears it.
    pub fn stall(&mut self, prefix: &str, delay: Duration) {
        self.stalls.retain(|(p, _)| p != prefix);
        if !delay.is_zero() {
            self.stalls.push((prefix.to_string(), delay));
        }
    }

    /// The longest stall matching this path.
    pub fn stall_for(&self, target: &str) -> Option<Duration> {
        self.stalls
            .iter()
            .filter(|(p, _)| target.starts_with(p.as_str()))
            .map(|(_, d)| *d)
            .max()
    }

    /// The next download of `sha` stops after the blob's byte `at` and the connection closes.
    pub fn cut_blob_at(&mut self, sha: &str, at: u64) {
        self.cuts.insert(sha.to_string(), at);
    }

    pub fn take_cut(&mut self, sha: &str) -> Option<u64> {
        self.cuts.remove(sha)
    }

    /// The next `times` downloads of `sha` carry wrong bytes of the right length.
    pub fn corrupt_blob(&mut self, sha: &str, times: u32) {
        if times == 0 {
            self.corrupt.remove(sha);
        } else {
            self.corrupt.insert(sha.to_string(), times);
        }
    }

    pub fn take_corrupt(&mut self, sha: &str) -> bool {
        let Some(left) = self.corrupt.get_mut(sha) else {
            return false;
        };
        *left -= 1;
        if *left == 0 {
            self.corrupt.remove(sha);
        }
        true
    }

    /// Clears every rule.
    pub fn clear(&mut self) {
        *self = Faults::default();
    }
}
