//! The hub client's TLS configuration: which CAs are trusted, how certificates are judged, and
//! the clock they are judged by.
//!
//! Owns the rustls `ClientConfig` (ring provider). It must never skip verification of the
//! server certificate or its host name unless `insecure` was configured, and never judge a
//! certificate at a time before the binary was built (a board without RTC boots in 1970).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use log::{info, warn};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::time_provider::TimeProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Build the client configuration: every PEM file of `certs_dir` (a missing directory trusts
/// nothing) plus `extra_ca`, or in `insecure` mode a verifier that accepts any certificate.
/// Reads the CA files once, at start-up.
pub fn client_config(
    certs_dir: &Path,
    extra_ca: Option<&Path>,
    insecure: bool,
) -> Result<Arc<ClientConfig>, String> {
    // ring is the provider the build carries (aws-lc-rs is too big for the boards); rustls
    // 0.23.48 deprecates it only for lacking post-quantum key exchange.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let time: Arc<dyn TimeProvider> = Arc::new(FloorTime::new(crate::clock_floor::build_unix()));
    let builder = ClientConfig::builder_with_details(provider.clone(), time)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS protocol versions: {e}"))?;
    let config = if insecure {
        let verifier = Arc::new(AcceptAnything {
            algorithms: provider.signature_verification_algorithms,
        });
        builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth()
    } else {
        builder
            .with_root_certificates(trusted_roots(certs_dir, extra_ca)?)
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

fn trusted_roots(certs_dir: &Path, extra_ca: Option<&Path>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let mut files = Vec::new();
    match std::fs::read_dir(certs_dir) {
        Ok(entries) => {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| !t.is_dir()) {
                    files.push(entry.path());
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            warn!("hub: CA directory {} does not exist", certs_dir.display())
        }
        Err(e) => return Err(format!("reading {}: {e}", certs_dir.display())),
    }
    files.sort();
    for file in &files {
        add_pem_file(&mut roots, file);
    }
    if let Some(extra) = extra_ca
        && add_pem_file(&mut roots, extra) == 0
    {
        return Err(format!("no CA certificate in {}", extra.display()));
    }
    if roots.is_empty() {
        warn!("hub: no trusted CA certificates; every hub certificate will be refused");
    }
    Ok(roots)
}

/// Add every certificate of a PEM file; other files are skipped with a warning.
fn add_pem_file(roots: &mut RootCertStore, file: &Path) -> usize {
    let certs = match CertificateDer::pem_file_iter(file) {
        Ok(iter) => iter.flatten().collect::<Vec<_>>(),
        Err(e) => {
            warn!("hub: skipping CA file {}: {e}", file.display());
            return 0;
        }
    };
    let (added, ignored) = roots.add_parsable_certificates(certs);
    if ignored > 0 || added == 0 {
        warn!(
            "hub: CA file {}: {added} certificates trusted, {ignored} unusable",
            file.display()
        );
    }
    added
}

/// The wall clock, but never earlier than the build: judging a certificate in 1970 would refuse
/// every one of them, and the device could not reach the hub to learn the time.
#[derive(Debug)]
struct FloorTime {
    floor: u64,
    told: AtomicBool,
}

impl FloorTime {
    fn new(floor: u64) -> FloorTime {
        FloorTime {
            floor,
            told: AtomicBool::new(false),
        }
    }
}

impl TimeProvider for FloorTime {
    fn current_time(&self) -> Option<UnixTime> {
        let now = crate::clock_floor::system_now();
        if now >= self.floor {
            return Some(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                now,
            )));
        }
        if !self.told.swap(true, Ordering::Relaxed) {
            info!(
                "hub: the clock ({now}) is before the build ({}); TLS uses the build time",
                self.floor
            );
        }
        Some(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            self.floor,
        )))
    }
}

/// `insecure` mode: any certificate for any name. Handshake signatures are still checked
/// against the presented certificate (so the peer holds its key), which costs nothing.
#[derive(Debug)]
struct AcceptAnything {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_never_goes_below_the_floor() {
        let far = 4_000_000_000;
        let t = FloorTime::new(far);
        assert_eq!(t.current_time().map(|t| t.as_secs()), Some(far));
        let t = FloorTime::new(0);
        assert!(
            t.current_time()
                .is_some_and(|t| t.as_secs() > 1_600_000_000)
        );
    }

    #[test]
    fn missing_certs_dir_is_not_an_error() {
        assert!(client_config(Path::new("/nonexistent/certs"), None, false).is_ok());
        assert!(
            client_config(
                Path::new("/nonexistent/certs"),
                Some(Path::new("/nonexistent/ca.pem")),
                false
            )
            .is_err()
        );
    }
}
