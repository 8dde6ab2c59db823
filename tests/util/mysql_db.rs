//! A throw-away MySQL database per test, so tests can share the machine's server without
//! touching anything they did not create.

use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder};
use std::time::Duration;

/// The server the tests use unless `CHAT_TEST_MYSQL_URL` names another.
pub const DEFAULT_URL: &str = "mysql://root@127.0.0.1:3306/test?prefer_socket=false";

/// A database created for one test and dropped when the guard goes out of scope (also when
/// the test panics).
pub struct TestDb {
    /// URL of the new database, for `MysqlStore::open` or a server under test.
    pub url: String,
    /// Its name, `cc_<tag>_<pid>_<random>`.
    pub name: String,
    server: OptsBuilder,
}

/// True when `CHAT_REQUIRE_SERVICES=1`: a missing server is then a failure, not a skip.
pub fn services_required() -> bool {
    std::env::var("CHAT_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

impl TestDb {
    /// Creates a fresh database on the test server. `None` (after printing a note) when the
    /// server is unreachable, unless `CHAT_REQUIRE_SERVICES=1`, which makes that a panic.
    pub fn create(tag: &str) -> Option<TestDb> {
        let base = std::env::var("CHAT_TEST_MYSQL_URL").unwrap_or_else(|_| DEFAULT_URL.into());
        TestDb::create_on(&base, tag)
    }

    /// Creates a fresh database on the server `base` names (a private instance, say); `None`
    /// or a panic when it is unreachable, as for [`TestDb::create`].
    pub fn create_on(base: &str, tag: &str) -> Option<TestDb> {
        let base = base.to_string();
        let opts = Opts::from_url(&base).unwrap_or_else(|e| panic!("bad CHAT_TEST_MYSQL_URL: {e}"));
        let server = OptsBuilder::from_opts(opts)
            .prefer_socket(false)
            .db_name(None::<String>)
            .tcp_connect_timeout(Some(Duration::from_secs(3)));
        let mut conn = match Conn::new(server.clone()) {
            Ok(c) => c,
            Err(e) if services_required() => panic!("MySQL at {base} unreachable: {e}"),
            Err(e) => {
                eprintln!("note: skipping MySQL test {tag}: {base} unreachable: {e}");
                return None;
            }
        };
        let tag: String = tag
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(30)
            .collect();
        let name = format!(
            "cc_{tag}_{}_{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        conn.query_drop(format!(
            "CREATE DATABASE `{name}` DEFAULT CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci"
        ))
        .expect("create test database");
        let url = match base.rfind('/') {
            Some(i) if i > base.find("://").map_or(0, |j| j + 2) => {
                let (head, tail) = base.split_at(i);
                let query = tail
                    .find('?')
                    .map_or("?prefer_socket=false", |q| &tail[q..]);
                format!("{head}/{name}{query}")
            }
            _ => format!("{base}/{name}?prefer_socket=false"),
        };
        Some(TestDb { url, name, server })
    }

    /// A plain connection to the test database, for assertions on raw rows or counters.
    pub fn conn(&self) -> Conn {
        Conn::new(self.server.clone().db_name(Some(&self.name))).expect("connect to test db")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match Conn::new(self.server.clone()) {
            Ok(mut c) => {
                if let Err(e) = c.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.name)) {
                    eprintln!("warning: could not drop test database {}: {e}", self.name);
                }
            }
            Err(e) => eprintln!("warning: could not drop test database {}: {e}", self.name),
        }
    }
}
