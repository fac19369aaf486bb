//! The little DER reading the verifier needs beyond webpki: which kind of key a
//! SubjectPublicKeyInfo holds (and its raw key bytes for ring), and a certificate subject as
//! text for reports.
//!
//! Reads only; every length is checked against the input, so a malformed key or name is an
//! error, never a panic.

/// A signer's public key, as ring wants it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// Uncompressed point of a P-256 key.
    P256(Vec<u8>),
    /// Uncompressed point of a P-384 key.
    P384(Vec<u8>),
    /// PKCS#1 `RSAPublicKey` DER.
    Rsa(Vec<u8>),
}

impl PublicKey {
    pub fn describe(&self) -> &'static str {
        match self {
            PublicKey::P256(_) => "an EC P-256 key",
            PublicKey::P384(_) => "an EC P-384 key",
            PublicKey::Rsa(_) => "an RSA key",
        }
    }
}

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

/// Reads a SubjectPublicKeyInfo (with its outer SEQUENCE).
pub fn public_key(spki: &[u8]) -> Result<PublicKey, String> {
    let bad = |what: &str| format!("public key is not a valid SubjectPublicKeyInfo ({what})");
    let (body, _) = tlv(spki, 0x30).ok_or_else(|| bad("outer sequence"))?;
    let (alg_id, rest) = tlv(body, 0x30).ok_or_else(|| bad("algorithm"))?;
    let (bits, _) = tlv(rest, 0x03).ok_or_else(|| bad("key bits"))?;
    let key = match bits.split_first() {
        Some((0, key)) => key.to_vec(),
        _ => return Err(bad("key bits")),
    };
    let (oid, params) = tlv(alg_id, 0x06).ok_or_else(|| bad("algorithm"))?;
    if oid == OID_RSA {
        return Ok(PublicKey::Rsa(key));
    }
    if oid != OID_EC {
        return Err("public key is neither RSA nor EC".into());
    }
    match tlv(params, 0x06) {
        Some((curve, _)) if curve == OID_P256 => Ok(PublicKey::P256(key)),
        Some((curve, _)) if curve == OID_P384 => Ok(PublicKey::P384(key)),
        _ => Err("public key is on an EC curve other than P-256 and P-384".into()),
    }
}

/// A certificate subject (the Name's contents, without its outer SEQUENCE, as webpki gives
/// it) as `CN=…, O=…`; attributes other than CN, O, OU, C, ST and L are left out.
pub fn subject_text(name: &[u8]) -> String {
    attributes(name)
        .into_iter()
        .filter_map(|(oid, value)| {
            let label = match oid {
                [0x55, 0x04, 0x03] => "CN",
                [0x55, 0x04, 0x0a] => "O",
                [0x55, 0x04, 0x0b] => "OU",
                [0x55, 0x04, 0x06] => "C",
                [0x55, 0x04, 0x08] => "ST",
                [0x55, 0x04, 0x07] => "L",
                _ => return None,
            };
            Some(format!("{label}={value}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The subject's common name, for the OEM trust store rule.
pub fn common_name(name: &[u8]) -> Option<String> {
    attributes(name)
        .into_iter()
        .find(|(oid, _)| *oid == [0x55, 0x04, 0x03])
        .map(|(_, v)| v)
}

/// (OID, text value) of every attribute of a Name, in order.
fn attributes(mut name: &[u8]) -> Vec<(&[u8], String)> {
    let mut out = Vec::new();
    while let Some((set, rest)) = tlv(name, 0x31) {
        name = rest;
        let mut set = set;
        while let Some((atv, more)) = tlv(set, 0x30) {
            set = more;
            let Some((oid, value)) = tlv(atv, 0x06) else {
                continue;
            };
            if let Some((tag, text)) = any_tlv(value) {
                // UTF8String, PrintableString, IA5String, T61String: text as is (lossy).
                if matches!(tag, 0x0c | 0x13 | 0x16 | 0x14) {
                    out.push((oid, String::from_utf8_lossy(text).into_owned()));
                }
            }
        }
    }
    out
}

/// One element of tag `tag` at the start of `buf`: (contents, what follows).
pub fn tlv(buf: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    match any_tlv_rest(buf)? {
        (t, body, rest) if t == tag => Some((body, rest)),
        _ => None,
    }
}

fn any_tlv(buf: &[u8]) -> Option<(u8, &[u8])> {
    any_tlv_rest(buf).map(|(t, b, _)| (t, b))
}

fn any_tlv_rest(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = buf.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        l if l < 0x80 => (usize::from(l), rest),
        0x81 => (usize::from(*rest.first()?), rest.get(1..)?),
        0x82 => (
            (usize::from(*rest.first()?) << 8) | usize::from(*rest.get(1)?),
            rest.get(2..)?,
        ),
        0x83 => (
            (usize::from(*rest.first()?) << 16)
                | (usize::from(*rest.get(1)?) << 8)
                | usize::from(*rest.get(2)?),
            rest.get(3..)?,
        ),
        _ => return None,
    };
    Some((tag, rest.get(..len)?, rest.get(len..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ec_and_rsa_spki() {
        // A P-256 SPKI: SEQUENCE { SEQUENCE { ecPublicKey, prime256v1 }, BIT STRING 04 … }.
        let mut spki = vec![0x30, 0x59, 0x30, 0x13, 0x06, 0x07];
        spki.extend_from_slice(OID_EC);
        spki.extend_from_slice(&[0x06, 0x08]);
        spki.extend_from_slice(OID_P256);
        spki.extend_from_slice(&[0x03, 0x42, 0x00, 0x04]);
        spki.extend_from_slice(&[7; 64]);
        match public_key(&spki) {
            Ok(PublicKey::P256(k)) => assert_eq!(k.len(), 65),
            other => panic!("{other:?}"),
        }
        let mut rsa = vec![0x30, 0x12, 0x30, 0x0d, 0x06, 0x09];
        rsa.extend_from_slice(OID_RSA);
        rsa.extend_from_slice(&[0x05, 0x00, 0x03, 0x01, 0x00]);
        assert_eq!(public_key(&rsa), Ok(PublicKey::Rsa(vec![])));
    }

    #[test]
    fn malformed_keys_are_errors_not_panics() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x05, 0x30],
            &[0x30, 0x82, 0xff, 0xff, 0x00],
        ] {
            assert!(public_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn subject_names_its_attributes() {
        // SET { SEQUENCE { CN, UTF8String "Signer" } } SET { SEQUENCE { O, PrintableString "Acme" } }
        let name = [
            0x31, 0x0f, 0x30, 0x0d, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x06, b'S', b'i', b'g',
            b'n', b'e', b'r', 0x31, 0x0d, 0x30, 0x0b, 0x06, 0x03, 0x55, 0x04, 0x0a, 0x13, 0x04,
            b'A', b'c', b'm', b'e',
        ];
        assert_eq!(subject_text(&name), "CN=Signer, O=Acme");
        assert_eq!(common_name(&name).as_deref(), Some("Signer"));
    }
}
