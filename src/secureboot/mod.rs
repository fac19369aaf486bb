//! Where revisions meet their signatures: the device's trust and secureboot mode, one check
//! that every entry point (PUT /steps, hub steps, LOCAL_RUN and friends, the boot of a try,
//! the factory seed) calls, logging each finding, and the findings of the revision that runs
//! (device meta `pantavisor.secureboot`).
//!
//! It never verifies a signature itself (that is [`crate::sig::check`]) and never reads the
//! trust files per request: they are read at start and on SIGHUP ([`Secureboot::reload`]).
//! The boot-time object check lives beside it in [`checksum`].

pub mod boot;
pub mod checksum;

use crate::config::Config;
use crate::sig::{Mode, Refusal, Trust};
use crate::store::trust::{load_trust, mode_of};

/// Revisions whose findings are remembered for device meta (the running one, the one being
/// tried, a few uploads): enough for every revision that can run, bounded whatever a client
/// uploads.
const REMEMBERED: usize = 4;

/// What the device trusts, and what its recent checks found.
#[derive(Debug, Default)]
pub struct Secureboot {
    pub trust: Trust,
    /// (revision, findings) of the latest checks, newest last.
    findings: Vec<(String, Vec<String>)>,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub mode: Mode,
    /// `Some` when the mode refuses the revision.
    pub refusal: Option<Refusal>,
    /// One line per problem (audit lets all of them through).
    pub findings: Vec<String>,
}

impl Verdict {
    /// Pantavisor's status string of the refusal, for progress and the 422 body.
    pub fn refused(&self) -> Option<&'static str> {
        self.refusal.map(Refusal::message)
    }
}

impl Secureboot {
    /// Read the trust stores of `config` (at start and on SIGHUP).
    pub fn load(config: &Config) -> Secureboot {
        Secureboot {
            trust: load_trust(config),
            findings: Vec::new(),
        }
    }

    /// SIGHUP: the trust files again (the mode is read from the config at each check).
    pub fn reload(&mut self, config: &Config) {
        self.trust = load_trust(config);
    }

    /// Check revision `rev` (`state`: its state JSON) under the configured mode, logging every
    /// finding (as warnings in audit mode, where nothing is refused) and the refusal.
    /// `what` says where the check happens, for the log.
    pub fn check(&self, config: &Config, what: &str, rev: &str, state: &[u8]) -> Verdict {
        // Every entry point runs the state parser first; a state that is not JSON gets here
        // only if one forgot, and is refused.
        let doc = serde_json::from_slice(state).unwrap_or(serde_json::Value::Null);
        self.check_doc(config, what, rev, &doc)
    }

    /// [`Secureboot::check`] of a state already parsed as JSON.
    pub fn check_doc(
        &self,
        config: &Config,
        what: &str,
        rev: &str,
        doc: &serde_json::Value,
    ) -> Verdict {
        let mode = mode_of(config);
        if mode == Mode::Disabled {
            return Verdict {
                mode,
                refusal: None,
                findings: Vec::new(),
            };
        }
        let report = if doc.is_object() {
            crate::sig::check(doc, &self.trust, mode, crate::clock_floor::now_with_floor())
        } else {
            crate::sig::Report {
                refusal: Some(Refusal::Validation),
                ..crate::sig::Report::default()
            }
        };
        let findings = report.findings();
        let verdict = Verdict {
            mode,
            refusal: report.refusal,
            findings,
        };
        log_verdict(what, rev, &verdict);
        verdict
    }

    /// Remember what a check of `rev` found, for device meta once it runs.
    pub fn remember(&mut self, rev: &str, verdict: &Verdict) {
        self.findings.retain(|(r, _)| r != rev);
        if self.findings.len() >= REMEMBERED {
            self.findings.remove(0);
        }
        self.findings
            .push((rev.to_string(), verdict.findings.clone()));
    }

    /// Device meta `pantavisor.secureboot` for the running revision `rev`: the mode and the
    /// findings of its latest check (none when it was never checked since the start).
    pub fn meta(&self, config: &Config, rev: &str) -> Option<String> {
        let mode = mode_of(config);
        if mode == Mode::Disabled {
            return None;
        }
        let findings = self
            .findings
            .iter()
            .rev()
            .find(|(r, _)| r == rev)
            .map(|(_, f)| f.clone())
            .unwrap_or_default();
        Some(serde_json::json!({ "mode": mode.as_str(), "findings": findings }).to_string())
    }
}

fn log_verdict(what: &str, rev: &str, v: &Verdict) {
    let level = match (v.mode, v.refusal) {
        (_, Some(_)) => log::Level::Error,
        _ => log::Level::Warn,
    };
    for f in &v.findings {
        log::log!(level, "secureboot: {what} {rev}: {f}");
    }
    match v.refusal {
        Some(r) => log::error!(
            "secureboot: {what} {rev}: refused in {} mode: {}",
            v.mode.as_str(),
            r.message()
        ),
        None if v.mode == Mode::Audit && !v.findings.is_empty() => log::warn!(
            "secureboot: {what} {rev}: in secureboot audit mode, so we will pass the bad \
             signatures as good ones"
        ),
        None => log::debug!("secureboot: {what} {rev}: accepted ({})", v.mode.as_str()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::LoadOptions;

    fn config(mode: &str) -> Config {
        Config::load(&LoadOptions {
            sets: vec![("PV_SECUREBOOT_MODE".into(), mode.into())],
            ..LoadOptions::default()
        })
        .unwrap()
    }

    /// A state with `n` values that look like signatures (never verified here).
    fn with_signatures(n: usize) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("#spec".into(), "pantavisor-service-system@1".into());
        for i in 0..n {
            let sig = serde_json::json!({"#spec": "pvs@2", "protected": "e30", "signature": "AA"});
            m.insert(format!("_sigs/{i}.json"), sig);
        }
        serde_json::Value::Object(m)
    }

    #[test]
    fn device_meta_names_the_findings_of_the_revision_asked_for() {
        let mut sb = Secureboot::default();
        let c = config("audit");
        for rev in ["a", "b", "c", "d", "e"] {
            let v = sb.check_doc(&c, "test", rev, &with_signatures(1));
            sb.remember(rev, &v);
        }
        let meta: serde_json::Value = serde_json::from_str(&sb.meta(&c, "e").unwrap()).unwrap();
        assert_eq!(meta["mode"], "audit");
        // The bad signature and the spec it leaves uncovered.
        assert_eq!(meta["findings"].as_array().unwrap().len(), 2, "{meta}");
        // Only the last few checks are kept: the oldest is forgotten.
        let meta: serde_json::Value = serde_json::from_str(&sb.meta(&c, "a").unwrap()).unwrap();
        assert_eq!(meta["findings"], serde_json::json!([]));
        assert_eq!(sb.meta(&config("disabled"), "e"), None);
    }
}
