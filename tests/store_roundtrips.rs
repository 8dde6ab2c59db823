//! Measures database round trips per login and per offline message on MySQL, from the
//! server's own counters, and the time an append batch takes per message on both backends.
//! Ignored by default (they print figures, assert nothing useful):
//! `cargo test --test store_roundtrips -- --ignored --nocapture`. Other clients of the same
//! server add noise to the global counters.

mod util;

use clusterchat::store::mysql::MysqlStore;
use clusterchat::store::{Append, ConvId, Store};
use mysql::prelude::Queryable;
use std::collections::BTreeMap;

const COUNTERS: &[&str] = &[
    "Questions",
    "Com_admin_commands",
    "Com_stmt_prepare",
    "Com_stmt_execute",
    "Com_select",
    "Com_update",
    "Com_insert",
    "Com_delete",
    "Com_begin",
    "Com_commit",
];

fn status(c: &mut mysql::Conn) -> BTreeMap<String, i64> {
    let rows: Vec<(String, String)> = c.query("SHOW GLOBAL STATUS").unwrap();
    rows.into_iter()
        .filter(|(k, _)| COUNTERS.iter().any(|c| c.eq_ignore_ascii_case(k)))
        .map(|(k, v)| (k, v.parse().unwrap_or(0)))
        .collect()
}

fn report(what: &str, n: i64, before: &BTreeMap<String, i64>, after: &BTreeMap<String, i64>) {
    println!("{what} (n = {n}):");
    for (k, v) in after {
        let d = v - before.get(k).copied().unwrap_or(0);
        println!("  {k:<20} {d:>7}  = {:.2} each", d as f64 / n as f64);
    }
}

#[test]
#[ignore]
fn round_trips_per_login_and_offline_message() {
    const N: i64 = 200;
    let Some(db) = util::mysql_db::TestDb::create("roundtrips") else {
        return;
    };
    let store = MysqlStore::open(&db.url, 2).unwrap();
    let users: Vec<i64> = (0..N)
        .map(|i| store.register(&format!("u{i}"), "h").unwrap())
        .collect();
    for w in users.windows(2) {
        store.add_friend(w[0], w[1]).unwrap();
    }
    let g = store.create_group(users[0], "g", "d").unwrap();
    for u in &users[1..20] {
        store.join_group(*u, g).unwrap();
    }
    let login = |u: i64, session: &str| {
        store.user(u).unwrap().unwrap();
        store.claim_session(u, session).unwrap();
        store.take_offline(u).unwrap();
        store.friends(u).unwrap();
        store.groups_of(u).unwrap();
        store.release_session(u, session).unwrap();
    };
    // Warm the per-connection statement caches.
    for u in &users[..20] {
        login(*u, "warm/1");
        store.store_offline(*u, "warm").unwrap();
        store.take_offline(*u).unwrap();
    }
    let mut probe = db.conn();

    let before = status(&mut probe);
    for u in &users {
        login(*u, "n1/1");
    }
    let after = status(&mut probe);
    report("login, empty offline queue", N, &before, &after);

    let before = status(&mut probe);
    for u in &users {
        store.store_offline(*u, "hello").unwrap();
    }
    let after = status(&mut probe);
    report("store_offline", N, &before, &after);

    let before = status(&mut probe);
    for u in &users {
        login(*u, "n1/2");
    }
    let after = status(&mut probe);
    report("login, one offline message", N, &before, &after);

    let before = status(&mut probe);
    store.store_offline_many(&users, "fan-out").unwrap();
    let after = status(&mut probe);
    report("store_offline_many to all (one call)", 1, &before, &after);
    println!("(each SHOW GLOBAL STATUS itself adds 1 to Questions)");
}

/// One batch of chat-sized messages: to `convs` pair conversations in turn (half with a
/// cmid), as a server's group commit would see them.
fn chat_batch<'a>(
    bodies: &'a [String],
    cmids: &'a [String],
    convs: i64,
    round: usize,
) -> Vec<Append<'a>> {
    (0..bodies.len())
        .map(|i| Append {
            conv: ConvId::pair(1 + (i as i64 % convs), 1_000),
            sender: 1 + (i as i64 % convs),
            cmid: (i % 2 == 0).then(|| cmids[i].as_str()),
            body: &bodies[i],
            created_ms: 1_800_000_000_000 + round as i64,
        })
        .collect()
}

/// Appends `rounds` batches of `n` and prints the time per message (the first batch, which
/// prepares the statements, is not counted).
fn time_appends(what: &str, store: &dyn Store, n: usize, convs: i64, rounds: usize) {
    let mut total = std::time::Duration::ZERO;
    for round in 0..=rounds {
        let bodies: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    r#"{{"msgid":6,"id":{},"name":"user{i}","toid":1000,"msg":"message {i} of round {round}, a sentence of chat","time":"2026-11-27 05:31:30"}}"#,
                    1 + i as i64 % convs
                )
            })
            .collect();
        let cmids: Vec<String> = (0..n).map(|i| format!("c-{round}-{i}")).collect();
        let batch = chat_batch(&bodies, &cmids, convs, round);
        let start = std::time::Instant::now();
        let out = store.append(&batch).unwrap();
        let took = start.elapsed();
        assert_eq!(out.len(), n);
        if round > 0 {
            total += took;
        }
    }
    let per = total.as_secs_f64() * 1e6 / (n * rounds) as f64;
    println!(
        "{what}: {rounds} batches of {n} to {convs} conversations (half with a cmid): {per:.2} µs per message, {:.2} ms per batch",
        total.as_secs_f64() * 1e3 / rounds as f64
    );
}

#[test]
#[ignore]
fn append_batch_timing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    let sqlite = clusterchat::store::sqlite::SqliteStore::open(path.to_str().unwrap(), 2).unwrap();
    for convs in [1, 50, 500] {
        time_appends("SQLite", &sqlite, 500, convs, 20);
    }
    let Some(db) = util::mysql_db::TestDb::create("append_timing") else {
        return;
    };
    let mysql = MysqlStore::open(&db.url, 2).unwrap();
    let mut probe = db.conn();
    for convs in [1, 50, 500] {
        let before = status(&mut probe);
        time_appends("MySQL", &mysql, 500, convs, 20);
        let after = status(&mut probe);
        report(
            "  server counters for those 21 batches",
            21,
            &before,
            &after,
        );
    }
}
