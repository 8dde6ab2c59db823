//! Makes stored messages look old, straight in the database a test server uses (SQLite file
//! or MySQL), so that `--retention-days` has something to prune without waiting days. It
//! knows one thing of the storage: the `message` table's `created` column, in Unix ms.

use mysql::prelude::Queryable;

/// Moves the `created` time of every stored message with a seq up to `max_seq` (in any
/// conversation) `days` days back. `db` is the server's `--db` URL.
pub fn age_messages(db: &str, max_seq: i64, days: i64) {
    let ms = days * 86_400_000;
    let sql = "UPDATE message SET created = created - ? WHERE seq <= ?";
    if let Some(path) = db.strip_prefix("sqlite:") {
        let c = rusqlite::Connection::open(path).expect("open the SQLite database");
        c.busy_timeout(std::time::Duration::from_secs(10))
            .expect("busy timeout");
        c.execute(sql, rusqlite::params![ms, max_seq])
            .expect("age messages");
    } else {
        let opts = mysql::Opts::from_url(db).expect("MySQL URL");
        let mut c = mysql::Conn::new(opts).expect("connect to MySQL");
        c.exec_drop(sql, (ms, max_seq)).expect("age messages");
    }
}
