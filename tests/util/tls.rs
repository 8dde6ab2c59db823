//! TLS for the tests: a self-signed certificate made in the test (for `localhost` and
//! 127.0.0.1; no key file lives in the repository), a server started with it, and clients
//! that trust it.

use super::server::TestServer;
use clusterchat_proto::client::{Client, ClientError};
use clusterchat_proto::tls::{client_config, roots_from_pem, server_name};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;

/// A certificate and its key as PEM files in a temporary folder (removed on drop).
pub struct TestCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestCert {
    /// A fresh self-signed certificate for `localhost` and 127.0.0.1.
    pub fn new() -> TestCert {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("generate a certificate");
        let dir = tempfile::tempdir().expect("temp dir");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, made.cert.pem()).expect("write cert.pem");
        std::fs::write(&key, made.signing_key.serialize_pem()).expect("write key.pem");
        TestCert {
            cert,
            key,
            _dir: dir,
        }
    }

    /// The server's flags for this certificate.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
        ]
    }

    /// A client config that trusts this certificate (and nothing else).
    pub fn client_config(&self) -> Arc<clusterchat_proto::tls::rustls::ClientConfig> {
        client_config(roots_from_pem(&self.cert).expect("roots from cert.pem"))
    }
}

/// A server with `cert` and `extra` flags.
pub fn server(cert: &TestCert, extra: &[&str]) -> TestServer {
    let mut args: Vec<String> = cert.args();
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    TestServer::builder().args(&args).start()
}

/// A TLS client of the server at `addr`, verifying the certificate for 127.0.0.1.
pub fn client(cert: &TestCert, addr: SocketAddr) -> Client {
    try_client(cert, addr).expect("TLS connect")
}

/// Like [`client`], but says why it could not connect.
pub fn try_client(cert: &TestCert, addr: SocketAddr) -> Result<Client, ClientError> {
    let name = server_name("127.0.0.1").expect("name");
    Client::connect_tls(addr, cert.client_config(), name)
}

/// A TLS client over an already connected socket (one with a small receive buffer, say).
pub fn client_over(cert: &TestCert, socket: TcpStream) -> Client {
    let name = server_name("localhost").expect("name");
    Client::from_stream_tls(socket, cert.client_config(), name).expect("TLS handshake")
}

/// Registers `name` (password `pw-<name>`) over TLS, logs in on the same connection, and
/// returns the client and the id.
pub fn user(cert: &TestCert, addr: SocketAddr, name: &str) -> (Client, i64) {
    let mut c = client(cert, addr);
    let pw = format!("pw-{name}");
    let id = c.register(name, &pw).expect("register over TLS");
    c.login(id, &pw).expect("login over TLS");
    (c, id)
}
