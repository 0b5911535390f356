//! Server URL rules and the rustls connector.

use super::SessionError;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use tokio_tungstenite::Connector;

/// `wss://` anywhere; plain `ws://` only to loopback unless `allow_insecure`.
pub(crate) fn check_url(server: &str, allow_insecure: bool) -> Result<url::Url, SessionError> {
    let bad = |message: &str| SessionError::BadUrl {
        url: server.to_string(),
        message: message.to_string(),
    };
    let url = url::Url::parse(server).map_err(|e| bad(&e.to_string()))?;
    let host = url.host_str().ok_or_else(|| bad("has no host"))?;
    match url.scheme() {
        "wss" => Ok(url),
        "ws" if allow_insecure || is_loopback(host) => Ok(url),
        "ws" => Err(bad(
            "plain ws:// is only allowed to loopback; use wss:// or set allow_insecure = true",
        )),
        other => Err(bad(&format!("scheme {other}:// is not ws:// or wss://"))),
    }
}

/// Whether `host` (a name, an IPv4 or a bracketed IPv6 address) is this machine.
pub(crate) fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// Why the TLS client settings cannot be made; each names the `ca_file` at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The file cannot be read, or is not PEM.
    #[error("ca_file {}: {source}", path.display())]
    Pem {
        path: std::path::PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The file holds no certificate.
    #[error("ca_file {} holds no PEM certificate", path.display())]
    Empty { path: std::path::PathBuf },
    /// A certificate of the file is refused as a root.
    #[error("ca_file {}: {source}", path.display())]
    Rejected {
        path: std::path::PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// The TLS library refuses its own defaults (a build without TLS 1.2 or 1.3).
    #[error(transparent)]
    Protocols(rustls::Error),
}

/// A rustls client configuration (ring) trusting the web PKI roots plus the certificates in
/// `ca_file`; the error names the file.
pub(crate) fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, TlsSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let pem = |source| TlsSetupError::Pem {
            path: path.to_path_buf(),
            source,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(pem)?
            .collect::<Result<_, _>>()
            .map_err(pem)?;
        if certs.is_empty() {
            return Err(TlsSetupError::Empty {
                path: path.to_path_buf(),
            });
        }
        for cert in certs {
            roots.add(cert).map_err(|source| TlsSetupError::Rejected {
                path: path.to_path_buf(),
                source,
            })?;
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(TlsSetupError::Protocols)?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// A rustls connector trusting the web PKI roots plus the certificates in `ca_file`.
pub(crate) fn connector(ca_file: Option<&Path>) -> Result<Connector, SessionError> {
    let config = client_config(ca_file).map_err(|e| SessionError::Tls(e.to_string()))?;
    Ok(Connector::Rustls(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_rules() {
        assert!(check_url("wss://zello.io/ws", false).is_ok());
        assert!(check_url("wss://zellowork.io/ws/acme", false).is_ok());
        assert!(check_url("ws://127.0.0.1:8800/ws", false).is_ok());
        assert!(check_url("ws://127.1.2.3:8800/ws", false).is_ok());
        assert!(check_url("ws://localhost:8800/ws", false).is_ok());
        assert!(check_url("ws://[::1]:8800/ws", false).is_ok());
        let e = check_url("ws://10.0.0.5/ws", false).unwrap_err();
        assert!(e.to_string().contains("allow_insecure"), "{e}");
        assert!(check_url("ws://10.0.0.5/ws", true).is_ok());
        assert!(check_url("http://zello.io/ws", true).is_err());
        assert!(check_url("zello.io/ws", true).is_err());
    }

    #[test]
    fn ca_file_errors_are_clear() {
        let e = connector(Some(Path::new("/nonexistent/ca.pem")))
            .err()
            .unwrap();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        let dir = std::env::temp_dir().join(format!("zg-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("empty.pem");
        std::fs::write(&f, "not a certificate\n").unwrap();
        let e = connector(Some(&f)).err().unwrap();
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
        assert!(connector(None).is_ok());
    }
}
