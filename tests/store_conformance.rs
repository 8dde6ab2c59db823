//! One behaviour suite for every `Store` backend (issue 3): each check is a plain function over
//! `&dyn Store`, and the `conformance!` macro runs it against SQLite always and against MySQL
//! when a server is reachable, so the two backends cannot drift apart.

mod util;

use clusterchat::store::{Claim, JoinOutcome, Store, StoreError};
use clusterchat_proto::UserId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Barrier;

/// A MySQL store on a fresh database (dropped with the returned guard), or `None` to skip.
fn mysql_store(tag: &str) -> Option<(util::mysql_db::TestDb, Box<dyn Store>)> {
    let db = util::mysql_db::TestDb::create(tag)?;
    let store = clusterchat::store::mysql::MysqlStore::open(&db.url, 10).expect("open mysql");
    Some((db, Box::new(store)))
}

/// A fresh SQLite store in its own temporary directory (kept alive by the returned guard).
fn sqlite_store() -> (tempfile::TempDir, Box<dyn Store>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chat.db");
    let store = clusterchat::store::sqlite::SqliteStore::open(path.to_str().unwrap(), 10)
        .expect("open sqlite");
    (dir, Box::new(store))
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    let (_dir, store) = super::sqlite_store();
                    super::$name(&*store);
                }
            )*
        }
        mod mysql {
            $(
                #[test]
                fn $name() {
                    // Drop order: the store (and its pool) before the database guard.
                    if let Some((_db, store)) = super::mysql_store(stringify!($name)) {
                        super::$name(&*store);
                    }
                }
            )*
        }
    };
}

conformance!(
    register_and_lookup,
    claim_take_over_release,
    claim_of_missing_user,
    release_node_only_releases_that_node,
    release_all_releases_everyone,
    session_nodes_lists_each_node_once,
    friends_are_one_way_and_idempotent,
    groups_create_join_and_list,
    group_members_of_missing_group,
    offline_messages_keep_order_and_are_taken_once,
    store_offline_many_reaches_everyone,
    unicode_round_trip,
    concurrent_store_and_take_offline,
    concurrent_claim_has_one_winner,
);

/// Runs a closure when dropped (also during a panic).
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

fn new_user(s: &dyn Store, name: &str) -> UserId {
    s.register(name, "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA")
        .unwrap()
}

fn register_and_lookup(s: &dyn Store) {
    let a = new_user(s, "alice");
    let b = new_user(s, "bob");
    assert_ne!(a, b);
    let rec = s.user(a).unwrap().expect("alice exists");
    assert_eq!(rec.id, a);
    assert_eq!(rec.name, "alice");
    assert!(rec.password_hash.starts_with("$argon2id$"));
    assert_eq!(s.user(b.max(a) + 1000).unwrap(), None);
}

fn claim_take_over_release(s: &dyn Store) {
    let u = new_user(s, "u");
    assert_eq!(s.claim_session(u, "n1/1").unwrap(), Claim::Claimed);
    assert_eq!(
        s.claim_session(u, "n2/7").unwrap(),
        Claim::HeldBy("n1/1".into())
    );
    // A wrong session neither releases nor is replaced.
    s.release_session(u, "n2/7").unwrap();
    assert!(!s.take_over_session(u, "n9/9", "n2/7").unwrap());
    assert_eq!(
        s.claim_session(u, "n2/7").unwrap(),
        Claim::HeldBy("n1/1".into())
    );
    // Take-over from the stale session wins; the late logout of the old one is ignored.
    assert!(s.take_over_session(u, "n1/1", "n2/7").unwrap());
    s.release_session(u, "n1/1").unwrap();
    assert_eq!(
        s.claim_session(u, "n3/1").unwrap(),
        Claim::HeldBy("n2/7".into())
    );
    s.release_session(u, "n2/7").unwrap();
    assert_eq!(s.claim_session(u, "n3/1").unwrap(), Claim::Claimed);
}

fn claim_of_missing_user(s: &dyn Store) {
    let u = new_user(s, "only");
    assert_eq!(
        s.claim_session(u + 1000, "n/1").unwrap(),
        Claim::HeldBy(String::new())
    );
}

fn release_node_only_releases_that_node(s: &dyn Store) {
    // `_` and `%` are LIKE wildcards: a naive LIKE 'n_1/%' would release "nx1/2" too.
    let sessions = ["n_1/1", "nx1/2", "n_10/3", "n%1/4", "n_1/5"];
    let users: Vec<UserId> = sessions.iter().map(|_| new_user(s, "x")).collect();
    for (u, sess) in users.iter().zip(sessions) {
        assert_eq!(s.claim_session(*u, sess).unwrap(), Claim::Claimed);
    }
    assert_eq!(s.release_node("n_1").unwrap(), 2);
    let held = |u: UserId| s.claim_session(u, "probe/0").unwrap();
    assert_eq!(held(users[0]), Claim::Claimed);
    assert_eq!(held(users[1]), Claim::HeldBy("nx1/2".into()));
    assert_eq!(held(users[2]), Claim::HeldBy("n_10/3".into()));
    assert_eq!(held(users[3]), Claim::HeldBy("n%1/4".into()));
    assert_eq!(held(users[4]), Claim::Claimed);
    assert_eq!(s.release_node("n%1").unwrap(), 1);
    assert_eq!(held(users[3]), Claim::Claimed);
    assert_eq!(s.release_node("nobody").unwrap(), 0);
}

fn session_nodes_lists_each_node_once(s: &dyn Store) {
    let a = new_user(s, "a");
    let b = new_user(s, "b");
    let c = new_user(s, "c");
    assert!(s.session_nodes().unwrap().is_empty());
    s.claim_session(a, "node-x/1").unwrap();
    s.claim_session(b, "node-x/2").unwrap();
    s.claim_session(c, "node_y/3").unwrap();
    let mut nodes = s.session_nodes().unwrap();
    nodes.sort();
    assert_eq!(nodes, ["node-x", "node_y"]);
}

fn release_all_releases_everyone(s: &dyn Store) {
    let a = new_user(s, "a");
    let b = new_user(s, "b");
    let _c = new_user(s, "c");
    s.claim_session(a, "n1/1").unwrap();
    s.claim_session(b, "n2/1").unwrap();
    assert_eq!(s.release_all().unwrap(), 2);
    assert_eq!(s.claim_session(a, "n3/1").unwrap(), Claim::Claimed);
    assert_eq!(s.claim_session(b, "n3/2").unwrap(), Claim::Claimed);
}

fn friends_are_one_way_and_idempotent(s: &dyn Store) {
    let a = new_user(s, "a");
    let b = new_user(s, "b");
    let c = new_user(s, "c");
    s.add_friend(a, c).unwrap();
    s.add_friend(a, b).unwrap();
    s.add_friend(a, b).unwrap();
    s.claim_session(b, "n/1").unwrap();
    let f = s.friends(a).unwrap();
    let got: Vec<(UserId, &str, &str)> = f
        .iter()
        .map(|u| (u.id, u.name.as_str(), u.state.as_str()))
        .collect();
    assert_eq!(got, vec![(b, "b", "online"), (c, "c", "offline")]);
    assert!(s.friends(b).unwrap().is_empty());
}

fn groups_create_join_and_list(s: &dyn Store) {
    let a = new_user(s, "a");
    let b = new_user(s, "b");
    let c = new_user(s, "c");
    let g1 = s.create_group(b, "rust", "crabs").unwrap();
    let g2 = s.create_group(a, "cpp", "").unwrap();
    assert!(matches!(
        s.create_group(c, "rust", "again"),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.join_group(a, g1).unwrap(), JoinOutcome::Joined);
    assert_eq!(s.join_group(a, g1).unwrap(), JoinOutcome::AlreadyMember);
    assert_eq!(s.join_group(b, g1).unwrap(), JoinOutcome::AlreadyMember);
    assert_eq!(
        s.join_group(a, g1.max(g2) + 1000).unwrap(),
        JoinOutcome::NoSuchGroup
    );
    s.claim_session(a, "n/1").unwrap();

    let groups = s.groups_of(a).unwrap();
    assert_eq!(groups.len(), 2);
    let (first, second) = if g1 < g2 {
        (&groups[0], &groups[1])
    } else {
        (&groups[1], &groups[0])
    };
    assert_eq!(
        (first.id, first.name.as_str(), first.desc.as_str()),
        (g1, "rust", "crabs")
    );
    let members: Vec<(UserId, &str, &str)> = first
        .users
        .iter()
        .map(|m| (m.user.id, m.user.state.as_str(), m.role.as_str()))
        .collect();
    let mut want = vec![(a, "online", "normal"), (b, "offline", "creator")];
    want.sort();
    assert_eq!(members, want);
    assert_eq!(
        (second.id, second.desc.as_str(), second.users.len()),
        (g2, "", 1)
    );
    assert!(groups.windows(2).all(|w| w[0].id < w[1].id));
    assert!(s.groups_of(c).unwrap().is_empty());

    let mut ids = s.group_members(g1).unwrap().expect("group exists");
    ids.sort();
    assert_eq!(ids, {
        let mut v = vec![a, b];
        v.sort();
        v
    });
}

fn group_members_of_missing_group(s: &dyn Store) {
    let a = new_user(s, "a");
    let g = s.create_group(a, "g", "d").unwrap();
    assert_eq!(s.group_members(g).unwrap(), Some(vec![a]));
    assert_eq!(s.group_members(g + 1000).unwrap(), None);
}

fn offline_messages_keep_order_and_are_taken_once(s: &dyn Store) {
    let a = new_user(s, "a");
    let b = new_user(s, "b");
    assert!(s.take_offline(a).unwrap().is_empty());
    for i in 0..20 {
        s.store_offline(a, &format!("m{i}")).unwrap();
    }
    s.store_offline(b, "for b").unwrap();
    let want: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    assert_eq!(s.take_offline(a).unwrap(), want);
    assert!(s.take_offline(a).unwrap().is_empty());
    assert_eq!(s.take_offline(b).unwrap(), vec!["for b".to_string()]);
}

fn store_offline_many_reaches_everyone(s: &dyn Store) {
    let users: Vec<UserId> = (0..5).map(|i| new_user(s, &format!("u{i}"))).collect();
    s.store_offline_many(&users[1..], "group hello").unwrap();
    s.store_offline_many(&[], "nobody").unwrap();
    assert!(s.take_offline(users[0]).unwrap().is_empty());
    for u in &users[1..] {
        assert_eq!(s.take_offline(*u).unwrap(), vec!["group hello".to_string()]);
    }
}

fn unicode_round_trip(s: &dyn Store) {
    let tricky = "张三 😀 'single' \"double\" back\\slash %_ \u{0}?";
    let tricky = tricky.replace('\u{0}', "nul-free");
    let u = new_user(s, &tricky);
    assert_eq!(s.user(u).unwrap().unwrap().name, tricky);
    let g = s.create_group(u, &format!("组 {tricky}"), &tricky).unwrap();
    let groups = s.groups_of(u).unwrap();
    assert_eq!(
        (groups[0].id, groups[0].desc.as_str()),
        (g, tricky.as_str())
    );
    assert_eq!(groups[0].name, format!("组 {tricky}"));
    assert_eq!(groups[0].users[0].user.name, tricky);
    let big: String = "消息😀'\"\\ abc ".repeat(6000);
    assert!(big.len() >= 100 * 1024);
    s.store_offline(u, &tricky).unwrap();
    s.store_offline(u, &big).unwrap();
    let got = s.take_offline(u).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], tricky);
    assert!(got[1] == big, "100 KB message changed in the round trip");
}

fn concurrent_store_and_take_offline(s: &dyn Store) {
    const SENDERS: usize = 8;
    const PER_SENDER: usize = 100;
    let u = new_user(s, "busy");
    let mut taken: Vec<String> = Vec::new();
    let done = AtomicUsize::new(0);
    let done = &done;
    std::thread::scope(|scope| {
        for t in 0..SENDERS {
            scope.spawn(move || {
                // Counted even if the sender panics, so the taker below cannot spin forever.
                let _count = OnDrop(|| {
                    done.fetch_add(1, SeqCst);
                });
                for k in 0..PER_SENDER {
                    s.store_offline(u, &format!("{t}:{k}")).unwrap();
                }
            });
        }
        loop {
            let finished = done.load(SeqCst) == SENDERS;
            taken.extend(s.take_offline(u).unwrap());
            if finished {
                break;
            }
        }
    });
    taken.extend(s.take_offline(u).unwrap());
    assert_eq!(
        taken.len(),
        SENDERS * PER_SENDER,
        "every message exactly once"
    );
    let mut next: HashMap<usize, usize> = HashMap::new();
    for m in &taken {
        let (t, k) = m.split_once(':').unwrap();
        let (t, k): (usize, usize) = (t.parse().unwrap(), k.parse().unwrap());
        let want = next.entry(t).or_insert(0);
        assert_eq!(k, *want, "sender {t} out of order or duplicated");
        *want += 1;
    }
}

fn concurrent_claim_has_one_winner(s: &dyn Store) {
    const N: usize = 8;
    let u = new_user(s, "contested");
    let barrier = Barrier::new(N);
    let results: Vec<(String, Claim)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let session = format!("node{i}/1");
                    barrier.wait();
                    let c = s.claim_session(u, &session).unwrap();
                    (session, c)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<&String> = results
        .iter()
        .filter(|(_, c)| *c == Claim::Claimed)
        .map(|(s, _)| s)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one claim wins: {results:?}");
    for (_, c) in &results {
        if let Claim::HeldBy(h) = c {
            assert_eq!(h, winners[0]);
        }
    }
}
