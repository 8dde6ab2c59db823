//! A connection that hands out each frame the server writes together with its exact size in
//! bytes (from `{` to `}`, without the terminator): for the bound on a legacy LOGIN_ACK.

use clusterchat_proto::client::{ClientError, FrameReader};
use serde_json::Value;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

/// One socket, newline-terminated requests, frames read one at a time.
pub struct RawConn {
    stream: TcpStream,
    reader: FrameReader<TcpStream>,
}

impl RawConn {
    /// Connects with a 20 s read timeout.
    pub fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect(addr).expect("connect to the test server");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("read timeout");
        let reader = FrameReader::new(stream.try_clone().expect("clone socket"));
        RawConn { stream, reader }
    }

    /// Sends one request.
    pub fn send(&mut self, v: &Value) {
        let mut bytes = serde_json::to_vec(v).expect("JSON");
        bytes.push(b'\n');
        self.stream.write_all(&bytes).expect("send");
    }

    /// The next frame: its size in bytes and its value.
    pub fn next(&mut self) -> (usize, Value) {
        self.try_next()
            .unwrap_or_else(|e| panic!("reading a frame: {e}"))
    }

    /// The next frame, or why there is none.
    pub fn try_next(&mut self) -> Result<(usize, Value), ClientError> {
        let bytes = self.reader.next_bytes()?;
        let v = serde_json::from_slice(&bytes).map_err(|e| ClientError::BadFrame(e.to_string()))?;
        Ok((bytes.len(), v))
    }

    /// The next frame's exact bytes (without the terminator).
    pub fn next_bytes(&mut self) -> Vec<u8> {
        self.reader
            .next_bytes()
            .unwrap_or_else(|e| panic!("reading a frame: {e}"))
    }

    /// Sends bytes exactly as given.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Closes both directions (unread data makes it a reset).
    pub fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}
