//! Whose key a signature is checked with, and the check itself: the first `x5c` certificate
//! once its chain verifies to a trust anchor (rustls-webpki: signatures, dates at the given
//! time, CA constraints, EKU codeSigning when the leaf carries an EKU), else `pub.pem`; then
//! the JWS signature over the signing input with ring (ECDSA as raw R‖S, RSA PKCS#1 v1.5).
//!
//! It must never take a key from the header's `jwk` (that would make any signature
//! self-validating) and never accept an `alg` other than RS256, ES256, ES384.

use std::time::Duration;

use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, RSA_PKCS1_2048_8192_SHA256,
    UnparsedPublicKey, VerificationAlgorithm,
};
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, KeyUsage};

use super::der::{self, PublicKey};

/// extendedKeyUsage codeSigning, 1.3.6.1.5.5.7.3.3 (OID content bytes).
const CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

/// Algorithms certificates in a chain may be signed with.
static CHAIN_ALGS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
    webpki::ring::ED25519,
];

/// Reads the leaf (`x5c[0]`) without judging it: its subject, for reports and the OEM rule.
pub fn leaf_names(x5c: &[Vec<u8>]) -> Result<(String, Option<String>), String> {
    let der = CertificateDer::from(x5c.first().ok_or("x5c is empty")?.as_slice());
    let cert = EndEntityCert::try_from(&der)
        .map_err(|e| format!("x5c[0] is not a usable certificate: {e}"))?;
    Ok((
        der::subject_text(cert.subject()),
        der::common_name(cert.subject()),
    ))
}

/// Verifies the chain `x5c` (leaf first) to one of `anchors` at `now_unix` and gives the
/// leaf's key; `store` names the trust store in messages.
pub fn verify_chain(
    x5c: &[Vec<u8>],
    anchors: &[Vec<u8>],
    store: &str,
    now_unix: u64,
) -> Result<PublicKey, String> {
    let leaf_der = CertificateDer::from(x5c.first().ok_or("x5c is empty")?.as_slice());
    let leaf = EndEntityCert::try_from(&leaf_der)
        .map_err(|e| format!("x5c[0] is not a usable certificate: {e}"))?;
    let intermediates: Vec<CertificateDer<'_>> = x5c[1..]
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let anchor_ders: Vec<CertificateDer<'_>> = anchors
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let trust: Vec<TrustAnchor<'_>> = anchor_ders
        .iter()
        .filter_map(|d| webpki::anchor_from_trusted_cert(d).ok())
        .collect();
    if trust.is_empty() {
        return Err(format!(
            "untrusted chain: the {store} trust store holds no certificate"
        ));
    }
    let time = UnixTime::since_unix_epoch(Duration::from_secs(now_unix));
    leaf.verify_for_usage(
        CHAIN_ALGS,
        &trust,
        &intermediates,
        time,
        KeyUsage::required_if_present(CODE_SIGNING),
        None,
        None,
    )
    .map_err(|e| chain_error(&e, store, now_unix))?;
    der::public_key(leaf.subject_public_key_info().as_ref())
}

fn chain_error(e: &webpki::Error, store: &str, now_unix: u64) -> String {
    use crate::utc::format_utc;
    let at = format_utc(now_unix);
    #[allow(deprecated)]
    match e {
        webpki::Error::CertExpired { not_after, .. } => format!(
            "expired: a certificate of the chain is valid until {}, checked at {at}",
            format_utc(not_after.as_secs())
        ),
        webpki::Error::CertNotValidYet { not_before, .. } => format!(
            "not yet valid: a certificate of the chain is valid from {}, checked at {at}",
            format_utc(not_before.as_secs())
        ),
        webpki::Error::UnknownIssuer => {
            format!("untrusted chain: no path from the signer to the {store} trust store")
        }
        webpki::Error::RequiredEkuNotFound | webpki::Error::RequiredEkuNotFoundContext(_) => {
            "EKU not codeSigning: the signing certificate's extended key usage does not allow code signing".into()
        }
        webpki::Error::CaUsedAsEndEntity => {
            "untrusted chain: the signing certificate is a CA certificate".into()
        }
        webpki::Error::InvalidSignatureForPublicKey => {
            "untrusted chain: a certificate's signature does not verify".into()
        }
        other => format!("untrusted chain: {other}"),
    }
}

/// Checks `signature` over `input` with `key` under the header's `alg`.
pub fn verify_signature(
    alg: &str,
    key: &PublicKey,
    input: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    let algorithm: &dyn VerificationAlgorithm = match (alg, key) {
        ("ES256", PublicKey::P256(_)) => &ECDSA_P256_SHA256_FIXED,
        ("ES384", PublicKey::P384(_)) => &ECDSA_P384_SHA384_FIXED,
        ("RS256", PublicKey::Rsa(_)) => &RSA_PKCS1_2048_8192_SHA256,
        ("ES256" | "ES384" | "RS256", k) => {
            return Err(format!(
                "alg {alg} does not fit the signer's key ({})",
                k.describe()
            ));
        }
        _ => return Err(unknown_alg(alg)),
    };
    let raw = match key {
        PublicKey::P256(k) | PublicKey::P384(k) | PublicKey::Rsa(k) => k,
    };
    let expected = match key {
        PublicKey::P256(_) => Some(64),
        PublicKey::P384(_) => Some(96),
        PublicKey::Rsa(_) => None,
    };
    if let Some(n) = expected
        && signature.len() != n
    {
        return Err(format!(
            "bad signature bytes: {alg} wants a {n}-byte R‖S signature, this one has {} bytes",
            signature.len()
        ));
    }
    UnparsedPublicKey::new(algorithm, raw)
        .verify(input, signature)
        .map_err(|_| "bad signature bytes: the signature does not verify over the payload".into())
}

/// The message for an `alg` outside RS256, ES256, ES384.
pub fn unknown_alg(alg: &str) -> String {
    format!("unknown alg {alg}: only RS256, ES256 and ES384 are accepted")
}

pub fn is_known_alg(alg: &str) -> bool {
    matches!(alg, "RS256" | "ES256" | "ES384")
}
