//! The device's signature trust, read from its files: the CA bundles
//! `<PV_SYSTEM_ETCDIR>/pantavisor/pvs/trust/<PV_SECUREBOOT_TRUSTSTORE>.crt` and
//! `<…>/<PV_SECUREBOOT_OEM_TRUSTSTORE>.crt` (PEM, any number of certificates), the key
//! `<…>/pub.pem` (PEM SubjectPublicKeyInfo) and `PV_OEM_NAME`; and the configured mode.
//!
//! Owns reading those files into a [`Trust`] for the pure verifier. A missing file is an empty
//! store (logged), never an error that stops the device: with an empty store every signed
//! revision is refused in lenient and strict, which is the safe side. Files are read with a
//! size cap, so a huge file cannot exhaust memory.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::sig::{DEFAULT_MODE, Mode, Trust};

/// Largest trust file read (a bundle of a few hundred certificates fits).
const MAX_TRUST_FILE: u64 = 1024 * 1024;

/// `<PV_SYSTEM_ETCDIR>/pantavisor/pvs/trust`.
pub fn trust_dir(config: &Config) -> PathBuf {
    let etc = config
        .get("PV_SYSTEM_ETCDIR")
        .filter(|s| !s.is_empty())
        .unwrap_or("/etc");
    Path::new(etc).join("pantavisor/pvs/trust")
}

/// The configured `PV_SECUREBOOT_MODE` (the configuration has already refused an unknown
/// word, and a checking mode in a build without the verifier).
pub fn mode_of(config: &Config) -> Mode {
    config
        .get("PV_SECUREBOOT_MODE")
        .and_then(Mode::parse)
        .unwrap_or(DEFAULT_MODE)
}

/// Reads the device's trust stores and `pub.pem`. Never fails: what cannot be read is left
/// out, with a warning naming the file.
pub fn load_trust(config: &Config) -> Trust {
    let dir = trust_dir(config);
    let store = |key: &str, default: &str| {
        let name = config.get(key).filter(|s| !s.is_empty()).unwrap_or(default);
        let path = dir.join(format!("{name}.crt"));
        match read_certificates(&path) {
            Ok(certs) => {
                log::info!(
                    "secureboot: {} certificates in {}",
                    certs.len(),
                    path.display()
                );
                certs
            }
            Err(e) => {
                log::warn!(
                    "secureboot: trust store {}: {e}; it is empty",
                    path.display()
                );
                Vec::new()
            }
        }
    };
    let ca = store("PV_SECUREBOOT_TRUSTSTORE", "ca-certificates");
    let oem_ca = store("PV_SECUREBOOT_OEM_TRUSTSTORE", "ca-oem-certificates");
    let pub_path = dir.join("pub.pem");
    let pub_key = match read_public_key(&pub_path) {
        Ok(k) => Some(k),
        Err(e) => {
            // Most boards sign with x5c and have no pub.pem: not worth a warning.
            log::info!("secureboot: {}: {e}", pub_path.display());
            None
        }
    };
    Trust {
        ca,
        oem_ca,
        oem_name: config
            .get("PV_OEM_NAME")
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        pub_key,
    }
}

/// Every certificate (DER) of a PEM file; other PEM sections are skipped.
pub fn read_certificates(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let text = read_capped(path)?;
    pem::certificates(&text)
}

/// The first `PUBLIC KEY` (SubjectPublicKeyInfo DER) of a PEM file.
pub fn read_public_key(path: &Path) -> Result<Vec<u8>, String> {
    let text = read_capped(path)?;
    pem::public_key(&text)
}

fn read_capped(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        _ => e.to_string(),
    })?;
    if meta.len() > MAX_TRUST_FILE {
        return Err(format!("larger than {MAX_TRUST_FILE} bytes"));
    }
    std::fs::read(path).map_err(|e| e.to_string())
}

#[cfg(feature = "sig")]
mod pem {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, SubjectPublicKeyInfoDer};

    pub fn certificates(text: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        let mut out = Vec::new();
        for cert in CertificateDer::pem_slice_iter(text) {
            out.push(cert.map_err(|e| format!("not PEM: {e}"))?.to_vec());
        }
        if out.is_empty() {
            return Err("holds no CERTIFICATE".into());
        }
        Ok(out)
    }

    pub fn public_key(text: &[u8]) -> Result<Vec<u8>, String> {
        SubjectPublicKeyInfoDer::from_pem_slice(text)
            .map(|k| k.to_vec())
            .map_err(|e| format!("holds no PUBLIC KEY ({e})"))
    }
}

/// A build without the verifier reads no key material (nothing would use it).
#[cfg(not(feature = "sig"))]
mod pem {
    pub fn certificates(_: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        Err(crate::sig::UNAVAILABLE.into())
    }

    pub fn public_key(_: &[u8]) -> Result<Vec<u8>, String> {
        Err(crate::sig::UNAVAILABLE.into())
    }
}

#[cfg(all(test, feature = "sig"))]
mod tests {
    use super::*;
    use crate::config::LoadOptions;

    fn config(etc: &Path, extra: &[(&str, &str)]) -> Config {
        let mut sets = vec![(
            "PV_SYSTEM_ETCDIR".to_string(),
            etc.to_string_lossy().into_owned(),
        )];
        sets.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Config::load(&LoadOptions {
            sets,
            ..LoadOptions::default()
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn reads_both_stores_pub_pem_and_the_oem_name() {
        let etc = std::env::temp_dir().join(format!("tern-trust-{}", std::process::id()));
        let dir = etc.join("pantavisor/pvs/trust");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let cert = rcgen::CertificateParams::new(vec!["x".to_string()])
            .and_then(|p| p.self_signed(&key))
            .unwrap_or_else(|e| panic!("{e}"));
        let bundle = format!("{}junk between\n{}", cert.pem(), cert.pem());
        std::fs::write(dir.join("ca-certificates.crt"), bundle).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("oem.crt"), cert.pem()).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("pub.pem"), key.public_key_pem()).unwrap_or_else(|e| panic!("{e}"));

        let c = config(
            &etc,
            &[
                ("PV_SECUREBOOT_OEM_TRUSTSTORE", "oem"),
                ("PV_OEM_NAME", "acme"),
                ("PV_SECUREBOOT_MODE", "strict"),
            ],
        );
        let t = load_trust(&c);
        assert_eq!(t.ca, vec![cert.der().to_vec(), cert.der().to_vec()]);
        assert_eq!(t.oem_ca, vec![cert.der().to_vec()]);
        assert_eq!(t.oem_name.as_deref(), Some("acme"));
        assert_eq!(t.pub_key, Some(key.public_key_der()));
        assert_eq!(mode_of(&c), Mode::Strict);
        let _ = std::fs::remove_dir_all(&etc);
    }

    #[test]
    fn missing_files_are_empty_stores() {
        let c = config(Path::new("/nonexistent/etc"), &[]);
        let t = load_trust(&c);
        assert!(t.ca.is_empty() && t.oem_ca.is_empty() && t.pub_key.is_none());
        assert_eq!(t.oem_name, None);
        assert_eq!(mode_of(&c), Mode::Lenient, "Pantavisor's default");
        assert_eq!(
            trust_dir(&c),
            Path::new("/nonexistent/etc/pantavisor/pvs/trust")
        );
    }
}
