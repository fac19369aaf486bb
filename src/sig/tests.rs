//! The verifier case by case: certificates made here with rcgen, signatures with ring (EC
//! P-256 and P-384; RSA is covered end to end by `tests/sig_verify.rs` with openssl keys).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, SignatureAlgorithm,
    date_time_ymd,
};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, EcdsaSigningAlgorithm,
};
use serde_json::{Value, json};

use super::base64::encode_url;
use super::canonical;
use super::{Mode, Refusal, Report, Trust, check};

/// 2027-01-15: inside every certificate's validity unless a test says otherwise.
const NOW: u64 = 1_800_000_000;

#[derive(Clone, Copy)]
enum Curve {
    P256,
    P384,
}

impl Curve {
    fn rcgen(self) -> &'static SignatureAlgorithm {
        match self {
            Curve::P256 => &PKCS_ECDSA_P256_SHA256,
            Curve::P384 => &PKCS_ECDSA_P384_SHA384,
        }
    }
    fn ring(self) -> &'static EcdsaSigningAlgorithm {
        match self {
            Curve::P256 => &ECDSA_P256_SHA256_FIXED_SIGNING,
            Curve::P384 => &ECDSA_P384_SHA384_FIXED_SIGNING,
        }
    }
    fn alg(self) -> &'static str {
        match self {
            Curve::P256 => "ES256",
            Curve::P384 => "ES384",
        }
    }
}

struct Ca {
    cert: Certificate,
    key: KeyPair,
}

fn ca(cn: &str, curve: Curve, issuer: Option<&Ca>) -> Ca {
    let key = KeyPair::generate_for(curve.rcgen()).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = match issuer {
        Some(i) => params.signed_by(&key, &i.cert, &i.key).unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    Ca { cert, key }
}

/// A signer: its leaf, the chain pvr puts in `x5c` (leaf, sub-CA) and its key.
struct Signer {
    x5c: Vec<Vec<u8>>,
    spki: Vec<u8>,
    pkcs8: Vec<u8>,
    curve: Curve,
}

#[derive(Clone, Copy, PartialEq)]
enum Eku {
    CodeSigning,
    ServerAuth,
    None,
}

fn leaf(cn: &str, curve: Curve, issuer: &Ca, eku: Eku, years: (i32, i32)) -> Signer {
    let key = KeyPair::generate_for(curve.rcgen()).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Tern Tests");
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = match eku {
        Eku::CodeSigning => vec![ExtendedKeyUsagePurpose::CodeSigning],
        Eku::ServerAuth => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Eku::None => vec![],
    };
    params.not_before = date_time_ymd(years.0, 1, 1);
    params.not_after = date_time_ymd(years.1, 1, 1);
    let cert = params.signed_by(&key, &issuer.cert, &issuer.key).unwrap();
    Signer {
        x5c: vec![cert.der().to_vec(), issuer.cert.der().to_vec()],
        spki: key.public_key_der(),
        pkcs8: key.serialize_der(),
        curve,
    }
}

/// Root → sub-CA → codeSigning leaf, valid 2020–2040.
struct Pki {
    root: Ca,
    sub: Ca,
    signer: Signer,
}

fn pki(curve: Curve) -> Pki {
    let root = ca("Test Root", curve, None);
    let sub = ca("Test Sub", curve, Some(&root));
    let signer = leaf("Test Signer", curve, &sub, Eku::CodeSigning, (2020, 2040));
    Pki { root, sub, signer }
}

impl Pki {
    fn trust(&self) -> Trust {
        Trust {
            ca: vec![self.root.cert.der().to_vec()],
            ..Trust::default()
        }
    }
}

/// What goes in a signature; each field a knob for one broken case.
struct Sig<'a> {
    name: &'a str,
    include: Option<Vec<&'a str>>,
    exclude: Option<Vec<&'a str>>,
    alg: Option<&'a str>,
    typ: Option<&'a str>,
    x5c: bool,
}

impl<'a> Sig<'a> {
    /// `pvr sig add --part PART` with `#spec` and `device.json` added, so one signature
    /// covers the sample state.
    fn part(name: &'a str) -> Sig<'a> {
        Sig {
            name,
            include: Some(vec!["app/**", "_config/app/**", "#spec", "device.json"]),
            exclude: Some(vec!["app/src.json", "_sigs/app.json"]),
            alg: None,
            typ: Some("PVS"),
            x5c: true,
        }
    }
}

fn state() -> Value {
    json!({
        "#spec": "pantavisor-service-system@1",
        "app/run.json": {"name": "app", "type": "lxc", "root-volume": "root.squashfs"},
        "app/root.squashfs": "baa5a0964d3320fbc0c6a922140453c8513ea24ab8fd0577034804a967248096",
        "app/src.json": {"docker_name": "example/app"},
        "_config/app/etc/app.conf": "29e3d6e8a1b5fb46ad2a4f5a7c12b1c4b86bd3a8b8e8bd1cf5b6bd5ed1d8d1a9",
        "device.json": {"groups": [{"name": "root", "timeout": 30}]}
    })
}

fn selected(state: &Value, sig: &Sig<'_>) -> Value {
    let inc = sig.include.clone().unwrap_or_default();
    let exc = sig.exclude.clone().unwrap_or_default();
    let m: serde_json::Map<String, Value> = state
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| {
            inc.iter().any(|g| super::glob::matches(g, k))
                && !exc.iter().any(|g| super::glob::matches(g, k))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Value::Object(m)
}

/// Adds `_sigs/<name>.json` signed by `signer` (raw R‖S, as pvr) and returns its key.
fn sign(state: &mut Value, signer: &Signer, sig: &Sig<'_>) -> String {
    let mut pvs = serde_json::Map::new();
    if let Some(i) = &sig.include {
        pvs.insert("include".into(), json!(i));
    }
    if let Some(e) = &sig.exclude {
        pvs.insert("exclude".into(), json!(e));
    }
    let mut header = json!({
        "alg": sig.alg.unwrap_or(signer.curve.alg()),
        "jwk": {"kty": "EC", "x": "ignored", "y": "ignored"},
        "pvs": pvs,
    });
    if let Some(t) = sig.typ {
        header["typ"] = json!(t);
    }
    if sig.x5c {
        header["x5c"] = json!(signer.x5c.iter().map(|d| std_b64(d)).collect::<Vec<_>>());
    }
    let protected = encode_url(&canonical::to_vec(&header));
    let payload = encode_url(&canonical::to_vec(&selected(state, sig)));
    let input = format!("{protected}.{payload}");
    let rng = SystemRandom::new();
    let kp = EcdsaKeyPair::from_pkcs8(signer.curve.ring(), &signer.pkcs8, &rng).unwrap();
    let signature = kp.sign(&rng, input.as_bytes()).unwrap();
    let key = format!("_sigs/{}.json", sig.name);
    state[key.as_str()] = json!({
        "#spec": "pvs@2",
        "protected": protected,
        "signature": encode_url(signature.as_ref()),
    });
    key
}

fn std_b64(data: &[u8]) -> String {
    // x5c is standard base64 with padding: from base64url by swapping the two characters.
    let mut s: String = encode_url(data)
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !s.len().is_multiple_of(4) {
        s.push('=');
    }
    s
}

fn verdict(report: &Report, key: &str) -> Result<(), String> {
    report
        .signatures
        .iter()
        .find(|s| s.key == key)
        .unwrap_or_else(|| panic!("{key} not reported: {report:?}"))
        .verdict
        .clone()
}

fn assert_fails(report: &Report, key: &str, reason: &str) {
    match verdict(report, key) {
        Err(e) => assert!(e.contains(reason), "{key}: {e:?} should say {reason:?}"),
        Ok(()) => panic!("{key} verified, but should fail with {reason:?}"),
    }
    assert_eq!(report.refusal, Some(Refusal::Validation));
}

#[test]
fn pvr_style_signatures_verify_for_each_ec_curve_through_root_or_sub_ca() {
    for curve in [Curve::P256, Curve::P384] {
        let p = pki(curve);
        let mut s = state();
        let key = sign(&mut s, &p.signer, &Sig::part("app"));
        let r = check(&s, &p.trust(), Mode::Strict, NOW);
        assert_eq!(verdict(&r, &key), Ok(()));
        assert_eq!(r.refusal, None, "{r:?}");
        assert!(r.uncovered.is_empty(), "{:?}", r.uncovered);
        let sig = &r.signatures[0];
        assert_eq!(sig.alg.as_deref(), Some(curve.alg()));
        assert_eq!(sig.signer.as_deref(), Some("CN=Test Signer, O=Tern Tests"));
        assert_eq!(
            sig.selected,
            [
                "#spec",
                "_config/app/etc/app.conf",
                "app/root.squashfs",
                "app/run.json",
                "device.json"
            ]
        );
        let sub_only = Trust {
            ca: vec![p.sub.cert.der().to_vec()],
            ..Trust::default()
        };
        assert_eq!(check(&s, &sub_only, Mode::Strict, NOW).refusal, None);
    }
}

#[test]
fn a_pretty_printed_state_in_any_key_order_verifies() {
    let p = pki(Curve::P256);
    let mut s = state();
    sign(&mut s, &p.signer, &Sig::part("app"));
    let text = serde_json::to_string_pretty(&s).unwrap();
    let reparsed: Value = serde_json::from_str(&text).unwrap();
    assert!(text.contains("\n  \""), "really pretty-printed");
    assert_eq!(
        check(&reparsed, &p.trust(), Mode::Strict, NOW).refusal,
        None
    );
}

#[test]
fn a_flipped_byte_in_a_covered_value_or_the_signature_fails() {
    let p = pki(Curve::P256);
    let mut s = state();
    let key = sign(&mut s, &p.signer, &Sig::part("app"));
    let mut changed = s.clone();
    changed["app/root.squashfs"] =
        json!("caa5a0964d3320fbc0c6a922140453c8513ea24ab8fd0577034804a967248096");
    let r = check(&changed, &p.trust(), Mode::Lenient, NOW);
    assert_fails(&r, &key, "bad signature bytes");

    let mut bad_sig = s.clone();
    let sig = bad_sig[key.as_str()]["signature"]
        .as_str()
        .unwrap()
        .to_string();
    let mut bytes = super::base64::decode(&sig, super::base64::Alphabet::Url).unwrap();
    bytes[10] ^= 1;
    bad_sig[key.as_str()]["signature"] = json!(encode_url(&bytes));
    let r = check(&bad_sig, &p.trust(), Mode::Lenient, NOW);
    assert_fails(&r, &key, "bad signature bytes");

    // A change outside the selection (the excluded src.json) does not matter.
    let mut outside = s.clone();
    outside["app/src.json"] = json!({"docker_name": "other"});
    assert_eq!(check(&outside, &p.trust(), Mode::Strict, NOW).refusal, None);
}

#[test]
fn ecdsa_signatures_are_raw_r_s_and_a_der_signature_is_refused() {
    let p = pki(Curve::P256);
    let mut s = state();
    let key = sign(&mut s, &p.signer, &Sig::part("app"));
    // The same input signed with ring's ASN.1 (DER) encoding, as mbedtls would want it.
    let protected = s[key.as_str()]["protected"].as_str().unwrap().to_string();
    let payload = encode_url(&canonical::to_vec(&selected(&s, &Sig::part("app"))));
    let rng = SystemRandom::new();
    let kp =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &p.signer.pkcs8, &rng).unwrap();
    let der = kp
        .sign(&rng, format!("{protected}.{payload}").as_bytes())
        .unwrap();
    let mut with_der = s.clone();
    with_der[key.as_str()]["signature"] = json!(encode_url(der.as_ref()));
    let r = check(&with_der, &p.trust(), Mode::Lenient, NOW);
    assert_fails(&r, &key, "wants a 64-byte R‖S signature");

    // Converted to R‖S, the very same signature verifies.
    let raw = der_to_raw(der.as_ref(), 32);
    let mut with_raw = s.clone();
    with_raw[key.as_str()]["signature"] = json!(encode_url(&raw));
    assert_eq!(
        check(&with_raw, &p.trust(), Mode::Strict, NOW).refusal,
        None
    );
}

/// DER `SEQUENCE { INTEGER r, INTEGER s }` → R‖S, each left-padded to `n` bytes.
fn der_to_raw(der: &[u8], n: usize) -> Vec<u8> {
    let (seq, _) = super::der::tlv(der, 0x30).unwrap();
    let (r, rest) = super::der::tlv(seq, 0x02).unwrap();
    let (s, _) = super::der::tlv(rest, 0x02).unwrap();
    let mut out = Vec::new();
    for int in [r, s] {
        let int = &int[int.iter().take_while(|b| **b == 0).count()..];
        out.extend(std::iter::repeat_n(0, n - int.len()));
        out.extend_from_slice(int);
    }
    out
}

#[test]
fn an_untrusted_chain_fails() {
    let p = pki(Curve::P256);
    let other = pki(Curve::P256);
    let mut s = state();
    let key = sign(&mut s, &other.signer, &Sig::part("app"));
    assert_fails(
        &check(&s, &p.trust(), Mode::Strict, NOW),
        &key,
        "untrusted chain",
    );
    let empty = Trust::default();
    assert_fails(
        &check(&s, &empty, Mode::Strict, NOW),
        &key,
        "holds no certificate",
    );
}

#[test]
fn dates_are_judged_at_the_given_time() {
    let p = pki(Curve::P256);
    let old = leaf(
        "Old Signer",
        Curve::P256,
        &p.sub,
        Eku::CodeSigning,
        (2019, 2021),
    );
    let mut s = state();
    let key = sign(&mut s, &old, &Sig::part("app"));
    assert_fails(&check(&s, &p.trust(), Mode::Strict, NOW), &key, "expired");
    // Auditing the revision as of 2020 (`--at`): then it was valid.
    assert_eq!(
        check(&s, &p.trust(), Mode::Strict, 1_590_000_000).refusal,
        None
    );
    // Before the leaf existed.
    assert_fails(
        &check(&s, &p.trust(), Mode::Strict, 1_500_000_000),
        &key,
        "not yet valid",
    );
}

#[test]
fn the_leaf_must_allow_code_signing_when_it_names_a_usage() {
    let p = pki(Curve::P256);
    let server = leaf("Server", Curve::P256, &p.sub, Eku::ServerAuth, (2020, 2040));
    let mut s = state();
    let key = sign(&mut s, &server, &Sig::part("app"));
    assert_fails(
        &check(&s, &p.trust(), Mode::Strict, NOW),
        &key,
        "EKU not codeSigning",
    );

    let plain = leaf("Plain", Curve::P256, &p.sub, Eku::None, (2020, 2040));
    let mut s = state();
    sign(&mut s, &plain, &Sig::part("app"));
    assert_eq!(check(&s, &p.trust(), Mode::Strict, NOW).refusal, None);
}

#[test]
fn only_rs256_es256_es384_are_accepted_and_alg_must_fit_the_key() {
    let p = pki(Curve::P256);
    for alg in ["ES512", "HS256", "none", "PS256"] {
        let mut s = state();
        let sig = Sig {
            alg: Some(alg),
            ..Sig::part("app")
        };
        let key = sign(&mut s, &p.signer, &sig);
        let r = check(&s, &p.trust(), Mode::Lenient, NOW);
        assert_fails(&r, &key, &format!("unknown alg {alg}"));
        assert_eq!(r.signatures[0].alg.as_deref(), Some(alg));
    }
    let mut s = state();
    let sig = Sig {
        alg: Some("ES384"),
        ..Sig::part("app")
    };
    let key = sign(&mut s, &p.signer, &sig);
    assert_fails(
        &check(&s, &p.trust(), Mode::Lenient, NOW),
        &key,
        "does not fit the signer's key (an EC P-256 key)",
    );
}

#[test]
fn typ_must_be_pvs_and_both_selection_lists_must_be_there() {
    let p = pki(Curve::P256);
    let cases: Vec<(Sig<'_>, &str)> = vec![
        (
            Sig {
                typ: Some("JWT"),
                ..Sig::part("app")
            },
            "typ is \"JWT\", not \"PVS\"",
        ),
        (
            Sig {
                typ: None,
                ..Sig::part("app")
            },
            "no typ",
        ),
        (
            Sig {
                include: None,
                ..Sig::part("app")
            },
            "pvs.include is missing",
        ),
        (
            Sig {
                exclude: None,
                ..Sig::part("app")
            },
            "pvs.exclude is missing",
        ),
    ];
    for (sig, reason) in cases {
        let mut s = state();
        let key = sign(&mut s, &p.signer, &sig);
        assert_fails(&check(&s, &p.trust(), Mode::Lenient, NOW), &key, reason);
    }
}

#[test]
fn malformed_signature_objects_fail_with_their_reason() {
    let p = pki(Curve::P256);
    let mut good = state();
    let key = sign(&mut good, &p.signer, &Sig::part("app"));
    let cases: Vec<(Value, &str)> = vec![
        (json!({"#spec": "pvs@2"}), "no \"protected\" header"),
        (
            json!({"#spec": "pvs@2", "protected": "!!", "signature": "AA"}),
            "protected header is not base64url",
        ),
        (
            json!({"#spec": "pvs@2", "protected": encode_url(b"{nope"), "signature": "AA"}),
            "protected header is not JSON",
        ),
        (
            json!({"#spec": "pvs@2", "protected": good[key.as_str()]["protected"], "signature": "a+b/"}),
            "signature is not base64url",
        ),
        (
            json!({"#spec": "pvs@2", "protected": encode_url(br#"{"alg":"ES256","typ":"PVS","pvs":{"include":[],"exclude":[]},"x5c":["***"]}"#), "signature": "AA"}),
            "x5c[0] is not a base64 certificate",
        ),
        (
            json!({"#spec": "pvs@2", "protected": encode_url(br#"{"alg":"ES256","typ":"PVS","pvs":{"include":[],"exclude":[]},"x5c":["AAAA"]}"#), "signature": "AA"}),
            "x5c[0] is not a usable certificate",
        ),
    ];
    for (value, reason) in cases {
        let mut s = state();
        s["_sigs/bad.json"] = value;
        assert_fails(
            &check(&s, &p.trust(), Mode::Strict, NOW),
            "_sigs/bad.json",
            reason,
        );
    }
}

#[test]
fn the_embedded_jwk_is_never_trusted_pub_pem_is() {
    let p = pki(Curve::P256);
    let mut s = state();
    let sig = Sig {
        x5c: false,
        ..Sig::part("app")
    };
    let key = sign(&mut s, &p.signer, &sig);
    assert_fails(
        &check(&s, &p.trust(), Mode::Lenient, NOW),
        &key,
        "no x5c and no pub.pem",
    );
    let other = pki(Curve::P256);
    let wrong_pub = Trust {
        pub_key: Some(other.signer.spki.clone()),
        ..p.trust()
    };
    assert_fails(
        &check(&s, &wrong_pub, Mode::Lenient, NOW),
        &key,
        "bad signature bytes",
    );
    let right_pub = Trust {
        pub_key: Some(p.signer.spki.clone()),
        ..Trust::default()
    };
    let r = check(&s, &right_pub, Mode::Strict, NOW);
    assert_eq!(r.refusal, None, "{r:?}");
    assert_eq!(r.signatures[0].signer.as_deref(), Some("pub.pem"));
}

#[test]
fn a_stray_payload_member_is_ignored() {
    let p = pki(Curve::P256);
    let mut s = state();
    let key = sign(&mut s, &p.signer, &Sig::part("app"));
    s[key.as_str()]["payload"] = json!(encode_url(b"{\"something\":\"else\"}"));
    assert_eq!(check(&s, &p.trust(), Mode::Strict, NOW).refusal, None);
}

#[test]
fn every_signature_is_checked_and_reported() {
    let p = pki(Curve::P256);
    let other = pki(Curve::P256);
    let mut s = state();
    let bad = sign(&mut s, &other.signer, &Sig::part("aaa"));
    let good = sign(&mut s, &p.signer, &Sig::part("app"));
    let r = check(&s, &p.trust(), Mode::Lenient, NOW);
    assert!(verdict(&r, &bad).is_err());
    assert_eq!(verdict(&r, &good), Ok(()));
    assert_eq!(r.refusal, Some(Refusal::Validation));
    assert_eq!(r.findings().len(), 1, "{:?}", r.findings());
    assert!(r.findings()[0].starts_with("_sigs/aaa.json: untrusted chain"));
}

#[test]
fn coverage_counts_excludes_and_never_needs_sigs_keys() {
    let p = pki(Curve::P256);
    let mut s = state();
    // Includes only app/run.json, excludes everything else but device.json.
    let sig = Sig {
        include: Some(vec!["app/run.json"]),
        exclude: Some(vec![
            "app/root.squashfs",
            "app/src.json",
            "_config/**",
            "#spec",
        ]),
        ..Sig::part("narrow")
    };
    sign(&mut s, &p.signer, &sig);
    let r = check(&s, &p.trust(), Mode::Strict, NOW);
    assert_eq!(r.uncovered, ["device.json"]);
    assert_eq!(r.refusal, Some(Refusal::Uncovered));
    assert_eq!(
        r.findings(),
        ["device.json is not covered by any signature"]
    );
    assert_eq!(r.signatures[0].selected, ["app/run.json"]);
}

#[test]
fn a_raw_signature_including_everything_verifies() {
    let p = pki(Curve::P384);
    let mut s = state();
    let sig = Sig {
        include: Some(vec!["**"]),
        exclude: Some(vec!["_sigs/raw.json", "_sigs/.json"]),
        ..Sig::part("raw")
    };
    sign(&mut s, &p.signer, &sig);
    let r = check(&s, &p.trust(), Mode::Strict, NOW);
    assert_eq!(r.refusal, None, "{r:?}");
    assert_eq!(r.signatures[0].selected.len(), 6);
}

/// The mode table: each mode × (unsigned, a bad signature, an uncovered key).
#[test]
fn each_mode_against_unsigned_bad_and_uncovered_states() {
    let p = pki(Curve::P256);
    let other = pki(Curve::P256);
    let unsigned = state();
    let mut bad = state();
    sign(&mut bad, &other.signer, &Sig::part("app"));
    let mut uncovered = state();
    sign(&mut uncovered, &p.signer, &Sig::part("app"));
    uncovered["extra.json"] = json!({"unsigned": true});

    let v = Some(Refusal::Validation);
    let u = Some(Refusal::Uncovered);
    let table = [
        (Mode::Disabled, [None, None, None]),
        (Mode::Audit, [None, None, None]),
        (Mode::Lenient, [None, v, None]),
        (Mode::Strict, [u, v, u]),
    ];
    for (mode, want) in table {
        for ((name, s), want) in [
            ("unsigned", &unsigned),
            ("bad", &bad),
            ("uncovered", &uncovered),
        ]
        .into_iter()
        .zip(want)
        {
            let r = check(s, &p.trust(), mode, NOW);
            assert_eq!(r.refusal, want, "{mode:?} × {name}: {r:?}");
            assert_eq!(r.mode, Some(mode));
            // Audit lets everything through but reports every finding.
            if mode == Mode::Audit {
                assert!(!r.findings().is_empty(), "audit × {name} reports");
            }
            if mode == Mode::Disabled {
                assert!(r.signatures.is_empty() && r.findings().is_empty());
            }
            if mode == Mode::Strict && name == "bad" {
                assert!(r.uncovered.is_empty(), "coverage not judged past a failure");
            }
        }
    }
    let r = check(&uncovered, &p.trust(), Mode::Audit, NOW);
    assert_eq!(r.findings(), ["extra.json is not covered by any signature"]);
}

#[test]
fn disabled_parses_nothing() {
    let mut s = state();
    s["_sigs/garbage.json"] = json!({"#spec": "pvs@2", "protected": 5});
    let r = check(&s, &Trust::default(), Mode::Disabled, NOW);
    assert!(r.signatures.is_empty());
    assert_eq!(r.refusal, None);
    let r = check(&s, &Trust::default(), Mode::Audit, NOW);
    assert_eq!(r.signatures.len(), 1);
    assert_eq!(r.refusal, None);
}

#[test]
fn the_oem_store_serves_a_leaf_named_like_the_oem_unless_it_signs_the_bsp() {
    let p = pki(Curve::P256);
    let oem_leaf = leaf("acme", Curve::P256, &p.sub, Eku::CodeSigning, (2020, 2040));
    let oem_trust = Trust {
        ca: vec![],
        oem_ca: vec![p.root.cert.der().to_vec()],
        oem_name: Some("acme".into()),
        pub_key: None,
    };
    let mut s = state();
    sign(&mut s, &oem_leaf, &Sig::part("app"));
    assert_eq!(check(&s, &oem_trust, Mode::Lenient, NOW).refusal, None);

    // The same leaf signing a BSP key must chain to the default store (empty here).
    let mut s = state();
    s["bsp/run.json"] = json!({"linux": "kernel.img"});
    let sig = Sig {
        include: Some(vec!["bsp/**"]),
        exclude: Some(vec![]),
        ..Sig::part("bsp")
    };
    let key = sign(&mut s, &oem_leaf, &sig);
    assert_fails(
        &check(&s, &oem_trust, Mode::Lenient, NOW),
        &key,
        "default trust store",
    );

    // A leaf with another name never uses the OEM store.
    let mut s = state();
    let key = sign(&mut s, &p.signer, &Sig::part("app"));
    assert_fails(
        &check(&s, &oem_trust, Mode::Lenient, NOW),
        &key,
        "default trust store",
    );
}

#[test]
fn the_parser_test_datas_placeholder_signatures_are_refused_with_a_reason() {
    let text = include_str!("../spec/testdata/device_json_groups.json");
    let state: Value = serde_json::from_str(text).unwrap();
    let r = check(&state, &Trust::default(), Mode::Lenient, NOW);
    assert_eq!(r.refusal, Some(Refusal::Validation));
    assert_eq!(r.signatures.len(), 5);
    for s in &r.signatures {
        assert_eq!(s.alg.as_deref(), Some("ES256"));
        assert_eq!(
            s.verdict,
            Err("protected header has no pvs selection (include/exclude)".to_string())
        );
    }
}

#[test]
fn a_hostile_state_is_bounded_in_signatures_and_globs() {
    let p = pki(Curve::P256);
    let mut s = state();
    let many: Vec<String> = (0..65).map(|i| format!("g{i}")).collect();
    let globs: Vec<&str> = many.iter().map(String::as_str).collect();
    let key = sign(
        &mut s,
        &p.signer,
        &Sig {
            include: Some(globs),
            ..Sig::part("wide")
        },
    );
    assert_fails(
        &check(&s, &p.trust(), Mode::Lenient, NOW),
        &key,
        "pvs.include has 65 globs, more than 64",
    );

    let mut s = state();
    for i in 0..70 {
        s[format!("_sigs/s{i:02}.json").as_str()] = json!({"#spec": "pvs@2"});
    }
    let r = check(&s, &p.trust(), Mode::Audit, NOW);
    assert_eq!(r.signatures.len(), 70, "every one reported");
    let unchecked = r
        .signatures
        .iter()
        .filter(|s| {
            s.verdict
                .as_ref()
                .is_err_and(|e| e.starts_with("not checked"))
        })
        .count();
    assert_eq!(unchecked, 6);
}
