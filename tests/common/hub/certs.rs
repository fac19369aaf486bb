//! The test hub's certificates, made fresh at every start: a test CA, the server
//! certificate it signs (for DNS `localhost` and IP 127.0.0.1, or for a wrong name, or
//! already expired), and a second CA that signs nothing the hub serves. Each CA's PEM is
//! written to a directory of its own, so a device pointed at `certs_dir()` trusts exactly
//! the hub's CA.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose,
    date_time_ymd,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::super::TempDir;

/// What the server certificate claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertKind {
    /// `localhost` and 127.0.0.1, valid now.
    Good,
    /// Only `wrong.invalid`: a client checking the name for `localhost` must refuse it.
    WrongName,
    /// `localhost` and 127.0.0.1, but valid only in the year 2000.
    Expired,
}

pub struct Certs {
    /// Holds `ca.pem`, the CA that signed the server certificate, and nothing else.
    pub dir: TempDir,
    /// Holds `ca.pem` of a CA the hub never uses.
    pub untrusted_dir: TempDir,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Certs {
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
    pub fn untrusted_ca_path(&self) -> PathBuf {
        self.untrusted_dir.path().join("ca.pem")
    }
}

fn make_ca(common_name: &str) -> (Certificate, KeyPair) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("self-sign CA");
    (cert, key)
}

/// Makes both CAs and the server certificate, and writes the CA PEMs.
pub fn generate(kind: CertKind) -> Certs {
    let (ca, ca_key) = make_ca("Tern test hub CA");
    let (untrusted, _) = make_ca("Tern untrusted CA");

    let names: Vec<String> = match kind {
        CertKind::WrongName => vec!["wrong.invalid".into()],
        _ => vec!["localhost".into(), "127.0.0.1".into()],
    };
    let mut params = CertificateParams::new(names).expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "Tern test hub");
    if kind == CertKind::Expired {
        params.not_before = date_time_ymd(2000, 1, 1);
        params.not_after = date_time_ymd(2000, 12, 31);
    }
    let key = KeyPair::generate().expect("server key");
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .expect("sign server cert");

    let dir = TempDir::new("hub-certs");
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write ca.pem");
    let untrusted_dir = TempDir::new("hub-untrusted");
    std::fs::write(untrusted_dir.path().join("ca.pem"), untrusted.pem()).expect("write ca.pem");

    Certs {
        dir,
        untrusted_dir,
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}
