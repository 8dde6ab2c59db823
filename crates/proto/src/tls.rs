//! Client-side TLS set-up: the trusted roots and the rustls client config that
//! [`Client::connect_tls`](crate::client::Client::connect_tls) takes.

pub use rustls;
use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::path::Path;
use std::sync::Arc;

/// Why a TLS client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The CA file could not be read.
    #[error("cannot read CA file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The CA file holds bad PEM, or no certificate rustls accepts as a root.
    #[error("CA file {path}: {why}")]
    Ca {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// Not a valid DNS name or IP address to verify the server's certificate against.
    #[error("{0:?} is not a host name or IP address a certificate can name")]
    Name(String),
}

/// The certificates of a PEM file (a CA, or the server's own self-signed certificate) as the
/// roots to trust. Errors: the file cannot be read, is not PEM, or holds no usable certificate.
pub fn roots_from_pem(path: &Path) -> Result<RootCertStore, TlsSetupError> {
    let shown = path.display().to_string();
    let pem = std::fs::read(path).map_err(|source| TlsSetupError::Read {
        path: shown.clone(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError::Ca {
            path: shown.clone(),
            why: e.to_string(),
        })?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsSetupError::Ca {
            path: shown,
            why: "no usable PEM certificate in the file".into(),
        });
    }
    Ok(roots)
}

/// A client config that verifies servers against `roots` (TLS 1.2 and 1.3, rustls' safe
/// defaults, the ring provider, no client certificate).
pub fn client_config(roots: RootCertStore) -> Arc<ClientConfig> {
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// The name to verify the server's certificate against (and to send as SNI, for a DNS name):
/// a DNS name or an IP address.
pub fn server_name(name: &str) -> Result<ServerName<'static>, TlsSetupError> {
    ServerName::try_from(name.to_string()).map_err(|_| TlsSetupError::Name(name.to_string()))
}
