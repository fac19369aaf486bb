//! `tern sig verify`: the device's signature check run on a host, on a state JSON file, with
//! the device's trust (read through the same configuration loader and trust reader as the
//! daemon) or the `--trust`/`--pub` files given.
//!
//! Owns the command's I/O and its report; the verdict is [`crate::sig::check`]'s, never its
//! own. Exit 0 accepted, 1 refused, 2 usage error (including a file that cannot be read).

use std::fmt::Write as _;
use std::process::ExitCode;

use crate::cli::SigOpts;
use crate::config::{Config, LoadOptions};
use crate::sig::{self, Mode, Report, Trust};
use crate::store::trust;

/// Largest state file read (a state JSON is a few hundred KB at most).
const MAX_STATE: u64 = 16 * 1024 * 1024;

pub fn run(opts: &SigOpts) -> ExitCode {
    match prepare(opts) {
        Ok((state, trust, mode, at)) => {
            let report = sig::check(&state, &trust, mode, at);
            if mode != Mode::Disabled {
                // What the verdicts were judged against, so an empty store is not a mystery.
                println!(
                    "trust: {} CA certificates, {} OEM CA certificates, {}; time {}",
                    trust.ca.len(),
                    trust.oem_ca.len(),
                    if trust.pub_key.is_some() {
                        "pub.pem"
                    } else {
                        "no pub.pem"
                    },
                    crate::utc::format_utc(at)
                );
            }
            print!("{}", render(&report, mode));
            if report.refusal.is_some() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("tern sig verify: {e}");
            ExitCode::from(2)
        }
    }
}

fn prepare(opts: &SigOpts) -> Result<(serde_json::Value, Trust, Mode, u64), String> {
    let size = std::fs::metadata(&opts.state)
        .map_err(|e| format!("{}: {e}", opts.state.display()))?
        .len();
    if size > MAX_STATE {
        return Err(format!(
            "{}: larger than {MAX_STATE} bytes",
            opts.state.display()
        ));
    }
    let text = std::fs::read(&opts.state).map_err(|e| format!("{}: {e}", opts.state.display()))?;
    let state: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| format!("{}: not JSON: {e}", opts.state.display()))?;
    if !state.is_object() {
        return Err(format!("{}: not a JSON object", opts.state.display()));
    }
    let config = Config::load(&LoadOptions {
        file: opts.config.clone(),
        env: std::env::vars().collect(),
        sets: Vec::new(),
    })
    .map_err(|e| e.to_string())?;
    let mut trust = if opts.trust.is_empty() {
        trust::load_trust(&config)
    } else {
        let mut anchors = Vec::new();
        for path in &opts.trust {
            anchors.extend(
                trust::read_certificates(path).map_err(|e| format!("{}: {e}", path.display()))?,
            );
        }
        Trust {
            // Given anchors serve whichever store the OEM rule would pick.
            oem_ca: anchors.clone(),
            ca: anchors,
            oem_name: config
                .get("PV_OEM_NAME")
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            pub_key: trust::read_public_key(&trust::trust_dir(&config).join("pub.pem")).ok(),
        }
    };
    if let Some(path) = &opts.pub_key {
        trust.pub_key =
            Some(trust::read_public_key(path).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    let at = opts.at.unwrap_or_else(crate::clock_floor::now_with_floor);
    Ok((state, trust, opts.mode.unwrap_or(Mode::Strict), at))
}

/// The report as printed: each signature, the uncovered keys, the outcome.
pub fn render(report: &Report, mode: Mode) -> String {
    let mut out = String::new();
    for note in &report.notes {
        let _ = writeln!(out, "note: {note}");
    }
    if mode != Mode::Disabled && report.signatures.is_empty() {
        let _ = writeln!(out, "signatures: none");
    }
    for s in &report.signatures {
        let verdict = match &s.verdict {
            Ok(()) => "verified".to_string(),
            Err(reason) => format!("FAILED: {reason}"),
        };
        let _ = writeln!(out, "{}: {verdict}", s.key);
        let _ = writeln!(out, "  alg:     {}", s.alg.as_deref().unwrap_or("-"));
        let _ = writeln!(out, "  signer:  {}", s.signer.as_deref().unwrap_or("-"));
        let _ = writeln!(out, "  selects: {} keys", s.selected.len());
        for k in &s.selected {
            let _ = writeln!(out, "    {k}");
        }
    }
    match (mode, report.uncovered.is_empty()) {
        (Mode::Disabled | Mode::Lenient, _) => {}
        (Mode::Strict, _) if report.refusal == Some(sig::Refusal::Validation) => {
            let _ = writeln!(out, "uncovered: not checked (a signature failed)");
        }
        (_, true) => {
            let _ = writeln!(out, "uncovered: none");
        }
        (_, false) => {
            let _ = writeln!(out, "uncovered: {} keys", report.uncovered.len());
            for k in &report.uncovered {
                let _ = writeln!(out, "    {k}");
            }
        }
    }
    let outcome = match (report.refusal, mode) {
        (Some(r), _) => format!("refused: {}", r.message()),
        (None, Mode::Audit) if !report.findings().is_empty() => {
            format!("accepted with {} findings (audit)", report.findings().len())
        }
        (None, _) => "accepted".to_string(),
    };
    let _ = writeln!(out, "{}: {outcome}", mode.as_str());
    out
}
