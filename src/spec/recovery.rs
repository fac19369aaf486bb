//! The `auto_recovery` object of run.json and of group entries: its policy, its retry and
//! backoff numbers, and `backoff_policy` (`reboot`, `never` or a duration). Parsing and the
//! wire rendering only; the arithmetic and the decisions live in `engine::recovery`.

use super::SpecError;
use super::fields::{Obj, show};

/// `auto_recovery.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryPolicy {
    No,
    Always,
    OnFailure,
    UnlessStopped,
}

impl RecoveryPolicy {
    pub fn parse(s: &str) -> Option<RecoveryPolicy> {
        match s {
            "no" => Some(RecoveryPolicy::No),
            "always" => Some(RecoveryPolicy::Always),
            "on-failure" => Some(RecoveryPolicy::OnFailure),
            "unless-stopped" => Some(RecoveryPolicy::UnlessStopped),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryPolicy::No => "no",
            RecoveryPolicy::Always => "always",
            RecoveryPolicy::OnFailure => "on-failure",
            RecoveryPolicy::UnlessStopped => "unless-stopped",
        }
    }
}

/// `auto_recovery.backoff_policy`: what happens once `max_retries` is used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackoffPolicy {
    /// Reboot the device (the default).
    Reboot,
    /// Leave the container stopped (`recovery_failed`).
    Never,
    /// Wait this many seconds in RECOVERING, reset the counter and start a new cycle.
    Wait(u32),
}

impl BackoffPolicy {
    /// `reboot`, `never`, `<N>s`, `<N>min`, `<N>h` or a bare `<N>` (seconds), N > 0.
    pub fn parse(s: &str) -> Option<BackoffPolicy> {
        match s {
            "reboot" => return Some(BackoffPolicy::Reboot),
            "never" => return Some(BackoffPolicy::Never),
            _ => {}
        }
        let digits = s.bytes().take_while(|b| b.is_ascii_digit()).count();
        let (num, unit) = s.split_at(digits);
        let n: u32 = num.parse().ok()?;
        let mult = match unit {
            "" | "s" => 1,
            "min" => 60,
            "h" => 3600,
            _ => return None,
        };
        match n.checked_mul(mult) {
            Some(secs) if secs > 0 => Some(BackoffPolicy::Wait(secs)),
            _ => None,
        }
    }

    /// Pantavisor's rendering (`pv_backoff_policy_str`): whole hours as `<N>h`, whole
    /// minutes as `<N>min`, anything else as `<N>s`.
    pub fn render(self) -> String {
        match self {
            BackoffPolicy::Reboot => "reboot".into(),
            BackoffPolicy::Never => "never".into(),
            BackoffPolicy::Wait(s) if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
            BackoffPolicy::Wait(s) if s >= 60 && s % 60 == 0 => format!("{}min", s / 60),
            BackoffPolicy::Wait(s) => format!("{s}s"),
        }
    }
}

/// A whole `auto_recovery` object. Times are whole seconds, as in the state JSON.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutoRecovery {
    pub policy: RecoveryPolicy,
    /// 0 = unlimited.
    pub max_retries: u32,
    pub retry_delay: u32,
    /// Applied only when > 1.
    pub backoff_factor: f64,
    /// 0 = never reset the counter by uptime.
    pub reset_window: u32,
    /// 0 = stability is not tracked.
    pub stable_timeout: u32,
    pub backoff_policy: BackoffPolicy,
}

impl AutoRecovery {
    /// No recovery: what a container without `auto_recovery` in a group without one has.
    pub const NONE: AutoRecovery = AutoRecovery {
        policy: RecoveryPolicy::No,
        max_retries: 0,
        retry_delay: 0,
        backoff_factor: 1.0,
        reset_window: 0,
        stable_timeout: 0,
        backoff_policy: BackoffPolicy::Reboot,
    };

    /// Whether this object recovers anything (policy other than `no`).
    pub fn is_active(&self) -> bool {
        self.policy != RecoveryPolicy::No
    }

    /// Parse the object `o` (its path is the field prefix for errors). Absent fields take the
    /// documented defaults: policy `no`, numbers 0, factor 1.0, backoff `reboot`.
    pub fn parse(o: Obj) -> Result<AutoRecovery, SpecError> {
        let policy = match o.str("policy")? {
            None => RecoveryPolicy::No,
            Some(s) => RecoveryPolicy::parse(s).ok_or_else(|| {
                o.err(
                    "policy",
                    format!("'{s}' is not no, always, on-failure or unless-stopped"),
                )
            })?,
        };
        let backoff_policy = match o.get("backoff_policy") {
            None => BackoffPolicy::Reboot,
            Some(v) => {
                let parsed = match v {
                    serde_json::Value::String(s) => BackoffPolicy::parse(s),
                    serde_json::Value::Number(n) => n
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .filter(|n| *n > 0)
                        .map(BackoffPolicy::Wait),
                    _ => None,
                };
                parsed.ok_or_else(|| {
                    o.err(
                        "backoff_policy",
                        format!(
                            "{} is not reboot, never or a duration (<N>s, <N>min, <N>h)",
                            show(v)
                        ),
                    )
                })?
            }
        };
        Ok(AutoRecovery {
            policy,
            max_retries: o.count("max_retries")?.unwrap_or(0),
            retry_delay: o.count("retry_delay")?.unwrap_or(0),
            backoff_factor: o.number("backoff_factor")?.unwrap_or(1.0),
            reset_window: o.count("reset_window")?.unwrap_or(0),
            stable_timeout: o.count("stable_timeout")?.unwrap_or(0),
            backoff_policy,
        })
    }
}

impl Default for AutoRecovery {
    fn default() -> Self {
        AutoRecovery::NONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parse(v: Value) -> Result<AutoRecovery, String> {
        let o = Obj::root("c/run.json", &v).map_err(|e| e.to_string())?;
        let inner = o.get("auto_recovery").cloned().unwrap_or(Value::Null);
        let n = o
            .nested("auto_recovery", &inner)
            .map_err(|e| e.to_string())?;
        AutoRecovery::parse(n).map_err(|e| e.to_string())
    }

    #[test]
    fn backoff_policy_words_and_durations_parse() {
        let cases = [
            ("reboot", Some(BackoffPolicy::Reboot)),
            ("never", Some(BackoffPolicy::Never)),
            ("30s", Some(BackoffPolicy::Wait(30))),
            ("10min", Some(BackoffPolicy::Wait(600))),
            ("2h", Some(BackoffPolicy::Wait(7200))),
            ("45", Some(BackoffPolicy::Wait(45))),
            ("0s", None),
            ("0", None),
            ("", None),
            ("10m", None),
            ("min", None),
            ("-5s", None),
            ("5 s", None),
            ("Reboot", None),
            ("9999999h", None),
        ];
        for (input, want) in cases {
            assert_eq!(BackoffPolicy::parse(input), want, "{input:?}");
        }
    }

    #[test]
    fn backoff_policy_renders_like_pantavisor() {
        let cases = [
            (BackoffPolicy::Reboot, "reboot"),
            (BackoffPolicy::Never, "never"),
            (BackoffPolicy::Wait(30), "30s"),
            (BackoffPolicy::Wait(60), "1min"),
            (BackoffPolicy::Wait(600), "10min"),
            (BackoffPolicy::Wait(90), "90s"),
            (BackoffPolicy::Wait(3600), "1h"),
            (BackoffPolicy::Wait(5400), "90min"),
            (BackoffPolicy::Wait(7200), "2h"),
        ];
        for (p, want) in cases {
            assert_eq!(p.render(), want);
        }
    }

    #[test]
    fn recovery_policy_round_trips() {
        for s in ["no", "always", "on-failure", "unless-stopped"] {
            assert_eq!(RecoveryPolicy::parse(s).map(|p| p.as_str()), Some(s));
        }
        assert_eq!(RecoveryPolicy::parse("on_failure"), None);
    }

    #[test]
    fn full_object_of_example_d_parses() {
        let ar = parse(
            json!({"auto_recovery":{"policy":"on-failure","max_retries":5,"retry_delay":5,
            "backoff_factor":2.0,"reset_window":60,"stable_timeout":30,"backoff_policy":"10min"}}),
        );
        assert_eq!(
            ar,
            Ok(AutoRecovery {
                policy: RecoveryPolicy::OnFailure,
                max_retries: 5,
                retry_delay: 5,
                backoff_factor: 2.0,
                reset_window: 60,
                stable_timeout: 30,
                backoff_policy: BackoffPolicy::Wait(600),
            })
        );
    }

    #[test]
    fn empty_object_takes_documented_defaults() {
        assert_eq!(parse(json!({"auto_recovery":{}})), Ok(AutoRecovery::NONE));
    }

    #[test]
    fn numeric_backoff_policy_is_seconds() {
        let ar = parse(json!({"auto_recovery":{"policy":"always","backoff_policy":90}}));
        assert_eq!(ar.map(|a| a.backoff_policy), Ok(BackoffPolicy::Wait(90)));
    }

    #[test]
    fn invalid_auto_recovery_values_are_named() {
        let cases = [
            (
                json!({"policy":"sometimes"}),
                "c/run.json: auto_recovery.policy: 'sometimes' is not no, always, on-failure or unless-stopped",
            ),
            (
                json!({"backoff_policy":"soon"}),
                "c/run.json: auto_recovery.backoff_policy: 'soon' is not reboot, never or a duration (<N>s, <N>min, <N>h)",
            ),
            (
                json!({"backoff_policy":0}),
                "c/run.json: auto_recovery.backoff_policy: 0 is not reboot, never or a duration (<N>s, <N>min, <N>h)",
            ),
            (
                json!({"max_retries":-1}),
                "c/run.json: auto_recovery.max_retries: -1 is not a whole number >= 0",
            ),
            (
                json!({"retry_delay":"5s"}),
                "c/run.json: auto_recovery.retry_delay: '5s' is not a whole number >= 0",
            ),
            (
                json!({"backoff_factor":-2.0}),
                "c/run.json: auto_recovery.backoff_factor: -2.0 is not a number >= 0",
            ),
            (
                json!({"reset_window":1.5}),
                "c/run.json: auto_recovery.reset_window: 1.5 is not a whole number >= 0",
            ),
            (
                json!({"stable_timeout":true}),
                "c/run.json: auto_recovery.stable_timeout: expected a whole number, got a boolean",
            ),
        ];
        for (inner, want) in cases {
            assert_eq!(
                parse(json!({ "auto_recovery": inner })),
                Err(want.to_string())
            );
        }
    }
}
