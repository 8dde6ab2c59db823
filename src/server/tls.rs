//! The chat port's TLS config (`--tls-cert`, `--tls-key`): PEM files read once at start into
//! the rustls config that every TLS listener of the server shares (`ServerOptions::tls`).

use clusterchat_net::rustls::crypto::ring;
use clusterchat_net::rustls::pki_types::pem::{self, PemObject};
use clusterchat_net::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use clusterchat_net::rustls::ServerConfig;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the TLS config could not be built; each says which file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read TLS {what} {path}: {source}")]
    Read {
        /// "certificate" or "key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds no usable PEM section of the kind needed, or bad PEM.
    #[error("TLS {what} {path}: {why}")]
    Pem {
        /// "certificate" or "key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// rustls refused the pair (a key that does not match the certificate, say).
    #[error("TLS certificate {cert} with key {key}: {source}")]
    Rejected {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        source: clusterchat_net::rustls::Error,
    },
}

/// Reads the certificate chain (leaf first) and its private key (PKCS#8, PKCS#1 or SEC1) and
/// builds a server config: TLS 1.2 and 1.3 with rustls' safe defaults and the ring provider,
/// no client certificates. Any thread; blocks on the file reads.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let pem_error = |what, path: &Path| {
        let path = path.to_path_buf();
        move |e: pem::Error| TlsError::Pem {
            what,
            path,
            why: match e {
                pem::Error::NoItemsFound => format!("no PEM {what} found in the file"),
                e => e.to_string(),
            },
        }
    };
    let cert_pem = read(cert, "certificate")?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error("certificate", cert))?;
    if chain.is_empty() {
        return Err(pem_error("certificate", cert)(pem::Error::NoItemsFound));
    }
    let key_pem = read(key, "key")?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(pem_error("key", key))?;
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, private))
        .map_err(|source| TlsError::Rejected {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            source,
        })?;
    Ok(Arc::new(config))
}

/// A whole PEM file.
fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}
