//! TLS for registries: rustls with the `ring` provider, the system's roots plus the CA
//! files configured for a registry, or no verification for registries marked `insecure`.

use std::sync::{Arc, OnceLock};

use super::config::Tls;
use super::error::{RegistryError, Result};

/// The system's root certificates, read once.
fn native_roots() -> &'static [rustls_pki_types::CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<rustls_pki_types::CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(crate) fn tls_config(tls: &Tls) -> Result<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let config = match tls {
        Tls::Unverified => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
            .with_no_client_auth(),
        Tls::None | Tls::Verified(_) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(native_roots().iter().cloned());
            if let Tls::Verified(files) = tls {
                for path in files {
                    use rustls_pki_types::pem::PemObject;
                    let invalid = |reason: String| RegistryError::Config {
                        path: path.clone(),
                        reason,
                    };
                    let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                        .map_err(|err| invalid(format!("cannot read the CA file: {err}")))?;
                    let mut count = 0;
                    for cert in certs {
                        let cert = cert.map_err(|err| invalid(format!("bad PEM: {err}")))?;
                        roots
                            .add(cert)
                            .map_err(|err| invalid(format!("unusable certificate: {err}")))?;
                        count += 1;
                    }
                    if count == 0 {
                        return Err(invalid("no certificate in the file".to_owned()));
                    }
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(config)
}

/// Accepts any certificate (for registries configured `insecure`), but still checks
/// that the handshake is signed by the certificate's key.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
