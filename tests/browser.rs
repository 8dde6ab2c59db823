//! The web client (`web/`) in a real browser: Debian's chromium, driven by Playwright
//! (playwright-core from npm, `tests/browser/`), against two servers behind nginx configured
//! from the repository's `nginx.conf`, as a user opens it.
//!
//! * `scenario.test.mjs`: two browser contexts register, log in, add each other, chat one to
//!   one and in a group; one closes the page and finds what was sent meanwhile; a dropped
//!   connection resumes without a lost or doubled message; scroll-back loads older pages of
//!   HISTORY; the cluster panel lists both servers; the layout works at phone width.
//! * then `failover.test.mjs`: the server under one page is killed; the page resumes on the
//!   other server with nothing lost or doubled, and the panel drops the dead server.
//! * `unit.test.mjs` (node only): the client's logic without a browser.
//!
//! Screenshots go to `<target>/browser-screenshots/`. Needs node, `/usr/bin/chromium` (or
//! `CHROMIUM`) and `tests/browser/node_modules` (`.ci/services.sh` installs all three);
//! without them the tests are skipped, unless `CHAT_REQUIRE_SERVICES=1`, which makes that a
//! failure.

mod util;

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use util::cluster::TestCluster;
use util::mysql_db::services_required;
use util::nginx::TestNginx;

/// The longest the browser scenario may take; it needs ~30 s on a quiet machine.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(150);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/chromium".into())
}

/// Where the screenshots go: `browser-screenshots` in the target folder (the one holding
/// this build's `chatserver`).
fn screenshot_dir() -> PathBuf {
    let exe = Path::new(env!("CARGO_BIN_EXE_chatserver"));
    exe.ancestors()
        .nth(2)
        .unwrap_or(Path::new("target"))
        .join("browser-screenshots")
}

/// Whether node, chromium and the npm packages are there; `false` (skip, after a note)
/// when not, unless `CHAT_REQUIRE_SERVICES=1`, which makes that a panic.
fn tools_present() -> bool {
    let missing = if !node_present("the browser test") {
        return false;
    } else if !chromium().exists() {
        Some(format!("{} is missing", chromium().display()))
    } else if !browser_dir().join("node_modules/playwright-core").exists() {
        Some("tests/browser/node_modules is missing (npm ci there)".to_string())
    } else {
        None
    };
    match missing {
        None => true,
        Some(what) => {
            assert!(!services_required(), "{what}: .ci/services.sh installs it");
            eprintln!("note: skipping the browser test: {what}");
            false
        }
    }
}

/// Runs one Playwright test file of tests/browser with `env`; returns whether it passed and
/// its output. Killed after [`SCENARIO_TIMEOUT`].
fn run_node_test(file: &str, env: &[(&str, String)]) -> (bool, String) {
    let mut child = Command::new("node")
        .args(["--test", file])
        .current_dir(browser_dir())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("CHAT_SCREENSHOTS", screenshot_dir())
        .env("CHROMIUM", chromium())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + SCENARIO_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    match status {
        Some(s) => (s.success(), output),
        None => (
            false,
            format!("the scenario took over {SCENARIO_TIMEOUT:?}: killed\n{output}"),
        ),
    }
}

/// Whether node is installed; `false` (skip, after a note) when not, unless
/// `CHAT_REQUIRE_SERVICES=1`, which makes that a panic.
fn node_present(test: &str) -> bool {
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node {
        assert!(
            !services_required(),
            "node is not installed: .ci/services.sh installs it"
        );
        eprintln!("note: skipping {test}: node is not installed");
    }
    node
}

/// The web client's logic without a browser: tests/browser/unit.test.mjs.
#[test]
fn web_client_logic() {
    if !node_present("the web client's unit tests") {
        return;
    }
    let (ok, output) = run_node_test("unit.test.mjs", &[]);
    assert!(ok, "unit.test.mjs failed:\n{output}");
}

#[test]
fn two_browsers_chat_through_the_cluster_behind_nginx() {
    if !tools_present() {
        return;
    }
    // Each test server has its HTTP front on a free port (`TestServer::http`).
    let Some(cluster) = TestCluster::start("browser", 2) else {
        return;
    };
    let nodes: Vec<String> = (0..2)
        .map(|i| format!("{}n{i}", cluster.prefix.trim_end_matches(':')))
        .collect();
    let http: Vec<SocketAddr> = cluster
        .servers
        .iter()
        .map(|s| s.http.expect("the test server's HTTP front"))
        .collect();
    let chat: Vec<SocketAddr> = cluster.servers.iter().map(|s| s.addr).collect();
    // nginx from the repository's `nginx.conf` with both blocks, as `run_cluster.sh` runs it.
    let Some(nginx) = TestNginx::start_with_web(&chat, Some(&http)) else {
        return;
    };
    let url = format!("http://{}/", nginx.web.expect("the http block"));
    let pids: Vec<String> = nodes
        .iter()
        .zip(&cluster.servers)
        .map(|(node, s)| format!("{node}={}", s.pid()))
        .collect();
    let env = [
        ("CHAT_WEB_URL", url),
        ("CHAT_CLUSTER_NODES", nodes.join(",")),
        ("CHAT_SERVER_PIDS", pids.join(",")),
    ];
    // The scenario first; then the failover, which kills one of the servers.
    for file in ["scenario.test.mjs", "failover.test.mjs"] {
        let (ok, output) = run_node_test(file, &env);
        assert!(
            ok,
            "{file} failed (screenshots in {}):\n{output}",
            screenshot_dir().display()
        );
        // What the scenarios print for the record (`cargo test -- --nocapture` shows it).
        for line in output.lines().filter(|l| l.contains("ms after")) {
            println!("{file}: {}", line.trim_start_matches("# "));
        }
    }
    for name in [
        "desktop",
        "group-chat",
        "scroll-back",
        "phone-list",
        "phone-conversation",
        "failover",
    ] {
        let png = screenshot_dir().join(format!("{name}.png"));
        assert!(png.exists(), "{} was not written", png.display());
    }
}
