//! Signed revisions (`pvs@2`): whether a state JSON's `_sigs/` entries verify against the
//! device's trust, and whether they cover the state, under a secureboot mode.
//!
//! Pure: no file, socket or clock. The trust anchors (DER), the `pub.pem` key and the time are
//! passed in; loading them from the device's etc dir is the caller's work.
//!
//! INTERFACE SKELETON: the types below are the contract between the verifier and its callers
//! (PUT /steps, hub steps, RUN/LOCAL_RUN, try boot, factory, `tern sig verify`). The body of
//! [`check`] is filled in by the verifier work; until then it refuses everything it cannot
//! verify.

use serde_json::Value;

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

    pub fn as_str(self) -> &'static str {
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
}

impl Report {
    /// One line per problem, naming the signature or the uncovered key and the reason; the
    /// callers log these (as warnings in audit mode) and audit publishes them in device meta
    /// `pantavisor.secureboot`.
    pub fn findings(&self) -> Vec<String> {
        let mut out = Vec::new();
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
/// raised to the build-date floor).
pub fn check(state: &Value, trust: &Trust, mode: Mode, now_unix: u64) -> Report {
    // Skeleton until the verifier lands: a signature cannot be verified yet, so a signed state
    // fails in lenient and strict, an unsigned one passes in lenient.
    let _ = (trust, now_unix);
    let signed = state
        .as_object()
        .is_some_and(|m| m.keys().any(|k| k.starts_with("_sigs/")));
    Report {
        mode: Some(mode),
        refusal: match mode {
            Mode::Disabled | Mode::Audit => None,
            Mode::Lenient if !signed => None,
            Mode::Lenient => Some(Refusal::Validation),
            Mode::Strict => Some(Refusal::Uncovered),
        },
        ..Report::default()
    }
}
