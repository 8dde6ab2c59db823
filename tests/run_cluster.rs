//! `run_cluster.sh` end to end: it starts two servers and nginx (on free ports, with its pids
//! and logs in a temporary folder, running the already built chatserver), clients chat
//! through nginx across the two servers, `status` reports them, and `stop` from "another
//! terminal" or Ctrl+C ends the foreground script and everything it started, with exit
//! status 0.

mod util;

use clusterchat_proto::msgid;
use mysql::prelude::Queryable;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use util::cluster::redis_url;
use util::mysql_db::{services_required, TestDb};
use util::nginx;
use util::server::unique;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("run_cluster.sh")
}

/// What the script needs besides MySQL and Redis: nginx with its stream module and the
/// mysql client. `false` (skip) when missing, unless `CHAT_REQUIRE_SERVICES=1`.
fn tools_present() -> bool {
    let mysql_client = ["mariadb", "mysql"].iter().any(|c| {
        Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    let present =
        nginx::find_nginx().is_some() && Path::new(nginx::STREAM_MODULE).exists() && mysql_client;
    if !present {
        assert!(
            !services_required(),
            "nginx, its stream module or mysql missing"
        );
        eprintln!("note: skipping run_cluster.sh test: nginx, its stream module or mysql missing");
    }
    present
}

/// A port `p` with `p` and `p + 1` free (for the two servers).
fn two_free_ports() -> u16 {
    loop {
        let first = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = first.local_addr().unwrap().port();
        if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

/// The running script with its environment; stops the cluster when dropped, so a failing
/// test leaves nothing behind.
struct Cluster {
    child: Child,
    env: Vec<(&'static str, String)>,
    run_dir: tempfile::TempDir,
}

impl Cluster {
    fn command(&self, args: &[&str]) -> Output {
        Command::new("bash")
            .arg(script())
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("run run_cluster.sh")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.command(&["stop"]);
            let _ = self.child.wait();
        }
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Starts `run_cluster.sh start 2` on free ports with a fresh database and returns once it
/// printed where to connect; `None` when something it needs is missing (the test is skipped).
/// With `own_group` the script leads a process group of its own, as a terminal's foreground
/// job does (so a test can send Ctrl+C's SIGINT to the whole group).
fn start_cluster(tag: &str, own_group: bool) -> Option<(Cluster, TestDb, u16, u16, String)> {
    start_cluster_with(tag, own_group, &[])
}

/// [`start_cluster`] with more arguments after `start 2` (`--tls`).
fn start_cluster_with(
    tag: &str,
    own_group: bool,
    more: &[&str],
) -> Option<(Cluster, TestDb, u16, u16, String)> {
    if !tools_present() {
        return None;
    }
    let redis = redis_url()?;
    let db = TestDb::create(tag)?;
    let lb = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = two_free_ports();
    let run_dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("CHAT_RUN_DIR", run_dir.path().display().to_string()),
        (
            "CHAT_SERVER_BIN",
            env!("CARGO_BIN_EXE_chatserver").to_string(),
        ),
        ("CHAT_DB", db.url.clone()),
        ("CHAT_REDIS", redis),
        ("CHAT_LB_PORT", lb.to_string()),
        ("CHAT_BASE_PORT", base.to_string()),
        ("CHAT_CHANNEL_PREFIX", format!("{}:", unique("cc-test-run"))),
        ("CHAT_ARGON2_M_KIB", "256".to_string()),
    ];
    let mut command = Command::new("bash");
    command
        .arg(script())
        .args(["start", "2"])
        .args(more)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if own_group {
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
    }
    let child = command.spawn().expect("start run_cluster.sh");
    let mut cluster = Cluster {
        child,
        env,
        run_dir,
    };

    // It prints where to connect once everything answers.
    let mut stdout = BufReader::new(cluster.child.stdout.take().unwrap());
    let mut printed = String::new();
    let connect_line = format!("127.0.0.1 {lb}\n");
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            let mut err = String::new();
            let _ = cluster
                .child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err);
            panic!("run_cluster.sh ended before it was ready:\n{printed}\n{err}");
        }
        printed.push_str(&line);
        if line.contains("chatclient") && line.ends_with(&connect_line) {
            break;
        }
    }
    // Keep reading (and so never block the script) in the background.
    std::thread::spawn(move || for _ in stdout.lines() {});
    Some((cluster, db, lb, base, printed))
}

#[test]
fn run_cluster_starts_two_servers_behind_nginx_and_stops_them() {
    let Some((mut cluster, db, lb, base, printed)) = start_cluster("run_cluster", false) else {
        return;
    };
    assert!(printed.contains(&format!("node2: starting on 127.0.0.1:{}", base + 1)));

    // Two users through nginx land on the two servers and chat.
    let addr: SocketAddr = ([127, 0, 0, 1], lb).into();
    let user = |name: &str| {
        let mut c = clusterchat_proto::client::Client::connect(addr).unwrap();
        let id = c.register(name, "pw").unwrap();
        c.login(id, "pw").unwrap();
        (c, id)
    };
    let (mut alice, a) = user("alice");
    let (mut bob, b) = user("bob");
    let nodes: Vec<String> = db
        .conn()
        .query("SELECT SUBSTRING_INDEX(session, '/', 1) FROM user ORDER BY id")
        .unwrap();
    let mut sorted = nodes.clone();
    sorted.sort();
    assert_eq!(sorted, ["node1", "node2"], "sessions: {nodes:?}");
    alice.chat(a, b, "hi bob").unwrap();
    bob.chat(b, a, "hi alice").unwrap();
    assert_eq!(bob.recv_msgid(msgid::ONE_CHAT).unwrap()["msg"], "hi bob");
    assert_eq!(
        alice.recv_msgid(msgid::ONE_CHAT).unwrap()["msg"],
        "hi alice"
    );

    let status = cluster.command(&["status"]);
    let shown = text(&status);
    assert!(status.status.success(), "{shown}");
    for what in [
        "nginx",
        "node1",
        "node2",
        "node1: 1 online",
        "node2: 1 online",
    ] {
        assert!(shown.contains(what), "status lacks {what:?}:\n{shown}");
    }

    // `stop` (from "another terminal") ends the foreground script, which stops nginx and the
    // servers: the clients see their connections end, and close them.
    let stopper = {
        let (env, script) = (cluster.env.clone(), script());
        std::thread::spawn(move || {
            Command::new("bash")
                .arg(script)
                .arg("stop")
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .output()
                .expect("run run_cluster.sh stop")
        })
    };
    assert!(
        alice.recv().is_err(),
        "alice's connection outlived the cluster"
    );
    assert!(bob.recv().is_err(), "bob's connection outlived the cluster");
    drop((alice, bob));
    let stop = stopper.join().unwrap();
    assert!(stop.status.success(), "{}", text(&stop));
    // `stop` returns once the script has ended, which was a clean stop: exit status 0.
    let status = cluster.child.wait().unwrap();
    assert!(status.success(), "run_cluster.sh after `stop`: {status}");
    assert!(TcpStream::connect(addr).is_err(), "nginx still listens");
    let left: Vec<_> = std::fs::read_dir(cluster.run_dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pid"))
        .collect();
    assert!(left.is_empty(), "pid files left: {left:?}");
    // SIGTERM let the servers set their users offline.
    let online: Vec<i64> = db
        .conn()
        .query("SELECT id FROM user WHERE session IS NOT NULL")
        .unwrap();
    assert!(online.is_empty(), "still online: {online:?}");
    let status = cluster.command(&["status"]);
    assert!(!status.status.success(), "{}", text(&status));
}

#[test]
fn ctrl_c_stops_the_cluster_and_the_script_exits_0() {
    let Some((mut cluster, db, lb, _, _)) = start_cluster("run_cluster_ctrl_c", true) else {
        return;
    };
    let addr: SocketAddr = ([127, 0, 0, 1], lb).into();
    let mut alice = clusterchat_proto::client::Client::connect(addr).unwrap();
    let a = alice.register("alice", "pw").unwrap();
    alice.login(a, "pw").unwrap();
    // Ctrl+C in a terminal: SIGINT to the foreground process group, the script's.
    let group = format!("-{}", cluster.child.id());
    let sent = Command::new("kill")
        .args(["-INT", "--", &group])
        .status()
        .expect("run kill");
    assert!(sent.success());
    assert!(
        alice.recv().is_err(),
        "alice's connection outlived the cluster"
    );
    drop(alice);
    let status = cluster.child.wait().unwrap();
    assert!(status.success(), "run_cluster.sh after Ctrl+C: {status}");
    assert!(TcpStream::connect(addr).is_err(), "nginx still listens");
    let online: Vec<i64> = db
        .conn()
        .query("SELECT id FROM user WHERE session IS NOT NULL")
        .unwrap();
    assert!(online.is_empty(), "still online: {online:?}");
}

/// `--tls`: a self-signed certificate in the run folder, every server speaking TLS, nginx
/// passing TCP through: TLS clients that trust the certificate chat across the two servers
/// through nginx, and a plain client is closed.
#[test]
fn run_cluster_tls_runs_tls_end_to_end_through_nginx() {
    let Some((cluster, db, lb, _, printed)) =
        start_cluster_with("run_cluster_tls", false, &["--tls"])
    else {
        return;
    };
    let cert = cluster.run_dir.path().join("tls").join("cert.pem");
    assert!(
        printed.contains(&format!("chatclient -- --tls --ca {}", cert.display())),
        "{printed}"
    );
    let config = clusterchat_proto::tls::client_config(
        clusterchat_proto::tls::roots_from_pem(&cert).expect("the script's certificate"),
    );
    let addr: SocketAddr = ([127, 0, 0, 1], lb).into();
    let user = |name: &str| {
        let name_ = clusterchat_proto::tls::server_name("127.0.0.1").unwrap();
        let mut c = clusterchat_proto::client::Client::connect_tls(addr, config.clone(), name_)
            .expect("TLS through nginx");
        let id = c.register(name, "pw").unwrap();
        c.login(id, "pw").unwrap();
        (c, id)
    };
    let (mut alice, a) = user("alice");
    let (mut bob, b) = user("bob");
    let nodes: Vec<String> = db
        .conn()
        .query("SELECT SUBSTRING_INDEX(session, '/', 1) FROM user ORDER BY id")
        .unwrap();
    let mut sorted = nodes.clone();
    sorted.sort();
    assert_eq!(sorted, ["node1", "node2"], "sessions: {nodes:?}");
    alice.chat(a, b, "hi bob, encrypted").unwrap();
    assert_eq!(
        bob.recv_msgid(msgid::ONE_CHAT).unwrap()["msg"],
        "hi bob, encrypted"
    );
    // In the clear, through nginx: no reply, closed.
    let mut plain = clusterchat_proto::client::Client::connect(addr).unwrap();
    assert!(
        plain.register("plain", "pw").is_err(),
        "a plain client was served"
    );
    let status = cluster.command(&["status"]);
    assert!(
        text(&status).contains("servers speak TLS"),
        "{}",
        text(&status)
    );
    drop(cluster);
}
