//! `tern sig verify` through the real binary, on states signed the way `pvr sig add` signs
//! them (fixtures of `tests/common/sig.rs`: openssl-made PKI for EC P-256, P-384 and RSA 2048):
//! each verdict with its exit code and reason, `--at` before and after a leaf's expiry,
//! `--trust` with the sub-CA or the root as the anchor, the device's own trust stores found
//! under `PV_SYSTEM_ETCDIR`, and usage errors.

#![cfg(feature = "sig")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::sig::{self, Alg, SigSpec, Signer};
use common::{TempDir, run_tern};
use serde_json::{Value, json};

struct Run {
    code: Option<i32>,
    out: String,
    err: String,
}

/// Writes `text` as the state file and runs `tern sig verify` on it with `args`; the device
/// etc dir is `etc` (an empty one unless a test installs trust there).
fn verify_text(text: &str, args: &[&str], etc: &Path) -> Run {
    let dir = TempDir::new("sigv");
    let file = dir.path().join("state.json");
    std::fs::write(&file, text).unwrap();
    let mut argv = vec!["sig", "verify", file.to_str().unwrap()];
    argv.extend_from_slice(args);
    let o = run_tern(&argv, &[("PV_SYSTEM_ETCDIR", etc.to_str().unwrap())]);
    Run {
        code: o.status.code(),
        out: String::from_utf8_lossy(&o.stdout).into_owned(),
        err: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn verify(state: &Value, args: &[&str]) -> Run {
    let etc = TempDir::new("sigv-etc");
    verify_text(&serde_json::to_string(state).unwrap(), args, etc.path())
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn root(alg: Alg) -> PathBuf {
    sig::pki().root(alg)
}

/// The sample state signed by `signer` as two `pvr sig add --part` runs (bsp, app) that
/// cover every key.
fn signed(signer: Signer) -> Value {
    sig::fully_signed(sig::sample_state(), signer, &["bsp", "app"])
}

fn assert_accepted(r: &Run, what: &str) {
    assert_eq!(r.code, Some(0), "{what}:\n{}{}", r.out, r.err);
}

fn assert_refused(r: &Run, reason: &str, outcome: &str) {
    assert_eq!(r.code, Some(1), "should be refused:\n{}{}", r.out, r.err);
    assert!(r.out.contains(reason), "should say {reason:?}:\n{}", r.out);
    assert!(
        r.out.contains(outcome),
        "should end {outcome:?}:\n{}",
        r.out
    );
}

const VALIDATION: &str = "strict: refused: Signature validation failed";
const UNCOVERED: &str = "strict: refused: State not fully covered by signatures";

/// The fixture chains are what openssl itself accepts: each leaf verifies to its root through
/// its sub-CA, the expired one does not, the untrusted one only to its own root.
#[test]
fn fixture_chains_verify_with_openssl() {
    let pki = sig::pki();
    let openssl_ok = |root: &Path, signer: Signer| {
        let files = pki.leaf(signer);
        Command::new("openssl")
            .arg("verify")
            .args(["-CAfile", p(root), "-untrusted", p(&files.chain)])
            .arg(&files.cert)
            .output()
            .unwrap()
            .status
            .success()
    };
    for alg in Alg::ALL {
        assert!(openssl_ok(&root(alg), Signer::Leaf(alg)), "{alg:?}");
    }
    assert!(!openssl_ok(&root(Alg::Es256), Signer::Expired));
    assert!(!openssl_ok(&root(Alg::Es256), Signer::Untrusted));
    assert!(openssl_ok(&pki.untrusted_root(), Signer::Untrusted));
}

#[test]
fn pvr_signed_states_verify_with_the_root_or_the_sub_ca_as_anchor() {
    for alg in Alg::ALL {
        let state = signed(Signer::Leaf(alg));
        for anchor in [root(alg), sig::pki().sub(alg)] {
            let r = verify(&state, &["--trust", p(&anchor)]);
            assert_accepted(&r, &format!("{alg:?} anchored at {}", anchor.display()));
            assert!(r.out.contains("_sigs/bsp.json: verified"), "{}", r.out);
            assert!(r.out.contains("_sigs/app.json: verified"), "{}", r.out);
            assert!(
                r.out.contains(&format!("alg:     {}", alg.jws())),
                "{}",
                r.out
            );
            assert!(
                r.out
                    .contains(&format!("signer:  CN=Tern Test Signer ({})", alg.jws())),
                "{}",
                r.out
            );
            assert!(
                r.out.contains("    app/run.json\n"),
                "selected keys listed: {}",
                r.out
            );
            assert!(r.out.contains("uncovered: none"), "{}", r.out);
            assert!(r.out.ends_with("strict: accepted\n"), "{}", r.out);
        }
        // Another family's root is not an anchor for this chain.
        let other = if alg == Alg::Rs256 {
            Alg::Es256
        } else {
            Alg::Rs256
        };
        let r = verify(&state, &["--trust", p(&root(other))]);
        assert_refused(&r, "untrusted chain", VALIDATION);
    }
}

#[test]
fn the_devices_trust_store_under_pv_system_etcdir_is_the_default() {
    let etc = TempDir::new("sigv-dev");
    sig::pki().install_trust(etc.path(), &[root(Alg::Es384)], None);
    let text = serde_json::to_string(&signed(Signer::Leaf(Alg::Es384))).unwrap();
    assert_accepted(&verify_text(&text, &[], etc.path()), "device store");
    let empty = TempDir::new("sigv-empty");
    let r = verify_text(&text, &[], empty.path());
    assert_refused(&r, "trust store holds no certificate", VALIDATION);
}

#[test]
fn an_untrusted_root_is_refused() {
    let state = sig::fully_signed(sig::sample_state(), Signer::Untrusted, &["bsp", "app"]);
    let r = verify(&state, &["--trust", p(&root(Alg::Es256))]);
    assert_refused(&r, "untrusted chain", VALIDATION);
    assert!(
        r.out.contains("signer:  CN=Tern Untrusted Signer"),
        "{}",
        r.out
    );
    // Trusting that root instead, the same state verifies.
    let r = verify(&state, &["--trust", p(&sig::pki().untrusted_root())]);
    assert_accepted(&r, "its own root");
}

#[test]
fn an_expired_leaf_is_refused() {
    let state = sig::fully_signed(sig::sample_state(), Signer::Expired, &["bsp", "app"]);
    let r = verify(&state, &["--trust", p(&root(Alg::Es256))]);
    assert_refused(&r, "expired", VALIDATION);
    assert!(
        r.out.contains("valid until 2021-01-01T00:00:00Z"),
        "{}",
        r.out
    );
}

/// The fixture chains are valid for ten years from the test run: `--at` five years on is
/// before their expiry, fifteen years on after it, and 2001 before they existed.
#[test]
fn at_judges_the_chain_at_that_time() {
    let state = signed(Signer::Leaf(Alg::Es384));
    let trust = root(Alg::Es384);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let year = |years: u64| tern::store::trails::format_utc(now + years * 365 * 86_400);
    let r = verify(&state, &["--trust", p(&trust), "--at", &year(5)]);
    assert_accepted(&r, "before expiry");
    let r = verify(&state, &["--trust", p(&trust), "--at", &year(15)]);
    assert_refused(&r, "FAILED: expired", VALIDATION);
    let r = verify(
        &state,
        &["--trust", p(&trust), "--at", "2001-06-01T00:00:00Z"],
    );
    assert_refused(&r, "FAILED: not yet valid", VALIDATION);
}

#[test]
fn each_broken_signature_is_refused_with_its_reason() {
    let trust = root(Alg::Es256);
    let leaf = Signer::Leaf(Alg::Es256);
    let cases: Vec<(SigSpec, &str)> = vec![
        (
            SigSpec::part("app", leaf).flip_signature(),
            "bad signature bytes",
        ),
        (
            SigSpec::part("app", leaf).typ("JWT"),
            "typ is \"JWT\", not \"PVS\"",
        ),
        (SigSpec::part("app", leaf).alg("ES512"), "unknown alg ES512"),
        (
            SigSpec::part("app", leaf).jwk_only(),
            "no x5c and no pub.pem",
        ),
        (
            SigSpec::part("app", leaf).no_exclude(),
            "pvs.exclude is missing",
        ),
        (
            SigSpec::part("app", leaf).no_include(),
            "pvs.include is missing",
        ),
        (
            SigSpec::part("app", Signer::ServerAuthOnly),
            "EKU not codeSigning",
        ),
    ];
    for (spec, reason) in cases {
        let mut state = sig::sample_state();
        sig::sign(&mut state, &spec);
        let r = verify(&state, &["--trust", p(&trust)]);
        assert_refused(&r, &format!("_sigs/app.json: FAILED: {reason}"), VALIDATION);
        assert!(
            r.out
                .contains("uncovered: not checked (a signature failed)"),
            "{}",
            r.out
        );
        let r = verify(&state, &["--trust", p(&trust), "--mode", "lenient"]);
        assert_refused(&r, reason, "lenient: refused: Signature validation failed");
        // Audit reports it and lets it through.
        let r = verify(&state, &["--trust", p(&trust), "--mode", "audit"]);
        assert_accepted(&r, reason);
        assert!(r.out.contains(reason), "{}", r.out);
        assert!(r.out.contains("audit: accepted with"), "{}", r.out);
    }
}

#[test]
fn a_flipped_byte_in_a_covered_value_is_refused_outside_the_selection_it_is_not() {
    let trust = root(Alg::Rs256);
    let mut state = signed(Signer::Leaf(Alg::Rs256));
    state["app/run.json"]["name"] = json!("bpp");
    let r = verify(&state, &["--trust", p(&trust)]);
    assert_refused(
        &r,
        "_sigs/app.json: FAILED: bad signature bytes",
        VALIDATION,
    );
    assert!(
        r.out.contains("_sigs/bsp.json: verified"),
        "every signature checked: {}",
        r.out
    );

    let mut state = signed(Signer::Leaf(Alg::Rs256));
    state["app/src.json"]["docker_tag"] = json!("2.0");
    assert_accepted(
        &verify(&state, &["--trust", p(&trust)]),
        "excluded src.json changed",
    );
}

#[test]
fn a_key_only_pub_pem_verifies_the_jwk_alone_never_does() {
    let leaf = Signer::Leaf(Alg::Es384);
    let mut state = sig::sample_state();
    sig::sign(&mut state, &SigSpec::raw("all", leaf).jwk_only());
    let r = verify(&state, &[]);
    assert_refused(&r, "no x5c and no pub.pem", VALIDATION);
    let right = sig::pki().leaf(leaf).pub_pem;
    let r = verify(&state, &["--pub", p(&right)]);
    assert_accepted(&r, "pub.pem of the signer");
    assert!(r.out.contains("signer:  pub.pem"), "{}", r.out);
    let wrong = sig::pki().leaf(Signer::Leaf(Alg::Es256)).pub_pem;
    let r = verify(&state, &["--pub", p(&wrong)]);
    assert_refused(&r, "FAILED:", VALIDATION);
}

#[test]
fn coverage_decides_strict_only() {
    let trust = root(Alg::Es256);
    let mut state = signed(Signer::Leaf(Alg::Es256));
    state["extra/run.json"] = json!({"name": "extra"});
    let r = verify(&state, &["--trust", p(&trust)]);
    assert_refused(&r, "uncovered: 1 keys\n    extra/run.json\n", UNCOVERED);
    assert_accepted(
        &verify(&state, &["--trust", p(&trust), "--mode", "lenient"]),
        "lenient",
    );
    let r = verify(&state, &["--trust", p(&trust), "--mode", "audit"]);
    assert_accepted(&r, "audit");
    assert!(r.out.contains("extra/run.json"), "{}", r.out);

    // Unsigned: strict refuses (everything uncovered), lenient accepts, disabled parses nothing.
    let unsigned = sig::sample_state();
    let r = verify(&unsigned, &["--trust", p(&trust)]);
    assert_refused(&r, "signatures: none", UNCOVERED);
    assert_accepted(
        &verify(&unsigned, &["--mode", "lenient"]),
        "lenient unsigned",
    );
    let mut broken = sig::sample_state();
    broken["_sigs/x.json"] = json!({"#spec": "pvs@2", "protected": 1});
    let r = verify(&broken, &["--mode", "disabled"]);
    assert_accepted(&r, "disabled");
    assert_eq!(r.out, "disabled: accepted\n");
}

#[test]
fn pretty_printed_raw_and_with_payload_states_verify() {
    let trust = root(Alg::Es256);
    let etc = TempDir::new("sigv-pretty");
    let state = signed(Signer::Leaf(Alg::Es256));
    let pretty = sig::pretty(&state);
    assert!(pretty.contains("\n  "));
    assert_accepted(
        &verify_text(&pretty, &["--trust", p(&trust)], etc.path()),
        "pretty",
    );

    let mut raw = sig::sample_state();
    sig::sign(&mut raw, &SigSpec::raw("all", Signer::Leaf(Alg::Rs256)));
    let r = verify(&raw, &["--trust", p(&root(Alg::Rs256))]);
    assert_accepted(&r, "raw ** signature");
    assert!(r.out.contains("selects: 12 keys"), "{}", r.out);

    let mut with_payload = sig::sample_state();
    sig::sign(
        &mut with_payload,
        &SigSpec::raw("all", Signer::Leaf(Alg::Es256)).with_payload(),
    );
    assert!(with_payload["_sigs/all.json"]["payload"].is_string());
    assert_accepted(
        &verify(&with_payload, &["--trust", p(&trust)]),
        "stray payload",
    );
}

#[test]
fn usage_errors_exit_2() {
    let etc = TempDir::new("sigv-usage");
    let r = verify_text("{not json", &[], etc.path());
    assert_eq!(r.code, Some(2), "{}", r.err);
    assert!(r.err.contains("not JSON"), "{}", r.err);
    let r = verify_text("{}", &["--mode", "paranoid"], etc.path());
    assert_eq!(r.code, Some(2), "{}", r.err);
    let r = verify_text("{}", &["--trust", "/nonexistent/ca.pem"], etc.path());
    assert_eq!(r.code, Some(2), "{}", r.err);
    assert!(r.err.contains("/nonexistent/ca.pem"), "{}", r.err);
    let r = verify_text("{}", &["--at", "tomorrow"], etc.path());
    assert_eq!(r.code, Some(2), "{}", r.err);
    let o = run_tern(&["sig", "verify", "/nonexistent/state.json"], &[]);
    assert_eq!(o.status.code(), Some(2));
    let o = run_tern(&["sig", "verify", "--help"], &[]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("pvs@2"));
}
