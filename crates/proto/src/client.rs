//! A small blocking client for the wire protocol, used by `chatclient`, `chatbench` and the
//! tests: frames out, frames in, and typed helpers for the common requests.

use crate::clock;
use crate::codec::{Frames, Item, DEFAULT_MAX_FRAME};
use crate::request::{self, Request};
use crate::transport::{TlsStream, Transport};
use crate::{msgid, GroupId, UserId};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// What can go wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed.
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    /// The server closed the connection.
    #[error("the server closed the connection")]
    Closed,
    /// No reply arrived within the read timeout.
    #[error("timed out waiting for the server")]
    Timeout,
    /// The server sent something that is not a JSON object.
    #[error("bad frame from the server: {0}")]
    BadFrame(String),
    /// The server refused the request.
    #[error("server error {errno}: {errmsg}")]
    Refused {
        /// The reply's `errno`.
        errno: i64,
        /// The reply's `errmsg`.
        errmsg: String,
    },
}

/// Reads frames (JSON objects separated by NUL, newline or nothing) from any byte stream.
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
}

impl<R: Read> FrameReader<R> {
    /// Wraps a stream.
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            buf: Vec::with_capacity(4096),
        }
    }

    /// The next frame as JSON. Maps read timeouts to [`ClientError::Timeout`].
    pub fn next_value(&mut self) -> Result<Value, ClientError> {
        let bytes = self.next_bytes()?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadFrame(e.to_string()))
    }

    /// The next frame's raw bytes.
    pub fn next_bytes(&mut self) -> Result<Vec<u8>, ClientError> {
        loop {
            let mut frames = Frames::new(&self.buf, DEFAULT_MAX_FRAME * 16);
            let item = frames.next().map(|item| match item {
                Item::Frame { bytes, .. } => Ok(bytes.to_vec()),
                Item::Invalid(bad) => Err(ClientError::BadFrame(
                    String::from_utf8_lossy(bad).into_owned(),
                )),
                Item::TooLarge => Err(ClientError::BadFrame("frame too large".into())),
            });
            let consumed = frames.consumed();
            self.buf.drain(..consumed);
            if let Some(found) = item {
                return found;
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.inner.read(&mut chunk) {
                Ok(0) => return Err(ClientError::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if is_timeout(&e) => return Err(ClientError::Timeout),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A blocking connection to a chat server.
///
/// Frames that arrive while a helper waits for a particular reply (a chat message during a
/// request, say) are kept in order and handed out by [`Client::recv`] later: nothing is dropped.
pub struct Client {
    writer: Transport,
    reader: FrameReader<Transport>,
    backlog: VecDeque<Value>,
    terminator: &'static [u8],
    next_reqid: u64,
}

impl Client {
    /// Connects with a 10 s read timeout; frames are sent newline-terminated.
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(addr)?;
        Client::from_stream(stream)
    }

    /// Connects over TLS with a 10 s read timeout (the handshake included), verifying the
    /// server's certificate against `config`'s roots for `name` (see [`crate::tls`]). A
    /// certificate that does not verify, or a server that does not speak TLS, is
    /// [`ClientError::Io`] with rustls' reason.
    pub fn connect_tls(
        addr: impl ToSocketAddrs,
        config: Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(addr)?;
        Client::from_stream_tls(stream, config, name)
    }

    /// Runs the TLS handshake over an already connected stream (see
    /// [`connect_tls`](Self::connect_tls)).
    pub fn from_stream_tls(
        stream: TcpStream,
        config: Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> Result<Client, ClientError> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let tls = TlsStream::connect(stream, config, name).map_err(|e| match e {
            e if is_timeout(&e) => ClientError::Timeout,
            e => ClientError::Io(e),
        })?;
        Client::from_transport(Transport::Tls(tls))
    }

    /// Wraps an already connected stream.
    pub fn from_stream(stream: TcpStream) -> Result<Client, ClientError> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Client::from_transport(Transport::Plain(stream))
    }

    fn from_transport(stream: Transport) -> Result<Client, ClientError> {
        let reader = FrameReader::new(stream.try_clone()?);
        Ok(Client {
            writer: stream,
            reader,
            backlog: VecDeque::new(),
            terminator: b"\n",
            next_reqid: 1,
        })
    }

    /// Ends frames with NUL, as the old C++ client does (the server then answers in kind).
    pub fn use_nul(mut self) -> Self {
        self.terminator = b"\0";
        self
    }

    /// Changes the read timeout (None: wait forever).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), ClientError> {
        self.writer.socket().set_read_timeout(timeout)?;
        Ok(())
    }

    /// The underlying socket (to shut it down, or read its addresses; under TLS, bytes
    /// written to it directly would break the session).
    pub fn stream(&self) -> &TcpStream {
        self.writer.socket()
    }

    /// A second handle on the connection, for a thread that only reads (with a
    /// [`FrameReader`]) while this client sends: see [`Transport`].
    pub fn try_clone_transport(&self) -> Result<Transport, ClientError> {
        Ok(self.writer.try_clone()?)
    }

    /// Sends one JSON object followed by the terminator.
    pub fn send(&mut self, value: &Value) -> Result<(), ClientError> {
        let mut bytes = serde_json::to_vec(value).expect("a JSON value serialises");
        bytes.extend_from_slice(self.terminator);
        self.send_raw(&bytes)
    }

    /// Sends bytes exactly as given (tests of framing and bad input).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.writer.write_all(bytes)?;
        Ok(())
    }

    /// The next frame from the server (kept frames first).
    pub fn recv(&mut self) -> Result<Value, ClientError> {
        match self.backlog.pop_front() {
            Some(v) => Ok(v),
            None => self.reader.next_value(),
        }
    }

    /// Waits for the first frame that `wanted` accepts, keeping the others for [`Client::recv`].
    pub fn recv_matching(&mut self, wanted: impl Fn(&Value) -> bool) -> Result<Value, ClientError> {
        if let Some(pos) = self.backlog.iter().position(&wanted) {
            return Ok(self.backlog.remove(pos).expect("position is in range"));
        }
        loop {
            let v = self.reader.next_value()?;
            if wanted(&v) {
                return Ok(v);
            }
            self.backlog.push_back(v);
        }
    }

    /// Waits for the next frame with this msgid.
    pub fn recv_msgid(&mut self, id: i64) -> Result<Value, ClientError> {
        self.recv_matching(|v| v["msgid"] == id)
    }

    /// Sends `request` with a fresh `reqid` and waits for its ACK, ERROR or `reply_msgid`
    /// reply. An ERROR becomes [`ClientError::Refused`].
    pub fn request(
        &mut self,
        mut request: Value,
        reply_msgid: Option<i64>,
    ) -> Result<Value, ClientError> {
        let reqid = self.next_reqid;
        self.next_reqid += 1;
        request["reqid"] = json!(reqid);
        self.send(&request)?;
        let reply = self.recv_matching(|v| {
            let id = v["msgid"].as_i64();
            (v["reqid"] == reqid && matches!(id, Some(msgid::ACK) | Some(msgid::ERROR)))
                || (reply_msgid.is_some() && id == reply_msgid)
        })?;
        refused(reply)
    }

    /// Sends a typed request with a fresh `reqid` and waits for its reply (see
    /// [`request`](Self::request)).
    pub fn call<R: Request>(
        &mut self,
        req: &R,
        reply_msgid: Option<i64>,
    ) -> Result<Value, ClientError> {
        self.request(req.encode(), reply_msgid)
    }

    /// Registers an account and returns its id.
    pub fn register(&mut self, name: &str, password: &str) -> Result<UserId, ClientError> {
        let req = request::Register {
            name: name.into(),
            password: password.into(),
        };
        self.send(&req.encode())?;
        let reply = refused(
            self.recv_matching(|v| v["msgid"] == msgid::REG_ACK || v["msgid"] == msgid::ERROR)?,
        )?;
        reply["id"]
            .as_i64()
            .ok_or_else(|| ClientError::BadFrame(reply.to_string()))
    }

    /// Logs in and returns the LOGIN_ACK (with friends, groups and offline messages).
    pub fn login(&mut self, id: UserId, password: &str) -> Result<Value, ClientError> {
        self.login_as(id, password, false)
    }

    /// Logs in as a sync session (`"sync":true`) and returns the LOGIN_ACK (with friends and
    /// group summaries, no offline messages). The stored messages and then SYNC_DONE follow:
    /// read them with [`recv`](Self::recv).
    pub fn login_sync(&mut self, id: UserId, password: &str) -> Result<Value, ClientError> {
        self.login_as(id, password, true)
    }

    /// Logs in by account name (new; compared case-insensitively) and returns the LOGIN_ACK.
    pub fn login_by_name(&mut self, name: &str, password: &str) -> Result<Value, ClientError> {
        self.send_login(request::Login {
            id: None,
            name: Some(name.into()),
            password: password.into(),
            sync: false,
            takeover: false,
        })
    }

    /// Logs in with `"takeover":true` (a sync session if `sync`): the account's session
    /// elsewhere, if any, is ended (KICKED) instead of this login being refused.
    pub fn login_takeover(
        &mut self,
        id: UserId,
        password: &str,
        sync: bool,
    ) -> Result<Value, ClientError> {
        self.send_login(request::Login {
            id: Some(id),
            name: None,
            password: password.into(),
            sync,
            takeover: true,
        })
    }

    fn login_as(&mut self, id: UserId, password: &str, sync: bool) -> Result<Value, ClientError> {
        self.send_login(request::Login {
            id: Some(id),
            name: None,
            password: password.into(),
            sync,
            takeover: false,
        })
    }

    fn send_login(&mut self, req: request::Login) -> Result<Value, ClientError> {
        self.send(&req.encode())?;
        refused(
            self.recv_matching(|v| v["msgid"] == msgid::LOGIN_ACK || v["msgid"] == msgid::ERROR)?,
        )
    }

    /// Sends a one-to-one chat message and waits for the server's ack.
    pub fn chat(&mut self, from: UserId, to: UserId, text: &str) -> Result<Value, ClientError> {
        self.chat_cmid(from, to, text, None)
    }

    /// Sends a one-to-one chat message with a client message id (a retry with the same
    /// `cmid` is not stored twice) and waits for the server's ack (which carries the `seq`).
    pub fn chat_cmid(
        &mut self,
        from: UserId,
        to: UserId,
        text: &str,
        cmid: Option<&str>,
    ) -> Result<Value, ClientError> {
        let req = request::OneChat {
            id: from,
            name: String::new(),
            toid: to,
            msg: text.into(),
            time: clock::now(),
            cmid: cmid.map(Into::into),
        };
        self.call(&req, None)
    }

    /// Sends a group message and waits for the server's ack.
    pub fn group_chat(
        &mut self,
        from: UserId,
        group: GroupId,
        text: &str,
    ) -> Result<Value, ClientError> {
        self.group_chat_cmid(from, group, text, None)
    }

    /// Sends a group message with a client message id (see [`chat_cmid`](Self::chat_cmid))
    /// and waits for the server's ack.
    pub fn group_chat_cmid(
        &mut self,
        from: UserId,
        group: GroupId,
        text: &str,
        cmid: Option<&str>,
    ) -> Result<Value, ClientError> {
        let req = request::GroupChat {
            id: from,
            name: String::new(),
            groupid: group,
            msg: text.into(),
            time: clock::now(),
            cmid: cmid.map(Into::into),
        };
        self.call(&req, None)
    }

    /// Confirms every message up to `seq` in a conversation (`peer` or `groupid`) with a RECV,
    /// without a `reqid` and without waiting: no reply comes unless it fails.
    pub fn recv_ack(
        &mut self,
        peer: Option<UserId>,
        groupid: Option<GroupId>,
        seq: i64,
    ) -> Result<(), ClientError> {
        self.send(&request::Recv { peer, groupid, seq }.encode())
    }

    /// Asks for a page of a conversation's stored messages (`peer` or `groupid`; before seq
    /// `before`, at most `limit`) and returns the HISTORY_ACK.
    pub fn history(
        &mut self,
        peer: Option<UserId>,
        groupid: Option<GroupId>,
        before: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Value, ClientError> {
        let req = request::History {
            peer,
            groupid,
            before,
            limit,
        };
        self.call(&req, Some(msgid::HISTORY_ACK))
    }

    /// Asks for a page of a group's members (ids above `after`, at most `limit`) and returns
    /// the MEMBERS_ACK.
    pub fn members(
        &mut self,
        groupid: GroupId,
        after: Option<UserId>,
        limit: Option<u32>,
    ) -> Result<Value, ClientError> {
        let req = request::Members {
            groupid,
            after,
            limit,
        };
        self.call(&req, Some(msgid::MEMBERS_ACK))
    }

    /// Adds a friend and waits for the ack.
    pub fn add_friend(&mut self, me: UserId, friend: UserId) -> Result<Value, ClientError> {
        let req = request::AddFriend {
            id: me,
            friendid: friend,
        };
        self.call(&req, None)
    }

    /// Creates a group and returns its id.
    pub fn create_group(
        &mut self,
        me: UserId,
        name: &str,
        desc: &str,
    ) -> Result<GroupId, ClientError> {
        let req = request::CreateGroup {
            id: me,
            groupname: name.into(),
            groupdesc: desc.into(),
        };
        let reply = self.call(&req, Some(msgid::CREATE_GROUP_ACK))?;
        reply["groupid"]
            .as_i64()
            .ok_or_else(|| ClientError::BadFrame(reply.to_string()))
    }

    /// Joins a group and waits for the ack.
    pub fn join_group(&mut self, me: UserId, group: GroupId) -> Result<Value, ClientError> {
        self.call(
            &request::AddGroup {
                id: me,
                groupid: group,
            },
            None,
        )
    }

    /// Logs out (the connection stays open) and waits for the ack.
    pub fn logout(&mut self, me: UserId) -> Result<Value, ClientError> {
        self.call(&request::Logout { id: me }, None)
    }
}

/// Turns an error reply (ERROR, or a LOGIN_ACK / REG_ACK / CREATE_GROUP_ACK with a non-zero
/// errno) into [`ClientError::Refused`].
fn refused(reply: Value) -> Result<Value, ClientError> {
    match reply["errno"].as_i64() {
        Some(errno) if errno != 0 => Err(ClientError::Refused {
            errno,
            errmsg: reply["errmsg"].as_str().unwrap_or("").to_string(),
        }),
        _ => Ok(reply),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_handles_mixed_separators() {
        let data: &[u8] = b"{\"a\":1}\0{\"b\":2}\n{\"c\":3}";
        let mut r = FrameReader::new(data);
        assert_eq!(r.next_value().unwrap()["a"], 1);
        assert_eq!(r.next_value().unwrap()["b"], 2);
        assert_eq!(r.next_value().unwrap()["c"], 3);
        assert!(matches!(r.next_value(), Err(ClientError::Closed)));
    }
}
