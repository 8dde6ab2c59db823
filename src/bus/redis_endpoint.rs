//! Where the cluster's Redis is, and how every raw connection to it begins.
//!
//! The pooled connections (the liveness keys) go through the redis crate, which authenticates
//! and selects the database from the URL by itself. The subscriber and the publisher speak RESP
//! on plain sockets of their own; [`Endpoint::connect`] gives each of their (re)connections the
//! same start, in one round trip: `AUTH [user] password` when the URL has a password, `SELECT db`
//! when it names a database other than 0, `CLIENT SETNAME clusterchat:<node>:<role>` (so that
//! `CLIENT LIST` tells whose connection is which; a refusal of it is ignored) and a `PING` that
//! proves the connection may be used.
//!
//! The password never leaves this file: [`Endpoint::shown`] is the URL with it masked, and
//! every error names the server by that.

use super::BusError;
use redis::Value;
use std::io::{BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long the handshake's replies may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// No TCP connection, or it broke during the handshake.
    #[error("cannot reach Redis at {url}: {source}")]
    Unreachable {
        /// The URL, password masked.
        url: String,
        /// Why.
        source: std::io::Error,
    },
    /// `AUTH` was refused: a wrong password or user (WRONGPASS), or a password given to a
    /// Redis that has none.
    #[error("Redis at {url} refused authentication: {reply}")]
    AuthRefused {
        /// The URL, password masked.
        url: String,
        /// Redis's error reply.
        reply: String,
    },
    /// Redis wants a password and the URL has none (NOAUTH).
    #[error(
        "Redis at {url} requires authentication ({reply}): give the password in the URL, \
         redis://[USER]:PASSWORD@HOST:PORT"
    )]
    AuthRequired {
        /// The URL, password masked.
        url: String,
        /// Redis's error reply.
        reply: String,
    },
    /// Another step of the handshake was refused (SELECT of a database out of range, an ACL
    /// user without the right, ...).
    #[error("Redis at {url} refused {command}: {reply}")]
    Refused {
        /// The URL, password masked.
        url: String,
        /// The refused command.
        command: &'static str,
        /// Redis's error reply.
        reply: String,
    },
}

impl From<ConnectError> for BusError {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Unreachable { .. } => BusError::Unavailable(e.to_string()),
            _ => BusError::Refused(e.to_string()),
        }
    }
}

/// The Redis a `--redis` URL names: address, credentials, database. Deliberately not `Debug`:
/// it holds the password.
pub(crate) struct Endpoint {
    addr: String,
    username: Option<String>,
    password: Option<String>,
    db: i64,
    shown: String,
    /// The node whose connections these are (names them), if known.
    node: Option<String>,
}

impl Endpoint {
    /// Reads `url` (`redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`); also returns the redis
    /// crate's client for the pool.
    pub(crate) fn parse(url: &str) -> Result<(Endpoint, redis::Client), BusError> {
        let client = redis::Client::open(url)
            .map_err(|e| BusError::BadUrl(format!("{}: {e}", shown_unparsed(url))))?;
        let info = client.get_connection_info();
        let settings = info.redis_settings();
        let username = settings.username().map(str::to_string);
        let password = settings.password().map(str::to_string);
        let db = settings.db();
        let addr = match info.addr() {
            redis::ConnectionAddr::Tcp(host, port) => match host.parse::<std::net::Ipv6Addr>() {
                Ok(_) => format!("[{host}]:{port}"),
                Err(_) => format!("{host}:{port}"),
            },
            other => {
                return Err(BusError::BadUrl(format!(
                    "{}: unsupported address {other}",
                    shown_unparsed(url)
                )))
            }
        };
        let credentials = match (&username, &password) {
            (Some(user), Some(_)) => format!("{user}:***@"),
            (None, Some(_)) => ":***@".to_string(),
            (Some(user), None) => format!("{user}@"),
            (None, None) => String::new(),
        };
        let database = if db == 0 {
            String::new()
        } else {
            format!("/{db}")
        };
        let shown = format!("redis://{credentials}{addr}{database}");
        let endpoint = Endpoint {
            addr,
            username,
            password,
            db,
            shown,
            node: None,
        };
        Ok((endpoint, client))
    }

    /// The same endpoint for node `node`: its connections are named after it.
    pub(crate) fn for_node(mut self, node: &str) -> Endpoint {
        self.node = Some(node.to_string());
        self
    }

    /// The URL for logs and errors: `redis://user:***@host:port/db`.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// Opens a connection (TCP_NODELAY, no read or write timeout) and runs the handshake: AUTH,
    /// SELECT, CLIENT SETNAME (`role`: what the connection is for), PING. `connect_timeout`
    /// bounds the TCP connect, 2 s the replies.
    pub(crate) fn connect(
        &self,
        connect_timeout: Duration,
        role: &str,
    ) -> Result<TcpStream, ConnectError> {
        let unreachable = |source| ConnectError::Unreachable {
            url: self.shown.clone(),
            source,
        };
        let sock_addr = self
            .addr
            .to_socket_addrs()
            .map_err(unreachable)?
            .next()
            .ok_or_else(|| {
                unreachable(std::io::Error::other(format!(
                    "cannot resolve {}",
                    self.addr
                )))
            })?;
        let stream =
            TcpStream::connect_timeout(&sock_addr, connect_timeout).map_err(unreachable)?;
        stream.set_nodelay(true).map_err(unreachable)?;
        stream
            .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
            .map_err(unreachable)?;
        stream
            .set_write_timeout(Some(HANDSHAKE_TIMEOUT))
            .map_err(unreachable)?;
        self.handshake(&stream, role)?;
        stream.set_read_timeout(None).map_err(unreachable)?;
        stream.set_write_timeout(None).map_err(unreachable)?;
        Ok(stream)
    }

    /// Sends the handshake in one write and reads its replies; the first refusal wins.
    fn handshake(&self, stream: &TcpStream, role: &str) -> Result<(), ConnectError> {
        let mut steps: Vec<(&'static str, Vec<u8>)> = Vec::with_capacity(4);
        if let Some(password) = &self.password {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = &self.username {
                auth.arg(user);
            }
            steps.push(("AUTH", auth.arg(password).get_packed_command()));
        }
        if self.db != 0 {
            steps.push((
                "SELECT",
                redis::cmd("SELECT").arg(self.db).get_packed_command(),
            ));
        }
        if let Some(node) = &self.node {
            let name = client_name(node, role);
            let setname = redis::cmd("CLIENT")
                .arg("SETNAME")
                .arg(name)
                .get_packed_command();
            steps.push(("CLIENT SETNAME", setname));
        }
        steps.push(("PING", redis::cmd("PING").get_packed_command()));
        let packed: Vec<u8> = steps.iter().flat_map(|(_, c)| c.iter().copied()).collect();
        let broken = |source| ConnectError::Unreachable {
            url: self.shown.clone(),
            source,
        };
        let mut writer = stream;
        writer.write_all(&packed).map_err(broken)?;
        let mut reader = BufReader::new(stream);
        let mut parser = redis::Parser::new();
        let mut refusal = None;
        for (command, _) in &steps {
            match parser.parse_value(&mut reader) {
                // A name is a convenience: an ACL user may lack the right to set it.
                Ok(Value::ServerError(e))
                    if *command == "CLIENT SETNAME" && e.code() != "NOAUTH" => {}
                Ok(Value::ServerError(e)) => {
                    let reply = match e.details() {
                        Some(details) => format!("{} {details}", e.code()),
                        None => e.code().to_string(),
                    };
                    refusal.get_or_insert((*command, e.code() == "NOAUTH", reply));
                }
                Ok(_) => {}
                Err(e) => return Err(broken(std::io::Error::other(e.to_string()))),
            }
        }
        let Some((command, noauth, reply)) = refusal else {
            return Ok(());
        };
        let url = self.shown.clone();
        Err(match command {
            "AUTH" => ConnectError::AuthRefused { url, reply },
            _ if noauth => ConnectError::AuthRequired { url, reply },
            _ => ConnectError::Refused {
                url,
                command,
                reply,
            },
        })
    }
}

/// `clusterchat:<node>:<role>`, with anything Redis refuses in a name (spaces, control
/// characters) replaced by `_`.
fn client_name(node: &str, role: &str) -> String {
    format!("clusterchat:{node}:{role}")
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect()
}

/// A URL that did not parse, for an error message: masked like the database's, and not shown
/// at all if it has an `@` that masking did not catch (a password with a `/` in it, say).
fn shown_unparsed(url: &str) -> String {
    let masked = crate::store::mask_password(url);
    if masked == url && url.contains('@') {
        "(not shown: it may hold a password)".to_string()
    } else {
        masked
    }
}

#[cfg(test)]
mod tests {
    use super::{client_name, Endpoint};

    #[test]
    fn a_client_name_has_no_spaces() {
        assert_eq!(
            client_name("n 1\n", "publisher"),
            "clusterchat:n_1_:publisher"
        );
    }

    fn shown(url: &str) -> String {
        match Endpoint::parse(url) {
            Ok((e, _)) => e.shown().to_string(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_shown_url_never_holds_the_password() {
        assert_eq!(shown("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(shown("redis://h"), "redis://h:6379");
        assert_eq!(shown("redis://:s3cret@h:1/2"), "redis://:***@h:1/2");
        assert_eq!(shown("redis://chat:s3cret@h:1"), "redis://chat:***@h:1");
        assert_eq!(shown("redis://chat@h:1"), "redis://chat@h:1");
        assert!(!shown("redis://:s3cret@h:1/notadb").contains("s3cret"));
        assert!(!shown("redis://:s3/cret@h:1").contains("cret"));
    }
}
