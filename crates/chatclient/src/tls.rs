//! `--tls`, `--ca`, `--tls-name`: the roots to trust and the name to verify.
//!
//! Without `--ca` the client trusts the operating system's roots (rustls-native-certs: what
//! the system's other tools trust, a private CA an administrator installed included), not a
//! list compiled into the binary: a chat server is as likely to run with an in-house CA as
//! with a public one.

use clusterchat_proto::tls::rustls::pki_types::ServerName;
use clusterchat_proto::tls::rustls::{ClientConfig, RootCertStore};
use clusterchat_proto::tls::{client_config, roots_from_pem, server_name};
use std::path::Path;
use std::sync::Arc;

/// What `Client::connect_tls` needs.
pub struct Tls {
    /// Verifies the server against the chosen roots.
    pub config: Arc<ClientConfig>,
    /// The name the certificate must carry.
    pub name: ServerName<'static>,
}

/// Reads the roots (`ca`, or the system's) and the name (`name`, or `host`). `Err` is the one
/// line to show.
pub fn setup(host: &str, ca: Option<&Path>, name: Option<&str>) -> Result<Tls, String> {
    let roots = match ca {
        Some(path) => roots_from_pem(path).map_err(|e| e.to_string())?,
        None => system_roots()?,
    };
    let name = server_name(name.unwrap_or(host)).map_err(|e| e.to_string())?;
    Ok(Tls {
        config: client_config(roots),
        name,
    })
}

/// The operating system's trusted roots; an error when none can be loaded (then `--ca` is
/// the way).
fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        return Err(format!(
            "no trusted root certificates found on this system{why}; name one with --ca PEM"
        ));
    }
    Ok(roots)
}
