//! TLS with rustls, for both drivers and both roles: the same `WebSocket` API as over
//! plain TCP.
//!
//! - Server: wrap each accepted `TcpStream` with a [`tokio_rustls::TlsAcceptor`] (async) or
//!   a [`rustls::StreamOwned`] of a [`rustls::ServerConnection`] (blocking), then `accept`
//!   as usual. [`server_config_from_pem`] builds the configuration from PEM files.
//! - Client: `connect_url` (async) and `blocking::connect` open `wss://` URLs themselves,
//!   with the roots of [`Options::tls`](crate::Options::tls) (default: the Mozilla roots
//!   of `webpki-roots`); [`client_config_with_roots`] trusts certificates of your own.

use crate::error::{Error, Result};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io;
use std::sync::Arc;

pub use rustls;
pub use tokio_rustls;

fn tls_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{what}: {e}"),
    ))
}

/// A server configuration from a PEM certificate chain and a PEM private key.
pub fn server_config_from_pem(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>> {
    let certs = CertificateDer::pem_slice_iter(cert_chain_pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls_error("certificate PEM", e))?;
    if certs.is_empty() {
        return Err(tls_error("certificate PEM", "no certificate found"));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| tls_error("key PEM", e))?;
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls_error("server certificate", e))?;
    Ok(Arc::new(config))
}

/// A server configuration from a certificate chain file and a key file (PEM).
pub fn server_config_from_files(
    cert_path: impl AsRef<std::path::Path>,
    key_path: impl AsRef<std::path::Path>,
) -> Result<Arc<ServerConfig>> {
    let cert = std::fs::read(cert_path)?;
    let key = std::fs::read(key_path)?;
    server_config_from_pem(&cert, &key)
}

/// A client configuration trusting the Mozilla roots (`webpki-roots`).
pub fn default_client_config() -> Arc<ClientConfig> {
    let roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    Arc::new(
        ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A client configuration trusting only the PEM certificates given (a private CA, or a
/// self-signed server certificate).
pub fn client_config_with_roots(roots_pem: &[u8]) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(roots_pem) {
        let cert = cert.map_err(|e| tls_error("root certificate PEM", e))?;
        roots
            .add(cert)
            .map_err(|e| tls_error("root certificate", e))?;
    }
    if roots.is_empty() {
        return Err(tls_error("root certificate PEM", "no certificate found"));
    }
    Ok(Arc::new(
        ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// The server name to verify for `host`.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(host.to_string()).map_err(|e| tls_error("server name", e))
}
