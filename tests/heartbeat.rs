//! The application heartbeat: PING (20) → PONG (21) with the reqid echoed, logged in or not;
//! a connection that pinged and then went silent is closed after `--heartbeat-timeout`; one
//! that never pinged (the old client) is never closed for silence.

mod util;

use serde_json::json;
use std::io::Read;
use std::time::Duration;
use util::server::TestServer;

#[test]
fn ping_gets_pong_before_and_after_login() {
    let srv = TestServer::start();
    let mut c = srv.client();
    c.send(&json!({"msgid": 20, "reqid": "p1"})).unwrap();
    assert_eq!(c.recv().unwrap(), json!({"msgid": 21, "reqid": "p1"}));
    c.send(&json!({"msgid": 20})).unwrap();
    assert_eq!(c.recv().unwrap(), json!({"msgid": 21}));
    let (mut a, _) = srv.user("alice");
    a.send(&json!({"msgid": 20, "reqid": 7})).unwrap();
    assert_eq!(a.recv().unwrap(), json!({"msgid": 21, "reqid": 7}));
}

#[test]
fn a_silent_connection_that_pinged_is_closed_and_one_that_never_pinged_is_not() {
    let srv = TestServer::builder()
        .args(&["--heartbeat-timeout", "1"])
        .start();
    let quiet = srv.client(); // never pings
    let mut pinger = srv.client();
    pinger.send(&json!({"msgid": 20})).unwrap();
    assert_eq!(pinger.recv().unwrap()["msgid"], 21);
    // Silent from now on: the server closes it (a read sees end of file, not a timeout).
    let mut stream = pinger.stream().try_clone().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut rest = Vec::new();
    let n = stream
        .read_to_end(&mut rest)
        .expect("closed by the server, not timed out");
    assert_eq!(n, 0, "nothing but the close: {rest:?}");
    // The connection that never pinged is still served after the same silence.
    let mut quiet = quiet;
    quiet.send(&json!({"msgid": 20, "reqid": "late"})).unwrap();
    assert_eq!(quiet.recv().unwrap()["reqid"], "late");
}
