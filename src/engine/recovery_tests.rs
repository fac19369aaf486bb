//! Table tests of the recovery arithmetic and decisions, with fake time.

use super::*;

fn cfg(policy: RecoveryPolicy) -> AutoRecovery {
    AutoRecovery {
        policy,
        max_retries: 5,
        retry_delay: 5,
        backoff_factor: 2.0,
        reset_window: 0,
        stable_timeout: 30,
        backoff_policy: BackoffPolicy::Reboot,
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn delays_double_with_factor_two() {
    let c = cfg(RecoveryPolicy::Always);
    let got: Vec<u64> = (1..=5).map(|n| retry_delay(&c, n).as_secs()).collect();
    assert_eq!(got, [5, 10, 20, 40, 80]);
}

#[test]
fn factor_one_and_below_keeps_the_delay_flat() {
    for f in [0.0, 0.5, 1.0] {
        let c = AutoRecovery {
            backoff_factor: f,
            ..cfg(RecoveryPolicy::Always)
        };
        let got: Vec<u64> = (1..=4).map(|n| retry_delay(&c, n).as_secs()).collect();
        assert_eq!(got, [5, 5, 5, 5], "factor {f}");
    }
}

#[test]
fn fractional_factor_truncates_to_whole_seconds() {
    let c = AutoRecovery {
        retry_delay: 2,
        backoff_factor: 1.5,
        ..cfg(RecoveryPolicy::Always)
    };
    let got: Vec<u64> = (1..=5).map(|n| retry_delay(&c, n).as_secs()).collect();
    // 2, 3, 4.5, 6.75, 10.125
    assert_eq!(got, [2, 3, 4, 6, 10]);
}

#[test]
fn zero_retry_delay_stays_zero() {
    let c = AutoRecovery {
        retry_delay: 0,
        ..cfg(RecoveryPolicy::Always)
    };
    assert_eq!(retry_delay(&c, 7), Duration::ZERO);
}

#[test]
fn huge_attempt_counts_are_capped() {
    let c = cfg(RecoveryPolicy::Always);
    assert_eq!(retry_delay(&c, 1_000_000), secs(MAX_DELAY_SECS));
}

#[test]
fn policy_no_is_fatal() {
    let mut t = Tracker::default();
    let d = decide(
        &cfg(RecoveryPolicy::No),
        &mut t,
        true,
        false,
        Instant::now(),
    );
    assert!(matches!(d, Decision::Fatal { .. }));
    assert_eq!(t.current_retries, 0);
}

#[test]
fn policy_no_is_fatal_even_for_a_clean_exit() {
    let mut t = Tracker::default();
    let d = decide(
        &cfg(RecoveryPolicy::No),
        &mut t,
        false,
        false,
        Instant::now(),
    );
    assert!(matches!(d, Decision::Fatal { .. }));
}

#[test]
fn on_failure_does_not_recover_a_clean_exit() {
    let mut t = Tracker::default();
    let d = decide(
        &cfg(RecoveryPolicy::OnFailure),
        &mut t,
        false,
        false,
        Instant::now(),
    );
    assert_eq!(d, Decision::Completed);
    assert_eq!(t.current_retries, 0);
    assert!(t.completed);
}

#[test]
fn on_failure_recovers_a_failure() {
    let mut t = Tracker::default();
    let d = decide(
        &cfg(RecoveryPolicy::OnFailure),
        &mut t,
        true,
        false,
        Instant::now(),
    );
    assert_eq!(
        d,
        Decision::Retry {
            attempt: 1,
            delay: secs(5)
        }
    );
}

#[test]
fn always_and_unless_stopped_recover_clean_exits_too() {
    for p in [RecoveryPolicy::Always, RecoveryPolicy::UnlessStopped] {
        for failed in [true, false] {
            let mut t = Tracker::default();
            let d = decide(&cfg(p), &mut t, failed, false, Instant::now());
            assert_eq!(
                d,
                Decision::Retry {
                    attempt: 1,
                    delay: secs(5)
                },
                "{p:?} failed={failed}"
            );
        }
    }
}

#[test]
fn successive_crashes_back_off() {
    let c = cfg(RecoveryPolicy::Always);
    let mut t = Tracker::default();
    let now = Instant::now();
    let got: Vec<Decision> = (0..5)
        .map(|_| decide(&c, &mut t, true, false, now))
        .collect();
    let want: Vec<Decision> = [5, 10, 20, 40, 80]
        .iter()
        .enumerate()
        .map(|(i, d)| Decision::Retry {
            attempt: i as u32 + 1,
            delay: secs(*d),
        })
        .collect();
    assert_eq!(got, want);
}

#[test]
fn exhausted_retries_with_reboot_policy_are_fatal() {
    let c = cfg(RecoveryPolicy::Always);
    let mut t = Tracker {
        current_retries: 5,
        ..Tracker::default()
    };
    let d = decide(&c, &mut t, true, false, Instant::now());
    assert_eq!(
        d,
        Decision::Fatal {
            reason: "reached max retries (5), backoff_policy reboot".into()
        }
    );
}

#[test]
fn exhausted_retries_with_never_policy_give_up() {
    let c = AutoRecovery {
        backoff_policy: BackoffPolicy::Never,
        ..cfg(RecoveryPolicy::Always)
    };
    let mut t = Tracker {
        current_retries: 5,
        ..Tracker::default()
    };
    assert_eq!(
        decide(&c, &mut t, true, false, Instant::now()),
        Decision::GiveUp
    );
    assert!(t.recovery_failed);
}

#[test]
fn exhausted_retries_with_duration_policy_reset_and_wait() {
    let c = AutoRecovery {
        backoff_policy: BackoffPolicy::Wait(600),
        ..cfg(RecoveryPolicy::Always)
    };
    let mut t = Tracker {
        current_retries: 5,
        ..Tracker::default()
    };
    assert_eq!(
        decide(&c, &mut t, true, false, Instant::now()),
        Decision::Backoff { wait: secs(600) }
    );
    assert_eq!(t.current_retries, 0);
    // The next crash starts a new cycle at the first delay.
    assert_eq!(
        decide(&c, &mut t, true, false, Instant::now()),
        Decision::Retry {
            attempt: 1,
            delay: secs(5)
        }
    );
}

#[test]
fn exhausted_retries_during_an_update_are_fatal_whatever_the_backoff_policy() {
    for bp in [
        BackoffPolicy::Reboot,
        BackoffPolicy::Never,
        BackoffPolicy::Wait(60),
    ] {
        let c = AutoRecovery {
            backoff_policy: bp,
            ..cfg(RecoveryPolicy::Always)
        };
        let mut t = Tracker {
            current_retries: 5,
            ..Tracker::default()
        };
        let d = decide(&c, &mut t, true, true, Instant::now());
        assert_eq!(
            d,
            Decision::Fatal {
                reason: "reached max retries (5) during an update".into()
            },
            "{bp:?}"
        );
        assert!(!t.recovery_failed);
    }
}

#[test]
fn retries_below_the_max_recover_during_an_update_too() {
    let mut t = Tracker::default();
    let d = decide(
        &cfg(RecoveryPolicy::Always),
        &mut t,
        true,
        true,
        Instant::now(),
    );
    assert_eq!(
        d,
        Decision::Retry {
            attempt: 1,
            delay: secs(5)
        }
    );
}

#[test]
fn max_retries_zero_is_unlimited() {
    let c = AutoRecovery {
        max_retries: 0,
        backoff_factor: 1.0,
        ..cfg(RecoveryPolicy::Always)
    };
    let mut t = Tracker {
        current_retries: 10_000,
        ..Tracker::default()
    };
    assert_eq!(
        decide(&c, &mut t, true, false, Instant::now()),
        Decision::Retry {
            attempt: 10_001,
            delay: secs(5)
        }
    );
}

#[test]
fn reset_window_resets_retries_after_long_uptime() {
    let c = AutoRecovery {
        reset_window: 60,
        ..cfg(RecoveryPolicy::Always)
    };
    let t0 = Instant::now();
    let mut t = Tracker {
        current_retries: 4,
        last_start: Some(t0),
        ..Tracker::default()
    };
    let d = decide(&c, &mut t, true, false, t0 + secs(61));
    assert_eq!(
        d,
        Decision::Retry {
            attempt: 1,
            delay: secs(5)
        }
    );
}

#[test]
fn reset_window_keeps_retries_within_the_window() {
    let c = AutoRecovery {
        reset_window: 60,
        ..cfg(RecoveryPolicy::Always)
    };
    let t0 = Instant::now();
    let mut t = Tracker {
        current_retries: 2,
        last_start: Some(t0),
        ..Tracker::default()
    };
    // Exactly the window is not "more than" it.
    let d = decide(&c, &mut t, true, false, t0 + secs(60));
    assert_eq!(
        d,
        Decision::Retry {
            attempt: 3,
            delay: secs(20)
        }
    );
}

#[test]
fn reset_window_saves_a_container_from_exhaustion() {
    let c = AutoRecovery {
        reset_window: 60,
        ..cfg(RecoveryPolicy::Always)
    };
    let t0 = Instant::now();
    let mut t = Tracker {
        current_retries: 5,
        last_start: Some(t0),
        ..Tracker::default()
    };
    let d = decide(&c, &mut t, true, false, t0 + secs(120));
    assert_eq!(
        d,
        Decision::Retry {
            attempt: 1,
            delay: secs(5)
        }
    );
}

#[test]
fn reset_window_zero_never_resets() {
    let t0 = Instant::now();
    let c = cfg(RecoveryPolicy::Always);
    let t = Tracker {
        current_retries: 2,
        last_start: Some(t0),
        ..Tracker::default()
    };
    assert!(!window_expired(&c, &t, t0 + secs(1_000_000)));
}

#[test]
fn reset_window_without_a_start_never_resets() {
    let c = AutoRecovery {
        reset_window: 1,
        ..cfg(RecoveryPolicy::Always)
    };
    assert!(!window_expired(&c, &Tracker::default(), Instant::now()));
}

#[test]
fn start_resets_stability_and_failure_flags_but_not_retries() {
    let t0 = Instant::now();
    let mut t = Tracker {
        current_retries: 3,
        last_start: None,
        is_stable: true,
        stable_armed: true,
        recovery_failed: true,
        completed: true,
    };
    t.on_start(t0);
    assert_eq!(
        t,
        Tracker {
            current_retries: 3,
            last_start: Some(t0),
            ..Tracker::default()
        }
    );
}

#[test]
fn api_start_resets_retries_and_failure() {
    let mut t = Tracker {
        current_retries: 5,
        recovery_failed: true,
        completed: true,
        ..Tracker::default()
    };
    t.on_api_start();
    assert_eq!(
        (t.current_retries, t.recovery_failed, t.completed),
        (0, false, false)
    );
}

#[test]
fn stability_is_pending_until_stable() {
    let c = cfg(RecoveryPolicy::Always);
    let mut t = Tracker::default();
    assert!(stability_pending(&c, &t, false));
    t.is_stable = true;
    assert!(!stability_pending(&c, &t, false));
}

#[test]
fn stability_is_not_pending_without_stable_timeout() {
    let c = AutoRecovery {
        stable_timeout: 0,
        ..cfg(RecoveryPolicy::Always)
    };
    assert!(!stability_pending(&c, &Tracker::default(), false));
}

#[test]
fn stability_is_not_pending_for_given_up_completed_or_user_stopped_containers() {
    let c = cfg(RecoveryPolicy::Always);
    let failed = Tracker {
        recovery_failed: true,
        ..Tracker::default()
    };
    let done = Tracker {
        completed: true,
        ..Tracker::default()
    };
    assert!(!stability_pending(&c, &failed, false));
    assert!(!stability_pending(&c, &done, false));
    assert!(!stability_pending(&c, &Tracker::default(), true));
}
