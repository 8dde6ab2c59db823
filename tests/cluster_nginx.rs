//! The cluster as users meet it: clients connect only to nginx (configured from the
//! repository's `nginx.conf`), which spreads them over two servers sharing MySQL and Redis;
//! they chat one to one and in groups whichever server they landed on, and when a server
//! stops, reconnecting clients land on the one still running.

mod util;

use clusterchat_proto::client::Client;
use clusterchat_proto::{msgid, UserId};
use mysql::prelude::Queryable;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use util::cluster::TestCluster;
use util::nginx::{self, TestNginx};

/// The node id `TestCluster` gives its server `i`.
fn node_id(cluster: &TestCluster, i: usize) -> String {
    format!("{}n{i}", cluster.prefix.trim_end_matches(':'))
}

/// Which node each logged-in user's session is on, read from the shared database
/// (`user.session` is `<node>/<connection>`).
fn nodes_of_users(cluster: &TestCluster) -> BTreeMap<UserId, String> {
    let rows: Vec<(UserId, String)> = cluster
        .db
        .conn()
        .query("SELECT id, session FROM user WHERE session IS NOT NULL")
        .expect("read sessions");
    rows.into_iter()
        .map(|(id, session)| {
            let node = session.split('/').next().unwrap_or("").to_string();
            (id, node)
        })
        .collect()
}

/// Starts two servers and nginx in front of them; `None` when a service is missing.
fn cluster_behind_nginx(tag: &str) -> Option<(TestCluster, TestNginx)> {
    let cluster = TestCluster::start(tag, 2)?;
    let upstreams: Vec<SocketAddr> = cluster.servers.iter().map(|s| s.addr).collect();
    let nginx = TestNginx::start(&upstreams)?;
    Some((cluster, nginx))
}

#[test]
fn the_committed_config_is_valid_and_renders_for_any_servers_and_port() {
    let ups: Vec<SocketAddr> = ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let conf = nginx::render(&ups, "127.0.0.1:9999".parse().unwrap());
    for a in &ups {
        assert!(conf.contains(&format!("server {a} max_fails=1 fail_timeout=5s;")));
    }
    for gone in [":6000", ":6001", ":8000"] {
        assert!(!conf.contains(gone), "{gone} left in\n{conf}");
    }
    assert!(conf.contains("listen 127.0.0.1:9999 so_keepalive=on;"));
    assert!(conf.contains("proxy_half_close on;"));
    // `nginx -t` accepts both the committed file and the rendered one.
    let Some(nginx) = nginx::find_nginx() else {
        return;
    };
    if !std::path::Path::new(nginx::STREAM_MODULE).exists() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rendered = dir.path().join("rendered.conf");
    std::fs::write(&rendered, conf).unwrap();
    for file in [nginx::template_path(), rendered] {
        let out = Command::new(&nginx)
            .arg("-t")
            .arg("-p")
            .arg(format!("{}/", dir.path().display()))
            .arg("-c")
            .arg(&file)
            .output()
            .expect("run nginx -t");
        assert!(
            out.status.success(),
            "nginx -t {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn clients_behind_nginx_are_spread_over_both_servers_and_chat() {
    let Some((cluster, nginx)) = cluster_behind_nginx("nginx_spread") else {
        return;
    };
    let names = ["ann", "ben", "cat", "dan", "eve", "fay"];
    let mut users: Vec<(Client, UserId)> = names.iter().map(|n| nginx.user(n)).collect();

    // Every user is online, on one of the two servers, and both servers have some.
    let nodes = nodes_of_users(&cluster);
    let (n0, n1) = (node_id(&cluster, 0), node_id(&cluster, 1));
    let on = |node: &str| -> Vec<usize> {
        (0..users.len())
            .filter(|&i| nodes.get(&users[i].1).map(String::as_str) == Some(node))
            .collect()
    };
    let (on0, on1) = (on(&n0), on(&n1));
    assert_eq!(on0.len() + on1.len(), names.len(), "sessions: {nodes:?}");
    assert!(
        !on0.is_empty() && !on1.is_empty(),
        "nginx sent every client to one server: {nodes:?}"
    );

    // One to one, across the two servers, both ways.
    let (x, y) = (on0[0], on1[0]);
    let (xid, yid) = (users[x].1, users[y].1);
    for i in 0..20 {
        users[x].0.chat(xid, yid, &format!("x→y {i}")).unwrap();
        users[y].0.chat(yid, xid, &format!("y→x {i}")).unwrap();
    }
    for i in 0..20 {
        let got = users[y].0.recv_msgid(msgid::ONE_CHAT).unwrap();
        assert_eq!(got["msg"], format!("x→y {i}"));
        assert_eq!(got["id"], xid);
        let got = users[x].0.recv_msgid(msgid::ONE_CHAT).unwrap();
        assert_eq!(got["msg"], format!("y→x {i}"));
    }

    // A group with everyone: a message reaches the members on both servers.
    let g = {
        let (c, id) = &mut users[0];
        c.create_group(*id, "behind-nginx", "members on every server")
            .unwrap()
    };
    for (c, id) in users.iter_mut().skip(1) {
        c.join_group(*id, g).unwrap();
    }
    {
        let (c, id) = &mut users[y];
        c.group_chat(*id, g, "hello, whole group").unwrap();
    }
    for (i, (c, _)) in users.iter_mut().enumerate() {
        if i != y {
            let got = c.recv_msgid(msgid::GROUP_CHAT).unwrap();
            assert_eq!(got["msg"], "hello, whole group");
            assert_eq!(got["groupid"], g);
        }
    }
}

#[test]
fn when_a_server_stops_clients_reconnect_through_nginx_to_the_other() {
    let Some((mut cluster, nginx)) = cluster_behind_nginx("nginx_failover") else {
        return;
    };
    let names = ["ann", "ben", "cat", "dan"];
    let mut users: Vec<(Client, UserId)> = names.iter().map(|n| nginx.user(n)).collect();
    let nodes = nodes_of_users(&cluster);
    let (n0, n1) = (node_id(&cluster, 0), node_id(&cluster, 1));
    let find = |node: &str| {
        (0..users.len())
            .find(|&i| nodes[&users[i].1] == node)
            .unwrap_or_else(|| panic!("nobody on {node}: {nodes:?}"))
    };
    let (gone, stays) = (find(&n0), find(&n1));
    let (gone_id, stays_id) = (users[gone].1, users[stays].1);

    cluster.servers[0].signal("TERM");
    cluster.servers[0].wait_exit(Duration::from_secs(10));

    // nginx passes the server's close on: the client sees its connection end.
    users[gone]
        .0
        .set_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert!(
        users[gone].0.recv().is_err(),
        "connection to a stopped server"
    );

    // It reconnects to the same address and logs in again: nginx skips the stopped server.
    let mut again = nginx.client();
    again
        .login(gone_id, &format!("pw-{}", names[gone]))
        .unwrap();
    assert_eq!(nodes_of_users(&cluster)[&gone_id], n1);
    users[stays]
        .0
        .chat(stays_id, gone_id, "welcome back")
        .unwrap();
    assert_eq!(
        again.recv_msgid(msgid::ONE_CHAT).unwrap()["msg"],
        "welcome back"
    );

    // Every new client gets through too, and lands on the running server.
    for name in ["gus", "hal", "ida"] {
        let (_c, id) = nginx.user(name);
        assert_eq!(nodes_of_users(&cluster)[&id], n1);
    }
}
