//! The verifier behind [`super::check`]: every `pvs@2` value of the state checked (no early
//! exit), the payload recomputed canonically from the state (so a pretty-printed state
//! verifies), coverage counted, and the mode's verdict.
//!
//! Mode table (Pantavisor's, except that audit never refuses):
//!
//! | mode     | no signatures | a signature fails | a key not covered |
//! |----------|---------------|-------------------|-------------------|
//! | disabled | accepted      | accepted          | accepted          |
//! | audit    | accepted, reported | accepted, reported | accepted, reported |
//! | lenient  | accepted      | Validation        | accepted          |
//! | strict   | Uncovered     | Validation        | Uncovered         |
//!
//! A key is covered when a signature that verified includes or excludes it; `_sigs/` keys
//! never need coverage. Uncovered keys are listed in audit, and in strict when every signature
//! verified.

use serde_json::{Map, Value};

use super::base64::encode_url;
use super::der;
use super::glob::{Pattern, matches};
use super::jws;
use super::key;
use super::{Mode, Refusal, Report, SigReport, Trust};

/// Most signatures checked in one state: each costs a chain verification and a canonical
/// payload, and a hostile state must not stall the loop. Beyond it, each fails unchecked.
const MAX_SIGNATURES: usize = 64;

pub fn check(state: &Value, trust: &Trust, mode: Mode, now_unix: u64) -> Report {
    let mut report = Report {
        mode: Some(mode),
        ..Report::default()
    };
    if mode == Mode::Disabled {
        return report;
    }
    let empty = Map::new();
    let entries = match state.as_object() {
        Some(m) => m,
        None => {
            report.notes.push("the state is not a JSON object".into());
            &empty
        }
    };
    let mut covered = vec![false; entries.len()];
    for (name, value) in entries {
        if !jws::is_signature(value) {
            continue;
        }
        if report.signatures.len() >= MAX_SIGNATURES {
            report.signatures.push(SigReport {
                key: name.clone(),
                alg: None,
                signer: None,
                selected: Vec::new(),
                verdict: Err(format!(
                    "not checked: a state may carry at most {MAX_SIGNATURES} signatures"
                )),
            });
            continue;
        }
        let (sig, selection) = check_one(name, value, entries, trust, now_unix);
        if sig.verdict.is_ok()
            && let Some((include, exclude)) = selection
        {
            let globs: Vec<Pattern> = include
                .iter()
                .chain(&exclude)
                .map(|g| Pattern::new(g))
                .collect();
            for (i, k) in entries.keys().enumerate() {
                if globs.iter().any(|g| g.matches(k)) {
                    covered[i] = true;
                }
            }
        }
        report.signatures.push(sig);
    }
    let failed = report.signatures.iter().any(|s| s.verdict.is_err()) || !report.notes.is_empty();
    // Strict checks coverage only when every signature verified (as Pantavisor does); audit
    // always lists it, as one more finding.
    if mode == Mode::Audit || (mode == Mode::Strict && !failed) {
        report.uncovered = entries
            .keys()
            .zip(&covered)
            .filter(|(k, c)| !**c && !k.starts_with("_sigs/"))
            .map(|(k, _)| k.clone())
            .collect();
    }
    report.refusal = match mode {
        Mode::Disabled | Mode::Audit => None,
        _ if failed => Some(Refusal::Validation),
        Mode::Strict if report.signatures.is_empty() || !report.uncovered.is_empty() => {
            Some(Refusal::Uncovered)
        }
        _ => None,
    };
    report
}

/// A signature's include and exclude globs.
type Selection = (Vec<String>, Vec<String>);

/// One signature's verdict, and its include/exclude globs when the header could be read.
fn check_one(
    name: &str,
    value: &Value,
    state: &Map<String, Value>,
    trust: &Trust,
    now_unix: u64,
) -> (SigReport, Option<Selection>) {
    let mut report = SigReport {
        key: name.to_string(),
        alg: jws::peek_alg(value),
        signer: None,
        selected: Vec::new(),
        verdict: Ok(()),
    };
    let parsed = match jws::parse(value) {
        Ok(p) => p,
        Err(e) => {
            report.verdict = Err(e);
            return (report, None);
        }
    };
    let include: Vec<Pattern> = parsed.include.iter().map(|g| Pattern::new(g)).collect();
    let exclude: Vec<Pattern> = parsed.exclude.iter().map(|g| Pattern::new(g)).collect();
    // References, not copies: a state of many signatures must not hold a copy per signature.
    let selected: Vec<(&str, &Value)> = state
        .iter()
        .filter(|(k, _)| {
            include.iter().any(|g| g.matches(k)) && !exclude.iter().any(|g| g.matches(k))
        })
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    report.selected = selected.iter().map(|(k, _)| (*k).to_owned()).collect();
    report.verdict = verify(&parsed, &selected, &mut report.signer, trust, now_unix);
    (report, Some((parsed.include, parsed.exclude)))
}

fn verify(
    parsed: &jws::Jws<'_>,
    selected: &[(&str, &Value)],
    signer: &mut Option<String>,
    trust: &Trust,
    now_unix: u64,
) -> Result<(), String> {
    if !key::is_known_alg(&parsed.alg) {
        return Err(key::unknown_alg(&parsed.alg));
    }
    let public_key = match &parsed.x5c {
        Some(x5c) => {
            let (subject, cn) = key::leaf_names(x5c)?;
            *signer = Some(subject);
            let oem = trust.oem_name.as_deref().filter(|oem| {
                cn.as_deref() == Some(*oem)
                    && !selected
                        .iter()
                        .any(|(k, _)| matches("bsp/**", k) || matches(&format!("{oem}/**"), k))
            });
            let (anchors, store) = match oem {
                Some(_) => (&trust.oem_ca, "OEM"),
                None => (&trust.ca, "default"),
            };
            key::verify_chain(x5c, anchors, store, now_unix)?
        }
        None => {
            let spki = trust.pub_key.as_deref().ok_or(
                "no x5c and no pub.pem: the signer's key is unknown (an embedded jwk is never trusted)",
            )?;
            *signer = Some("pub.pem".into());
            der::public_key(spki).map_err(|e| format!("pub.pem: {e}"))?
        }
    };
    let payload = super::canonical::object_to_vec(selected);
    let input = format!("{}.{}", parsed.protected_b64, encode_url(&payload));
    key::verify_signature(
        &parsed.alg,
        &public_key,
        input.as_bytes(),
        &parsed.signature,
    )
}
