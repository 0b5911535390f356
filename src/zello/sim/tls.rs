//! TLS for serving `wss://`.

use super::SimError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

fn read(path: &Path) -> Result<Vec<u8>, SimError> {
    std::fs::read(path).map_err(|source| SimError::TlsUnreadable {
        path: path.to_path_buf(),
        source,
    })
}

/// Builds a TLS server configuration from a PEM certificate chain and a PEM private key
/// (PKCS#8, PKCS#1 or SEC1), with the ring crypto provider and nothing installed globally.
pub fn load_tls(cert_pem: &Path, key_pem: &Path) -> Result<Arc<rustls::ServerConfig>, SimError> {
    let invalid = |path: &Path, message: String| SimError::TlsInvalid {
        path: path.to_path_buf(),
        message,
    };
    let cert_bytes = read(cert_pem)?;
    let certs = CertificateDer::pem_slice_iter(&cert_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            invalid(
                cert_pem,
                format!(
                    "not a PEM certificate ({e}); give a file with -----BEGIN CERTIFICATE-----"
                ),
            )
        })?;
    if certs.is_empty() {
        return Err(invalid(
            cert_pem,
            "holds no certificate; give a file with -----BEGIN CERTIFICATE-----".into(),
        ));
    }
    let key_bytes = read(key_pem)?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
        invalid(
            key_pem,
            format!(
                "no usable private key ({e}); give a PEM file with -----BEGIN PRIVATE KEY-----"
            ),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(cert_pem, format!("TLS setup failed: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            invalid(
                key_pem,
                format!("the key does not fit the certificate or is unsupported ({e}); give the key the certificate was made for"),
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
