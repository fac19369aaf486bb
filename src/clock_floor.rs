//! The clock certificates are judged by: the wall clock, but never earlier than the build.
//! A board without RTC boots in 1970, where every certificate is "not yet valid"; the build
//! time is a date the device has certainly passed. Shared by the hub client's TLS and the
//! signature checks.
//!
//! Reads the clock only; it never sets it.

use std::time::{SystemTime, UNIX_EPOCH};

/// The build time, from `build.rs` (SOURCE_DATE_EPOCH, else the HEAD commit's time, else 0).
pub fn build_unix() -> u64 {
    env!("TERN_BUILD_UNIX").parse().unwrap_or(0)
}

/// The wall clock in seconds since the epoch (0 if it reads before the epoch).
pub fn system_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `now`, raised to `floor`.
pub fn floored(now: u64, floor: u64) -> u64 {
    now.max(floor)
}

/// The wall clock raised to the build time: what callers pass to [`crate::sig::check`].
pub fn now_with_floor() -> u64 {
    floored(system_now(), build_unix())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_only_raises() {
        assert_eq!(floored(10, 20), 20);
        assert_eq!(floored(30, 20), 30);
        assert!(now_with_floor() >= build_unix());
        assert!(
            now_with_floor() > 1_600_000_000,
            "the wall clock of this host"
        );
    }
}
