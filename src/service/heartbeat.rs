//! The application heartbeat: PING (20) is answered with PONG (21), and a connection that has
//! sent a PING is closed once nothing has come from it for `--heartbeat-timeout` (its peer is
//! gone, or stuck). Connections that never ping are left to TCP (the old client never pings).

use super::context::ChatConn;
use super::{send_value, ChatService};
use crate::sync::LockExt;
use clusterchat_proto::{msgid, reply};
use serde_json::json;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// The connections that have pinged, by id.
#[derive(Default)]
pub(crate) struct Heartbeats {
    pinged: Mutex<HashMap<u64, Weak<clusterchat_net::TcpConnection<super::ConnContext>>>>,
}

impl ChatService {
    /// PING: answers PONG (echoing a reqid) and watches the connection from now on.
    pub(crate) fn ping(&self, conn: &ChatConn, reqid: Option<&RawValue>) {
        if conn.context().start_heartbeat() {
            self.heartbeats
                .pinged
                .locked()
                .insert(conn.id(), Arc::downgrade(conn));
        }
        let mut pong = json!({"msgid": msgid::PONG});
        reply::echo_reqid(&mut pong, reqid);
        send_value(conn, &pong);
    }

    /// Forgets a closed connection.
    pub(crate) fn forget_heartbeat(&self, conn: &ChatConn) {
        self.heartbeats.pinged.locked().remove(&conn.id());
    }

    /// Closes every watched connection silent for longer than `timeout`. Called every second
    /// by the housekeeper.
    pub(crate) fn sweep_heartbeats(&self, timeout: Duration) {
        let now = super::context::now_secs();
        let silent: Vec<ChatConn> = {
            let mut pinged = self.heartbeats.pinged.locked();
            pinged.retain(|_, w| w.strong_count() > 0);
            pinged
                .values()
                .filter_map(Weak::upgrade)
                .filter(|c| now.saturating_sub(c.context().last_input()) > timeout.as_secs())
                .collect()
        };
        for conn in silent {
            log::info!(
                "connection {} from {} sent nothing for over {timeout:?} after a PING; closing it",
                conn.id(),
                conn.peer()
            );
            self.forget_heartbeat(&conn);
            conn.force_close();
        }
    }
}
