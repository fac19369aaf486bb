//! Signed revisions (`pvs@2`): whether a state JSON's `_sigs/` entries verify against the
//! device's trust, and whether they cover the state, under a secureboot mode.
//!
//! Pure: no file, socket or clock. The trust anchors (DER), the `pub.pem` key and the time are
//! passed in; loading them from the device's etc dir is the caller's work.
//!
//! The types below are the contract with the callers (PUT /steps, hub steps, RUN/LOCAL_RUN,
//! try boot, factory, `tern sig verify`). The verifier itself (feature `sig`, on by default)
//! is split by concern: `jws` reads a signature, `glob` selects keys, `canonical` rebuilds the
//! payload, `key` verifies the chain and the signature bytes, `verify` applies the mode. A
//! build without `sig` has no verifier: there [`check`] accepts only in `disabled` mode and
//! refuses in every other (the configuration refuses those modes before it gets here).

use serde_json::Value;

#[cfg(feature = "sig")]
mod base64;
#[cfg(feature = "sig")]
mod canonical;
#[cfg(feature = "sig")]
mod der;
#[cfg(feature = "sig")]
mod glob;
#[cfg(feature = "sig")]
mod jws;
#[cfg(feature = "sig")]
mod key;
#[cfg(feature = "sig")]
mod verify;

#[cfg(all(test, feature = "sig"))]
mod tests;

/// Whether this build carries the verifier (feature `sig`).
pub const AVAILABLE: bool = cfg!(feature = "sig");

/// What a build without the verifier says when asked to check.
pub const UNAVAILABLE: &str =
    "this build of tern cannot check signatures (built without the `sig` feature)";

/// The mode when `PV_SECUREBOOT_MODE` is not configured: Pantavisor's `lenient`, or
/// `disabled` in a build that cannot check signatures.
pub const DEFAULT_MODE: Mode = if AVAILABLE {
    Mode::Lenient
} else {
    Mode::Disabled
};

/// The canonical JSON bytes pvr signs (keys sorted, no whitespace, pvr's escapes and number
/// forms); `tern sig verify` and tests use it to show or rebuild a payload.
#[cfg(feature = "sig")]
pub fn canonical_json(value: &Value) -> Vec<u8> {
    canonical::to_vec(value)
}

/// Pantavisor's `PV_SECUREBOOT_MODE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Disabled,
    Audit,
    Lenient,
    Strict,
}

impl Mode {
    /// The config word (`disabled`, `audit`, `lenient`, `strict`); anything else is `None`.
    pub fn parse(word: &str) -> Option<Mode> {
        match word.trim() {
            "disabled" => Some(Mode::Disabled),
            "audit" => Some(Mode::Audit),
            "lenient" => Some(Mode::Lenient),
            "strict" => Some(Mode::Strict),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Disabled => "disabled",
            Mode::Audit => "audit",
            Mode::Lenient => "lenient",
            Mode::Strict => "strict",
        }
    }
}

/// What the device trusts, already read from its files.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    /// DER certificates of `<etc>/pantavisor/pvs/trust/<PV_SECUREBOOT_TRUSTSTORE>.crt`.
    pub ca: Vec<Vec<u8>>,
    /// DER certificates of `<etc>/pantavisor/pvs/trust/<PV_SECUREBOOT_OEM_TRUSTSTORE>.crt`.
    pub oem_ca: Vec<Vec<u8>>,
    /// `PV_OEM_NAME`: selects the OEM store for a leaf with this CN (research §2.4).
    pub oem_name: Option<String>,
    /// SubjectPublicKeyInfo DER of `<etc>/pantavisor/pvs/trust/pub.pem`, for signatures
    /// without `x5c`.
    pub pub_key: Option<Vec<u8>>,
}

/// Why a revision is refused: Pantavisor's two status strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// "Signature validation failed"
    Validation,
    /// "State not fully covered by signatures"
    Uncovered,
}

impl Refusal {
    /// The progress `status-msg` and the text after `Secureboot: ` in a 422 body.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Validation => "Signature validation failed",
            Refusal::Uncovered => "State not fully covered by signatures",
        }
    }
}

/// One signature's verdict, as `tern sig verify` prints it.
#[derive(Clone, Debug)]
pub struct SigReport {
    /// The state key, `_sigs/<name>.json`.
    pub key: String,
    /// The protected header's `alg`, when it could be read.
    pub alg: Option<String>,
    /// The signer: the leaf certificate's subject, or `pub.pem`.
    pub signer: Option<String>,
    /// State keys the signature selects (its payload).
    pub selected: Vec<String>,
    /// `Err(reason)`: bad bytes, untrusted chain, expired, unknown alg, missing exclude, ….
    pub verdict: Result<(), String>,
}

/// Everything one check found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub mode: Option<Mode>,
    pub signatures: Vec<SigReport>,
    /// State keys no signature includes or excludes (`_sigs/` keys never count).
    pub uncovered: Vec<String>,
    /// `Some` when the mode refuses the revision; `None` when it may be installed/run/booted
    /// (audit always `None`, with every finding in [`Report::findings`]).
    pub refusal: Option<Refusal>,
    /// Problems of the state as a whole (not of one signature), e.g. a build that cannot
    /// check signatures.
    pub notes: Vec<String>,
}

impl Report {
    /// One line per problem, naming the signature or the uncovered key and the reason; the
    /// callers log these (as warnings in audit mode) and audit publishes them in device meta
    /// `pantavisor.secureboot`.
    pub fn findings(&self) -> Vec<String> {
        let mut out = self.notes.clone();
        for s in &self.signatures {
            if let Err(reason) = &s.verdict {
                out.push(format!("{}: {reason}", s.key));
            }
        }
        for k in &self.uncovered {
            out.push(format!("{k} is not covered by any signature"));
        }
        out
    }
}

/// Checks every `pvs@2` value of `state` (a top-level JSON object) under `mode`, with the
/// chain dates checked at `now_unix` (seconds since the epoch; callers pass the device clock
/// raised to the build-date floor, [`crate::clock_floor::now_with_floor`]).
pub fn check(state: &Value, trust: &Trust, mode: Mode, now_unix: u64) -> Report {
    #[cfg(feature = "sig")]
    {
        verify::check(state, trust, mode, now_unix)
    }
    #[cfg(not(feature = "sig"))]
    {
        let _ = (state, trust, now_unix);
        let mut report = Report {
            mode: Some(mode),
            ..Report::default()
        };
        if mode != Mode::Disabled {
            // Never a silent pass: a mode that asks for checks is refused when none can run.
            report.notes.push(UNAVAILABLE.into());
            report.refusal = (mode != Mode::Audit).then_some(Refusal::Validation);
        }
        report
    }
}

#[cfg(all(test, not(feature = "sig")))]
mod unavailable_tests {
    use super::*;

    #[test]
    fn without_the_verifier_only_disabled_accepts() {
        let state = serde_json::json!({"#spec": "pantavisor-service-system@1"});
        let t = Trust::default();
        assert_eq!(DEFAULT_MODE, Mode::Disabled);
        assert_eq!(check(&state, &t, Mode::Disabled, 0).refusal, None);
        for (mode, want) in [
            (Mode::Lenient, Some(Refusal::Validation)),
            (Mode::Strict, Some(Refusal::Validation)),
            (Mode::Audit, None),
        ] {
            let r = check(&state, &t, mode, 0);
            assert_eq!(r.refusal, want, "{mode:?}");
            assert_eq!(r.findings(), [UNAVAILABLE], "{mode:?} says why");
        }
    }
}
