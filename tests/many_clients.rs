//! Many clients logging in at the same moment and then vanishing at the same moment: the C++
//! original corrupts its heap here. Every login must be answered correctly, every session
//! cleaned up, and the server must stay up.

mod util;

use clusterchat_proto::client::Client;
use clusterchat_proto::msgid;
use serde_json::json;
use std::net::Shutdown;
use util::server::TestServer;

fn storm(n: usize) {
    // Every client connects from 127.0.0.1 before any has logged in: more unauthenticated
    // connections from one address than --max-unauth-per-ip allows by default.
    let srv = TestServer::builder()
        .args(&["--max-unauth-per-ip", "0"])
        .start();
    let mut setup = srv.client();
    let ids: Vec<i64> = (0..n)
        .map(|i| setup.register(&format!("u{i}"), "pw").unwrap())
        .collect();
    let mut clients: Vec<Client> = (0..n).map(|_| srv.client()).collect();
    // Everyone sends the login before anyone reads a reply.
    for (c, id) in clients.iter_mut().zip(&ids) {
        c.send(&json!({"msgid": msgid::LOGIN, "id": id, "password": "pw"}))
            .unwrap();
    }
    for (c, id) in clients.iter_mut().zip(&ids) {
        let ack = c.recv_msgid(msgid::LOGIN_ACK).unwrap();
        assert_eq!(
            (ack["errno"].as_i64(), ack["id"].as_i64()),
            (Some(0), Some(*id))
        );
    }
    // Everyone vanishes at once.
    for c in &clients {
        c.stream().shutdown(Shutdown::Both).unwrap();
    }
    drop(clients);
    // Every session was cleaned up: all can log in again, and the server still works.
    let mut again: Vec<Client> = (0..n).map(|_| srv.client()).collect();
    for (c, id) in again.iter_mut().zip(&ids) {
        c.send(&json!({"msgid": msgid::LOGIN, "id": id, "password": "pw"}))
            .unwrap();
    }
    for c in again.iter_mut() {
        let ack = c.recv_msgid(msgid::LOGIN_ACK).unwrap();
        assert_eq!(ack["errno"], 0, "{ack}");
    }
    let (first, last) = (ids[0], ids[n - 1]);
    again[0].chat(first, last, "still alive").unwrap();
    assert_eq!(
        again[n - 1].recv_msgid(msgid::ONE_CHAT).unwrap()["msg"],
        "still alive"
    );
}

fn sixty_four_clients_log_in_and_vanish_together() {
    storm(64);
}

fn a_thousand_clients_log_in_and_vanish_together() {
    storm(1000);
}

on_both_backends!(
    sixty_four_clients_log_in_and_vanish_together,
    a_thousand_clients_log_in_and_vanish_together,
);
