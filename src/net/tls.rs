//! Server URL rules and the rustls client configuration, shared by the Zello session and the
//! Zello Work API client.

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_tungstenite::Connector;

/// A server URL the gateway will not use, and why (fix the configuration).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("server URL {url:?}: {message}")]
pub struct UrlError {
    pub url: String,
    pub message: String,
}

/// The TLS set-up failed (fix `ca_file`).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("ca_file {}: {source}", path.display())]
    CaFileUnreadable {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("ca_file {} holds no PEM certificate", path.display())]
    CaFileEmpty { path: PathBuf },
    #[error("ca_file {}: {source}", path.display())]
    BadCertificate {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("TLS set-up: {0}")]
    Setup(#[source] rustls::Error),
}

/// `wss://` anywhere; plain `ws://` only to loopback unless `allow_insecure`.
pub fn check_url(server: &str, allow_insecure: bool) -> Result<url::Url, UrlError> {
    let bad = |message: &str| UrlError {
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
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// A rustls client configuration (ring) trusting the web PKI roots plus the certificates in
/// `ca_file`; the error names the file.
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let unreadable = |source| TlsError::CaFileUnreadable {
            path: path.to_path_buf(),
            source,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(unreadable)?
            .collect::<Result<_, _>>()
            .map_err(unreadable)?;
        if certs.is_empty() {
            return Err(TlsError::CaFileEmpty {
                path: path.to_path_buf(),
            });
        }
        for cert in certs {
            roots.add(cert).map_err(|source| TlsError::BadCertificate {
                path: path.to_path_buf(),
                source,
            })?;
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(TlsError::Setup)?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// A WebSocket connector trusting the web PKI roots plus the certificates in `ca_file`.
pub fn connector(ca_file: Option<&Path>) -> Result<Connector, TlsError> {
    Ok(Connector::Rustls(Arc::new(client_config(ca_file)?)))
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
