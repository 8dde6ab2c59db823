//! One behaviour suite for every `Store` backend (issue 3): each check is a plain function over
//! `&dyn Store`, and the `conformance!` macro runs it against SQLite always and against MySQL
//! when a server is reachable, so the two backends cannot drift apart.

mod util;

use clusterchat::store::{
    Append, Appended, Claim, ConvId, JoinOutcome, Logged, Seq, Store, StoreError, Unread,
    CMID_WINDOW_MS,
};
use clusterchat_proto::{GroupId, UserId};
use std::collections::{BTreeSet, HashMap};
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
    user_names_are_unique_case_insensitively,
    claim_take_over_release,
    claim_of_missing_user,
    release_node_only_releases_that_node,
    release_all_releases_everyone,
    session_nodes_lists_each_node_once,
    sessions_per_node_counts_each_node,
    friends_are_one_way_and_idempotent,
    groups_create_join_and_list,
    group_members_of_missing_group,
    offline_messages_keep_order_and_are_taken_once,
    store_offline_many_reaches_everyone,
    unicode_round_trip,
    concurrent_store_and_take_offline,
    concurrent_claim_has_one_winner,
    log_seqs_count_per_conversation,
    log_batch_spans_conversations,
    log_group_message_is_stored_once,
    log_bodies_round_trip_in_big_batches,
    log_cmid_repeat_in_the_database,
    log_cmid_repeat_in_the_batch,
    log_cmid_after_the_window_is_new,
    log_read_after_pages,
    log_read_before_pages_down_to_the_floor,
    log_unread_pairs_and_groups,
    log_unread_follows_cursors,
    log_advance_cursors_never_lowers,
    log_join_floor,
    log_prune_old_messages_within_limit,
    log_prune_expired_cmids,
    log_members_page,
    log_group_summaries,
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

fn user_names_are_unique_case_insensitively(s: &dyn Store) {
    let alice = new_user(s, "Alice");
    for taken in ["Alice", "alice", "ALICE", " alice "] {
        match s.register(taken, "h") {
            Err(StoreError::Conflict(_)) => {}
            other => panic!("{taken:?}: expected a conflict, got {other:?}"),
        }
    }
    // Accents count: only case is ignored, on both backends alike.
    let zoe = new_user(s, "Zoë");
    assert_ne!(new_user(s, "Zoe"), zoe);
    for name in ["alice", "ALICE", " Alice "] {
        let rec = s.user_by_name(name).unwrap().expect("found by name");
        assert_eq!((rec.id, rec.name.as_str()), (alice, "Alice"));
        assert!(rec.password_hash.starts_with("$argon2id$"));
    }
    assert_eq!(s.user_by_name("zoë").unwrap().map(|u| u.id), Some(zoe));
    assert_eq!(s.user_by_name("nobody").unwrap(), None);
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
    let users: Vec<UserId> = (0..sessions.len())
        .map(|i| new_user(s, &format!("x{i}")))
        .collect();
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

fn sessions_per_node_counts_each_node(s: &dyn Store) {
    let a = new_user(s, "a");
    let b = new_user(s, "b");
    let c = new_user(s, "c");
    assert!(s.sessions_per_node().unwrap().is_empty());
    s.claim_session(a, "node-x/1").unwrap();
    s.claim_session(b, "node-x/2").unwrap();
    s.claim_session(c, "node_y/3").unwrap();
    let mut counts = s.sessions_per_node().unwrap();
    counts.sort();
    assert_eq!(
        counts,
        [("node-x".to_string(), 2), ("node_y".to_string(), 1)]
    );
    s.release_session(b, "node-x/2").unwrap();
    let mut counts = s.sessions_per_node().unwrap();
    counts.sort();
    assert_eq!(
        counts,
        [("node-x".to_string(), 1), ("node_y".to_string(), 1)]
    );
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

// ---- The message log ----

/// A fixed "now" for the log tests' `created_ms` (retention tests use the real clock).
const T0: i64 = 1_800_000_000_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn msg(conv: ConvId, sender: UserId, body: &str) -> Append<'_> {
    Append {
        conv,
        sender,
        cmid: None,
        body,
        created_ms: T0,
    }
}

fn msg_cmid<'a>(
    conv: ConvId,
    sender: UserId,
    cmid: &'a str,
    body: &'a str,
    created_ms: i64,
) -> Append<'a> {
    Append {
        conv,
        sender,
        cmid: Some(cmid),
        body,
        created_ms,
    }
}

/// The seqs of a batch that must all have been stored.
fn new_seqs(out: &[Appended]) -> Vec<Seq> {
    out.iter()
        .map(|a| match a {
            Appended::New(seq) => *seq,
            other => panic!("expected every message stored: {out:?} ({other:?})"),
        })
        .collect()
}

/// Everything `conv` holds, as (seq, body).
fn log_of(s: &dyn Store, conv: ConvId) -> Vec<(Seq, String)> {
    s.read_after(conv, 0, 100_000)
        .unwrap()
        .into_iter()
        .map(|l| (l.seq, l.body))
        .collect()
}

fn seqs_of(rows: &[Logged]) -> Vec<Seq> {
    rows.iter().map(|l| l.seq).collect()
}

fn unread(conv: ConvId, cursor: Seq, last: Seq) -> Unread {
    Unread { conv, cursor, last }
}

/// A group of `creator` joined by `others`, in that order.
fn group_of(s: &dyn Store, name: &str, creator: UserId, others: &[UserId]) -> GroupId {
    let g = s.create_group(creator, name, "").unwrap();
    for u in others {
        assert_eq!(s.join_group(*u, g).unwrap(), JoinOutcome::Joined);
    }
    g
}

fn log_seqs_count_per_conversation(s: &dyn Store) {
    let a = new_user(s, "a");
    let b = new_user(s, "b");
    let c = new_user(s, "c");
    let ab = ConvId::pair(a, b);
    for (i, body) in ["{\"n\":1}", "{\"n\":2}", "{\"n\":3}"].iter().enumerate() {
        assert_eq!(
            s.append(&[msg(ab, a, body)]).unwrap(),
            [Appended::New(i as Seq + 1)]
        );
    }
    // The same pair from the other side is the same conversation.
    assert_eq!(
        s.append(&[msg(ConvId::pair(b, a), b, "{\"n\":4}")])
            .unwrap(),
        [Appended::New(4)]
    );
    // Other conversations count on their own.
    let ac = ConvId::pair(c, a);
    assert_eq!(s.append(&[msg(ac, c, "{}")]).unwrap(), [Appended::New(1)]);
    let g = ConvId::group(group_of(s, "g", a, &[]));
    assert_eq!(s.append(&[msg(g, a, "{}")]).unwrap(), [Appended::New(1)]);
    assert_eq!(s.append(&[msg(ac, a, "{}")]).unwrap(), [Appended::New(2)]);
    let got = log_of(s, ab);
    assert_eq!(
        got,
        [
            (1, "{\"n\":1}"),
            (2, "{\"n\":2}"),
            (3, "{\"n\":3}"),
            (4, "{\"n\":4}")
        ]
        .map(|(q, b)| (q, b.to_string()))
    );
    assert_eq!(log_of(s, ConvId::pair(b, c)), []);
    assert!(s.append(&[]).unwrap().is_empty());
}

fn log_batch_spans_conversations(s: &dyn Store) {
    let a = new_user(s, "a");
    let b = new_user(s, "b");
    let c = new_user(s, "c");
    let (ab, bc) = (ConvId::pair(a, b), ConvId::pair(b, c));
    let g = ConvId::group(group_of(s, "g", a, &[b]));
    s.append(&[msg(bc, b, "bc0")]).unwrap();
    let batch = [
        msg(ab, a, "ab1"),
        msg(bc, c, "bc1"),
        msg(g, b, "g1"),
        msg(ab, b, "ab2"),
        msg(g, a, "g2"),
        msg(ab, a, "ab3"),
        msg(bc, b, "bc2"),
    ];
    assert_eq!(new_seqs(&s.append(&batch).unwrap()), [1, 2, 1, 2, 2, 3, 3]);
    let bodies = |conv| -> Vec<String> { log_of(s, conv).into_iter().map(|(_, b)| b).collect() };
    assert_eq!(bodies(ab), ["ab1", "ab2", "ab3"]);
    assert_eq!(bodies(bc), ["bc0", "bc1", "bc2"]);
    assert_eq!(bodies(g), ["g1", "g2"]);
    // The next batch goes on from there.
    let out = s.append(&[msg(g, a, "g3"), msg(ab, a, "ab4")]).unwrap();
    assert_eq!(new_seqs(&out), [3, 4]);
}

fn log_group_message_is_stored_once(s: &dyn Store) {
    let users: Vec<UserId> = (0..5).map(|i| new_user(s, &format!("u{i}"))).collect();
    let gid = group_of(s, "crowd", users[0], &users[1..]);
    let g = ConvId::group(gid);
    assert_eq!(
        s.append(&[msg(g, users[2], "hello all")]).unwrap(),
        [Appended::New(1)]
    );
    assert_eq!(log_of(s, g), [(1, "hello all".to_string())]);
    // One conversation with one message for every member (the sender's cursor is the
    // service's business).
    for u in &users {
        assert_eq!(s.unread(*u).unwrap(), [unread(g, 0, 1)], "member {u}");
    }
    for w in users.windows(2) {
        assert!(log_of(s, ConvId::pair(w[0], w[1])).is_empty());
    }
}

fn log_bodies_round_trip_in_big_batches(s: &dyn Store) {
    let a = new_user(s, "a");
    let b = new_user(s, "b");
    let ab = ConvId::pair(a, b);
    let g = ConvId::group(group_of(s, "g", a, &[b]));
    // 500 small messages in one batch (several multi-row INSERTs) across two conversations.
    let small: Vec<String> = (0..500)
        .map(|i| format!("{{\"msg\":\"张三 😀 'q' \\\"dq\\\" %_ {i}\"}}"))
        .collect();
    let batch: Vec<Append<'_>> = small
        .iter()
        .enumerate()
        .map(|(i, body)| msg(if i % 3 == 0 { g } else { ab }, a, body))
        .collect();
    let seqs = new_seqs(&s.append(&batch).unwrap());
    let (mut in_g, mut in_ab) = (0, 0);
    for (i, seq) in seqs.iter().enumerate() {
        let n = if i % 3 == 0 { &mut in_g } else { &mut in_ab };
        *n += 1;
        assert_eq!(*seq, *n, "message {i}");
    }
    let want_ab: Vec<(Seq, String)> = small
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .enumerate()
        .map(|(k, (_, b))| (k as Seq + 1, b.clone()))
        .collect();
    assert_eq!(log_of(s, ab), want_ab);
    assert_eq!(log_of(s, g).len(), 167);
    // Big bodies: more than a statement's byte budget in one batch.
    let big: Vec<String> = (0..24)
        .map(|i| format!("{{\"msg\":\"{}{i}\"}}", "消息😀'\\\" abc ".repeat(6000)))
        .collect();
    assert!(big[0].len() >= 100 * 1024);
    let batch: Vec<Append<'_>> = big.iter().map(|body| msg(g, b, body)).collect();
    let seqs = new_seqs(&s.append(&batch).unwrap());
    assert_eq!(seqs, (168..192).collect::<Vec<Seq>>());
    let got = s.read_after(g, 167, 100).unwrap();
    assert_eq!(seqs_of(&got), seqs);
    for (l, want) in got.iter().zip(&big) {
        assert!(l.body == *want, "a 100 KB body changed in the round trip");
    }
}

fn log_cmid_repeat_in_the_database(s: &dyn Store) {
    let a = new_user(s, "a");
    let b = new_user(s, "b");
    let c = new_user(s, "c");
    let (ab, ac) = (ConvId::pair(a, b), ConvId::pair(a, c));
    let first = s.append(&[msg_cmid(ab, a, "m-1", "first", T0)]).unwrap();
    assert_eq!(first, [Appended::New(1)]);
    // A retry (even to another conversation) names the original; nothing is stored.
    let again = s
        .append(&[
            msg_cmid(ab, a, "m-1", "retry", T0 + 5_000),
            msg_cmid(ac, a, "m-1", "retry elsewhere", T0 + 6_000),
        ])
        .unwrap();
    let dup = Appended::Duplicate { conv: ab, seq: 1 };
    assert_eq!(again, [dup, dup]);
    assert_eq!(log_of(s, ab), [(1, "first".to_string())]);
    assert!(log_of(s, ac).is_empty());
    // No seq was consumed: the next message is 2.
    assert_eq!(s.append(&[msg(ab, b, "next")]).unwrap(), [Appended::New(2)]);
    // Keys are per sender and compared exactly.
    let out = s
        .append(&[
            msg_cmid(ab, b, "m-1", "b's own m-1", T0),
            msg_cmid(ab, a, "M-1", "upper case", T0),
            msg_cmid(ab, a, "m-1 ", "trailing space", T0),
        ])
        .unwrap();
    assert_eq!(new_seqs(&out), [3, 4, 5]);
    assert_eq!(
        s.append(&[msg_cmid(ab, a, "m-1 ", "again", T0)]).unwrap(),
        [Appended::Duplicate { conv: ab, seq: 5 }]
    );
    let long = "k".repeat(64);
    assert_eq!(
        s.append(&[msg_cmid(ac, c, &long, "64-byte cmid", T0)])
            .unwrap(),
        [Appended::New(1)]
    );
    assert_eq!(
        s.append(&[msg_cmid(ac, c, &long, "64-byte cmid", T0)])
            .unwrap(),
        [Appended::Duplicate { conv: ac, seq: 1 }]
    );
}

fn log_cmid_repeat_in_the_batch(s: &dyn Store) {
    let a = new_user(s, "a");
    let b = new_user(s, "b");
    let ab = ConvId::pair(a, b);
    s.append(&[msg(ab, a, "zero")]).unwrap();
    let out = s
        .append(&[
            msg_cmid(ab, a, "x", "x1", T0),
            msg(ab, b, "plain"),
            msg_cmid(ab, a, "x", "x1 again", T0 + 1),
            msg_cmid(ab, a, "y", "y1", T0),
        ])
        .unwrap();
    assert_eq!(
        out,
        [
            Appended::New(2),
            Appended::New(3),
            Appended::Duplicate { conv: ab, seq: 2 },
            Appended::New(4),
        ]
    );
    let bodies: Vec<String> = log_of(s, ab).into_iter().map(|(_, b)| b).collect();
    assert_eq!(bodies, ["zero", "x1", "plain", "y1"]);
    // The key recorded in the batch holds for later batches too.
    assert_eq!(
        s.append(&[msg_cmid(ab, a, "x", "x1 later", T0 + 2)])
            .unwrap(),
        [Appended::Duplicate { conv: ab, seq: 2 }]
    );
    // A batch of duplicates only stores nothing and consumes no seq.
    assert_eq!(s.append(&[msg(ab, a, "five")]).unwrap(), [Appended::New(5)]);
}

fn log_cmid_after_the_window_is_new(s: &dyn Store) {
    let a = new_user(s, "a");
    let b = new_user(s, "b");
    let ab = ConvId::pair(a, b);
    assert_eq!(
        s.append(&[msg_cmid(ab, a, "w", "day 0", T0)]).unwrap(),
        [Appended::New(1)]
    );
    // Just within the window: a repeat.
    assert_eq!(
        s.append(&[msg_cmid(ab, a, "w", "still day 0", T0 + CMID_WINDOW_MS - 1)])
            .unwrap(),
        [Appended::Duplicate { conv: ab, seq: 1 }]
    );
    // Beyond it: a new message, and from then on the key names the new one.
    let later = T0 + CMID_WINDOW_MS + 1000;
    assert_eq!(
        s.append(&[msg_cmid(ab, a, "w", "day 1", later)]).unwrap(),
        [Appended::New(2)]
    );
    assert_eq!(
        s.append(&[msg_cmid(ab, a, "w", "day 1 retry", later + 1)])
            .unwrap(),
        [Appended::Duplicate { conv: ab, seq: 2 }]
    );
    // Inside one batch as well.
    let far = later + 2 * CMID_WINDOW_MS;
    let out = s
        .append(&[
            msg_cmid(ab, a, "v", "v0", far),
            msg_cmid(ab, a, "v", "v1", far + CMID_WINDOW_MS),
            msg_cmid(ab, a, "v", "v1 retry", far + CMID_WINDOW_MS + 1),
        ])
        .unwrap();
    assert_eq!(
        out,
        [
            Appended::New(3),
            Appended::New(4),
            Appended::Duplicate { conv: ab, seq: 4 },
        ]
    );
    assert_eq!(log_of(s, ab).len(), 4);
}

fn log_read_after_pages(s: &dyn Store) {
    let a = new_user(s, "a");
    let b = new_user(s, "b");
    let ab = ConvId::pair(a, b);
    let other = ConvId::pair(a, a);
    let bodies: Vec<String> = (1..=10).map(|i| format!("m{i}")).collect();
    let batch: Vec<Append<'_>> = bodies.iter().map(|x| msg(ab, a, x)).collect();
    s.append(&batch).unwrap();
    s.append(&[msg(other, a, "note to self")]).unwrap();
    let page = s.read_after(ab, 0, 3).unwrap();
    assert_eq!(seqs_of(&page), [1, 2, 3]);
    assert_eq!(page[0].body, "m1");
    assert_eq!(seqs_of(&s.read_after(ab, 3, 4).unwrap()), [4, 5, 6, 7]);
    let rest = s.read_after(ab, 7, 100).unwrap();
    assert_eq!(seqs_of(&rest), [8, 9, 10]);
    assert_eq!(rest[2].body, "m10");
    assert!(s.read_after(ab, 10, 100).unwrap().is_empty());
    assert!(s.read_after(ab, 0, 0).unwrap().is_empty());
    assert!(s.read_after(ConvId::pair(b, b), 0, 10).unwrap().is_empty());
}

fn log_read_before_pages_down_to_the_floor(s: &dyn Store) {
    let a = new_user(s, "a");
    let b = new_user(s, "b");
    let g = ConvId::group(group_of(s, "g", a, &[b]));
    let bodies: Vec<String> = (1..=10).map(|i| format!("m{i}")).collect();
    let batch: Vec<Append<'_>> = bodies.iter().map(|x| msg(g, a, x)).collect();
    s.append(&batch).unwrap();
    s.append(&[msg(ConvId::pair(a, b), a, "elsewhere")])
        .unwrap();
    let page = |before, floor, limit| {
        let (rows, more) = s.read_before(g, before, floor, limit).unwrap();
        (seqs_of(&rows), more)
    };
    // From the newest down, no floor.
    assert_eq!(page(11, 0, 3), (vec![8, 9, 10], true));
    assert_eq!(page(8, 0, 3), (vec![5, 6, 7], true));
    assert_eq!(page(5, 0, 3), (vec![2, 3, 4], true));
    assert_eq!(page(2, 0, 3), (vec![1], false));
    assert_eq!(page(4, 0, 3), (vec![1, 2, 3], false));
    assert_eq!(page(1, 0, 3), (vec![], false));
    let (rows, _) = s.read_before(g, 11, 0, 1).unwrap();
    let rows: Vec<_> = rows.iter().map(|m| (m.seq, m.body.as_str())).collect();
    assert_eq!(rows, [(10, "m10")]);
    // With a floor of 4 (joined at seq 4): nothing at or below it.
    assert_eq!(page(11, 4, 3), (vec![8, 9, 10], true));
    assert_eq!(page(8, 4, 3), (vec![5, 6, 7], false));
    assert_eq!(page(5, 4, 3), (vec![], false));
    assert_eq!(page(8, 4, 2), (vec![6, 7], true));
    assert_eq!(page(100, 4, 100).0, (5..=10).collect::<Vec<Seq>>());
    // A limit of 0 still says whether there is anything.
    assert_eq!(page(11, 0, 0), (vec![], true));
    assert_eq!(page(11, 10, 0), (vec![], false));
}

fn log_unread_pairs_and_groups(s: &dyn Store) {
    let a = new_user(s, "a");
    let b = new_user(s, "b");
    let c = new_user(s, "c");
    let lonely = new_user(s, "lonely");
    let (ab, ac) = (ConvId::pair(a, b), ConvId::pair(a, c));
    let gid = group_of(s, "g", a, &[b]);
    let g = ConvId::group(gid);
    let other = ConvId::group(group_of(s, "other", c, &[]));
    assert!(s.unread(a).unwrap().is_empty());
    s.append(&[msg(ab, a, "1"), msg(ab, b, "2"), msg(ac, c, "3")])
        .unwrap();
    s.append(&[msg(g, b, "4"), msg(g, a, "5"), msg(g, b, "6")])
        .unwrap();
    s.append(&[msg(other, c, "7"), msg(ConvId::pair(a, a), a, "8")])
        .unwrap();
    // Groups (negative ids) first, then pairs, ascending; a pair with oneself only once.
    let mut want_a = vec![
        unread(g, 0, 3),
        unread(ab, 0, 2),
        unread(ac, 0, 1),
        unread(ConvId::pair(a, a), 0, 1),
    ];
    want_a.sort_by_key(|u| u.conv);
    assert_eq!(s.unread(a).unwrap(), want_a);
    // b is the higher user of its pair; not in `other`, not in a-c.
    assert_eq!(s.unread(b).unwrap(), [unread(g, 0, 3), unread(ab, 0, 2)]);
    let mut want_c = vec![unread(other, 0, 1), unread(ac, 0, 1)];
    want_c.sort_by_key(|u| u.conv);
    assert_eq!(s.unread(c).unwrap(), want_c);
    assert!(s.unread(lonely).unwrap().is_empty());
}

fn log_unread_follows_cursors(s: &dyn Store) {
    let a = new_user(s, "a");
    let b = new_user(s, "b");
    let ab = ConvId::pair(a, b);
    let g = ConvId::group(group_of(s, "g", a, &[b]));
    s.append(&[
        msg(ab, a, "1"),
        msg(ab, a, "2"),
        msg(g, a, "3"),
        msg(g, a, "4"),
    ])
    .unwrap();
    s.advance_cursors(b, &[(ab, 1), (g, 2)]).unwrap();
    // b has read the group to its end: only the pair shows.
    assert_eq!(s.unread(b).unwrap(), [unread(ab, 1, 2)]);
    s.advance_cursors(b, &[(ab, 2)]).unwrap();
    assert!(s.unread(b).unwrap().is_empty());
    // The cursors are b's own: a's are untouched.
    assert_eq!(s.unread(a).unwrap(), [unread(g, 0, 2), unread(ab, 0, 2)]);
    // A new message shows again, with the cursor where it was.
    s.append(&[msg(ab, a, "5")]).unwrap();
    assert_eq!(s.unread(b).unwrap(), [unread(ab, 2, 3)]);
}

fn log_advance_cursors_never_lowers(s: &dyn Store) {
    let a = new_user(s, "a");
    let b = new_user(s, "b");
    let ab = ConvId::pair(a, b);
    let aa = ConvId::pair(a, a);
    let batch: Vec<Append<'_>> = (0..6).map(|_| msg(ab, a, "x")).collect();
    s.append(&batch).unwrap();
    s.append(&[msg(aa, a, "self")]).unwrap();
    s.advance_cursors(b, &[(ab, 5)]).unwrap();
    assert_eq!(s.unread(b).unwrap(), [unread(ab, 5, 6)]);
    s.advance_cursors(b, &[(ab, 3)]).unwrap();
    assert_eq!(s.unread(b).unwrap(), [unread(ab, 5, 6)]);
    s.advance_cursors(b, &[]).unwrap();
    // Several for one conversation in one call: the highest wins, whatever the order.
    s.advance_cursors(a, &[(ab, 4), (aa, 1), (ab, 2)]).unwrap();
    assert_eq!(s.unread(a).unwrap(), [unread(ab, 4, 6)]);
    s.advance_cursors(b, &[(ab, 6), (ab, 1)]).unwrap();
    assert!(s.unread(b).unwrap().is_empty());
    s.advance_cursors(b, &[(ab, 2)]).unwrap();
    assert!(s.unread(b).unwrap().is_empty());
    // Many conversations in one call (more than one statement's worth).
    let many: Vec<UserId> = (0..150).map(|i| new_user(s, &format!("m{i}"))).collect();
    for m in &many {
        s.append(&[msg(ConvId::pair(a, *m), *m, "hi")]).unwrap();
    }
    assert_eq!(s.unread(a).unwrap().len(), 151);
    let all: Vec<(ConvId, Seq)> = many.iter().map(|m| (ConvId::pair(a, *m), 1)).collect();
    s.advance_cursors(a, &all).unwrap();
    assert_eq!(s.unread(a).unwrap(), [unread(ab, 4, 6)]);
}

fn log_join_floor(s: &dyn Store) {
    let a = new_user(s, "a");
    let b = new_user(s, "b");
    let c = new_user(s, "c");
    let outsider = new_user(s, "outsider");
    let gid = s.create_group(a, "g", "").unwrap();
    let g = ConvId::group(gid);
    assert_eq!(s.join_floor(gid, a).unwrap(), Some(0));
    // Joining before any message: history from the start.
    assert_eq!(s.join_group(b, gid).unwrap(), JoinOutcome::Joined);
    assert_eq!(s.join_floor(gid, b).unwrap(), Some(0));
    let batch: Vec<Append<'_>> = (0..3).map(|_| msg(g, a, "before c")).collect();
    s.append(&batch).unwrap();
    // c joins after three messages: floor 3, and nothing unread.
    assert_eq!(s.join_group(c, gid).unwrap(), JoinOutcome::Joined);
    assert_eq!(s.join_floor(gid, c).unwrap(), Some(3));
    assert!(s.unread(c).unwrap().is_empty());
    assert_eq!(s.unread(b).unwrap(), [unread(g, 0, 3)]);
    s.append(&[msg(g, b, "after c")]).unwrap();
    assert_eq!(s.unread(c).unwrap(), [unread(g, 3, 4)]);
    // Joining again changes nothing; the creator keeps 0.
    assert_eq!(s.join_group(c, gid).unwrap(), JoinOutcome::AlreadyMember);
    assert_eq!(s.join_floor(gid, c).unwrap(), Some(3));
    assert_eq!(s.join_floor(gid, a).unwrap(), Some(0));
    // Not a member, or no such group.
    assert_eq!(s.join_floor(gid, outsider).unwrap(), None);
    assert_eq!(s.join_floor(gid + 1000, a).unwrap(), None);
    // Another group's floor is its own.
    let hid = group_of(s, "h", b, &[c]);
    assert_eq!(s.join_floor(hid, c).unwrap(), Some(0));
}

fn log_prune_old_messages_within_limit(s: &dyn Store) {
    let a = new_user(s, "a");
    let b = new_user(s, "b");
    let (ab, aa) = (ConvId::pair(a, b), ConvId::pair(a, a));
    let at = |conv, body, created_ms| Append {
        conv,
        sender: a,
        cmid: None,
        body,
        created_ms,
    };
    s.append(&[
        at(ab, "old1", T0 - 3000),
        at(ab, "old2", T0 - 2000),
        at(aa, "old3", T0 - 1000),
        at(ab, "new1", T0),
        at(aa, "new2", T0 + 1000),
    ])
    .unwrap();
    assert_eq!(s.prune(T0, 2).unwrap(), 2);
    assert_eq!(log_of(s, ab), [(3, "new1".to_string())]);
    assert_eq!(s.prune(T0, 2).unwrap(), 1);
    assert_eq!(log_of(s, aa), [(2, "new2".to_string())]);
    assert_eq!(s.prune(T0, 100).unwrap(), 0);
    assert_eq!(s.prune(T0 - 10_000, 100).unwrap(), 0);
    // Seqs never restart after a prune.
    assert_eq!(
        s.append(&[at(ab, "later", T0 + 5)]).unwrap(),
        [Appended::New(4)]
    );
    assert_eq!(s.prune(T0 + 2000, 0).unwrap(), 0);
    assert_eq!(s.prune(T0 + 2000, 10).unwrap(), 3);
    assert!(log_of(s, ab).is_empty());
    assert_eq!(
        s.append(&[at(ab, "again", T0)]).unwrap(),
        [Appended::New(5)]
    );
    assert_eq!(s.unread(b).unwrap(), [unread(ab, 0, 5)]);
}

fn log_prune_expired_cmids(s: &dyn Store) {
    let a = new_user(s, "a");
    let b = new_user(s, "b");
    let ab = ConvId::pair(a, b);
    let now = now_ms();
    let old = now - 2 * CMID_WINDOW_MS;
    s.append(&[
        msg_cmid(ab, a, "old", "two days ago", old),
        msg_cmid(ab, a, "fresh", "now", now),
    ])
    .unwrap();
    // Only the retention cutoff decides which messages go; the keys expire with the window.
    assert_eq!(s.prune(old - 1, 10).unwrap(), 0);
    // The expired key is gone: a message an hour after it is new, not its repeat.
    let hour = 3_600_000;
    assert_eq!(
        s.append(&[msg_cmid(ab, a, "old", "an hour later", old + hour)])
            .unwrap(),
        [Appended::New(3)]
    );
    // The fresh key is still there.
    assert_eq!(
        s.append(&[msg_cmid(ab, a, "fresh", "retry", now + 1)])
            .unwrap(),
        [Appended::Duplicate { conv: ab, seq: 2 }]
    );
}

fn log_members_page(s: &dyn Store) {
    let users: Vec<UserId> = (0..5).map(|i| new_user(s, &format!("u{i}"))).collect();
    let outsider = new_user(s, "outsider");
    // Created by the third user, joined by the others in a scrambled order.
    let gid = group_of(s, "g", users[2], &[users[4], users[0], users[3], users[1]]);
    let _other = group_of(s, "other", outsider, &[users[0]]);
    s.claim_session(users[3], "n/1").unwrap();
    let page = |after, limit| -> Vec<(UserId, String, String, String)> {
        s.members_page(gid, after, limit)
            .unwrap()
            .into_iter()
            .map(|m| (m.user.id, m.user.name, m.user.state, m.role))
            .collect()
    };
    let row = |i: usize, state: &str, role: &str| {
        (
            users[i],
            format!("u{i}"),
            state.to_string(),
            role.to_string(),
        )
    };
    assert_eq!(
        page(0, 2),
        [row(0, "offline", "normal"), row(1, "offline", "normal")]
    );
    assert_eq!(
        page(users[1], 2),
        [row(2, "offline", "creator"), row(3, "online", "normal")]
    );
    assert_eq!(page(users[3], 2), [row(4, "offline", "normal")]);
    assert!(page(users[4], 2).is_empty());
    assert_eq!(page(0, 100).len(), 5);
    assert!(page(0, 0).is_empty());
    assert!(s.members_page(gid + 1000, 0, 10).unwrap().is_empty());
}

fn log_group_summaries(s: &dyn Store) {
    let a = new_user(s, "a");
    let b = new_user(s, "b");
    let c = new_user(s, "c");
    let g1 = group_of(s, "one", b, &[a, c]);
    let g2 = group_of(s, "two", a, &[]);
    let g3 = group_of(s, "three", c, &[b]);
    let got: Vec<(GroupId, String, String, usize, u64)> = s
        .group_summaries(a)
        .unwrap()
        .into_iter()
        .map(|(g, n)| (g.id, g.name, g.desc, g.users.len(), n))
        .collect();
    assert_eq!(
        got,
        [
            (g1, "one".to_string(), String::new(), 0, 3),
            (g2, "two".to_string(), String::new(), 0, 1),
        ]
    );
    let ids = |u| -> Vec<(GroupId, u64)> {
        s.group_summaries(u)
            .unwrap()
            .into_iter()
            .map(|(g, n)| (g.id, n))
            .collect()
    };
    assert_eq!(ids(b), [(g1, 3), (g3, 2)]);
    let outsider = new_user(s, "outsider");
    assert!(ids(outsider).is_empty());
    s.join_group(outsider, g2).unwrap();
    assert_eq!(ids(a), [(g1, 3), (g2, 2)]);
}

// ---- Two stores on one database (two servers), and the upgrade of an old database ----

/// A SQLite file is one process's alone: a second store on it is refused (two servers cannot
/// share it), so the concurrency to check is that of threads on one store.
#[test]
fn log_concurrent_appends_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chat.db");
    let path = path.to_str().unwrap();
    let open = || clusterchat::store::sqlite::SqliteStore::open(path, 4);
    let one = open().expect("open sqlite");
    assert!(one.exclusive());
    match open() {
        Err(StoreError::Locked(msg)) => assert!(msg.contains("in use"), "{msg}"),
        Err(e) => panic!("a second store on one SQLite file: {e}"),
        Ok(_) => panic!("a second store on one SQLite file was opened"),
    }
    concurrent_appends(&one, &one);
    concurrent_duplicates(&one, &one);
}

#[test]
fn log_concurrent_appends_mysql() {
    let Some(db) = util::mysql_db::TestDb::create("log_concurrent") else {
        return;
    };
    let open = || clusterchat::store::mysql::MysqlStore::open(&db.url, 4).expect("open mysql");
    let (one, two) = (open(), open());
    concurrent_appends(&one, &two);
    concurrent_duplicates(&one, &two);
}

/// MySQL: an append whose transaction fails after its messages were inserted (here a
/// trigger refuses its cmid row) leaves nothing behind: it is an error, not an ack; the bump
/// and the messages are rolled back; no row lock is kept, so the conversation takes appends
/// again. The append sends several statements in one text, and `query_drop` returns only the
/// first one's error: this fails if a later one's is missed (the COMMIT after it never runs,
/// and the transaction would stay open on a pooled connection).
#[test]
fn log_append_failing_midway_leaves_nothing_mysql() {
    use ::mysql::prelude::Queryable;
    let Some(db) = util::mysql_db::TestDb::create("log_midway") else {
        return;
    };
    let s = clusterchat::store::mysql::MysqlStore::open(&db.url, 1).expect("open mysql");
    let a = new_user(&s, "a");
    let b = new_user(&s, "b");
    let ab = ConvId::pair(a, b);
    assert_eq!(new_seqs(&s.append(&[msg(ab, a, "one")]).unwrap()), vec![1]);
    let mut c = db.conn();
    c.query_drop(
        "CREATE TRIGGER refuse_cmid BEFORE INSERT ON msgcmid FOR EACH ROW \
         SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by the test'",
    )
    .unwrap();
    let two = msg_cmid(ab, a, "c2", "two", T0);
    let got = s.append(std::slice::from_ref(&two));
    assert!(got.is_err(), "acked although its cmid was refused: {got:?}");
    let last: Option<i64> = c
        .query_first(format!(
            "SELECT last_seq FROM conversation WHERE conv = {}",
            ab.0
        ))
        .unwrap();
    assert_eq!(last, Some(1), "the bump was not rolled back");
    assert_eq!(log_of(&s, ab), vec![(1, "one".to_string())]);
    // No lock left behind: another connection updates the row at once.
    c.query_drop("SET SESSION innodb_lock_wait_timeout = 2")
        .unwrap();
    c.query_drop(format!(
        "UPDATE conversation SET usera = usera WHERE conv = {}",
        ab.0
    ))
    .unwrap();
    c.query_drop("DROP TRIGGER refuse_cmid").unwrap();
    assert_eq!(new_seqs(&s.append(&[two]).unwrap()), vec![2]);
    assert_eq!(
        log_of(&s, ab),
        vec![(1, "one".to_string()), (2, "two".to_string())]
    );
}

/// MySQL: a server's node lock tells the others it runs. While one store holds node `n1`'s
/// lock, another sees it running, cannot take the name, and does not release its sessions;
/// once the holder is gone (its connection closed), they are released, and the name is free.
#[test]
fn node_locks_mysql() {
    let Some(db) = util::mysql_db::TestDb::create("node_locks") else {
        return;
    };
    let open = || clusterchat::store::mysql::MysqlStore::open(&db.url, 2).expect("open mysql");
    let (one, two) = (open(), open());
    assert!(!one.exclusive());
    let u = new_user(&one, "held");
    assert_eq!(one.claim_session(u, "n1/7").unwrap(), Claim::Claimed);
    assert!(!two.node_running("n1").unwrap(), "nobody holds n1 yet");
    one.lock_node("n1").unwrap();
    one.keep_node_lock().unwrap();
    assert!(two.node_running("n1").unwrap());
    assert_eq!(two.release_dead_node("n1").unwrap(), None);
    match two.lock_node("n1") {
        Err(StoreError::Locked(msg)) => assert!(msg.contains("node n1"), "{msg}"),
        other => panic!("a second server as n1: {other:?}"),
    }
    assert_eq!(
        two.claim_session(u, "n2/1").unwrap(),
        Claim::HeldBy("n1/7".into())
    );
    // Another database's n1 is another node.
    let Some(other) = util::mysql_db::TestDb::create("node_locks_other") else {
        return;
    };
    let elsewhere = clusterchat::store::mysql::MysqlStore::open(&other.url, 1).unwrap();
    assert!(!elsewhere.node_running("n1").unwrap());
    drop(one);
    // The server notices the closed connection at once; allow it a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while two.node_running("n1").unwrap() {
        assert!(
            std::time::Instant::now() < deadline,
            "n1's lock outlived it"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(two.release_dead_node("n1").unwrap(), Some(1));
    assert_eq!(two.claim_session(u, "n2/1").unwrap(), Claim::Claimed);
    two.lock_node("n1").unwrap();
}

/// SQLite: the store is the process's alone, so no other node can be running on it.
#[test]
fn node_locks_sqlite() {
    let (_dir, s) = sqlite_store();
    assert!(s.exclusive());
    let u = new_user(&*s, "held");
    assert_eq!(s.claim_session(u, "n1/7").unwrap(), Claim::Claimed);
    s.lock_node("n2").unwrap();
    assert!(!s.node_running("n1").unwrap());
    assert_eq!(s.release_dead_node("n1").unwrap(), Some(1));
}

/// Four threads, two on each store, append batches to one conversation (and one to another
/// each): the seqs are 1..N, each once, and the log holds exactly what was acknowledged.
fn concurrent_appends(one: &dyn Store, two: &dyn Store) {
    const THREADS: usize = 4;
    const BATCHES: usize = 40;
    const PER_BATCH: usize = 5;
    let a = new_user(one, "a");
    let b = new_user(one, "b");
    let shared = ConvId::pair(a, b);
    let barrier = Barrier::new(THREADS);
    let acked: Vec<Vec<(Seq, String)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let s = if t % 2 == 0 { one } else { two };
                let barrier = &barrier;
                scope.spawn(move || {
                    let own = ConvId::group(1000 + t as i64);
                    barrier.wait();
                    let mut acked = Vec::new();
                    for k in 0..BATCHES {
                        let bodies: Vec<String> =
                            (0..PER_BATCH).map(|i| format!("t{t} b{k} m{i}")).collect();
                        let mut batch: Vec<Append<'_>> =
                            bodies.iter().map(|x| msg(shared, a, x)).collect();
                        batch.insert(2, msg(own, a, "own"));
                        let out = new_seqs(&s.append(&batch).unwrap());
                        assert_eq!(out[2], k as Seq + 1, "thread {t}'s own conversation");
                        let mine: Vec<Seq> = out
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| *i != 2)
                            .map(|(_, q)| *q)
                            .collect();
                        assert!(
                            mine.windows(2).all(|w| w[1] == w[0] + 1),
                            "a batch's seqs are consecutive: {mine:?}"
                        );
                        acked.extend(mine.into_iter().zip(bodies));
                    }
                    acked
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<(Seq, String)> = acked.into_iter().flatten().collect();
    all.sort();
    let n = (THREADS * BATCHES * PER_BATCH) as Seq;
    assert_eq!(
        all.iter().map(|(q, _)| *q).collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>()
    );
    assert_eq!(log_of(one, shared), all);
    assert_eq!(log_of(two, shared), all);
}

/// The same `(sender, cmid)` sent at once through both stores: one is stored, the others
/// name it.
fn concurrent_duplicates(one: &dyn Store, two: &dyn Store) {
    const THREADS: usize = 4;
    const KEYS: usize = 30;
    let a = new_user(one, "dup-a");
    let b = new_user(one, "dup-b");
    let ab = ConvId::pair(a, b);
    let barrier = Barrier::new(THREADS);
    let outcomes: Vec<Vec<Appended>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let s = if t % 2 == 0 { one } else { two };
                let barrier = &barrier;
                scope.spawn(move || {
                    (0..KEYS)
                        .map(|k| {
                            let cmid = format!("k{k}");
                            barrier.wait();
                            let out = s.append(&[msg_cmid(ab, a, &cmid, "same", T0)]).unwrap();
                            out[0]
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut seqs = BTreeSet::new();
    for k in 0..KEYS {
        let of_k: Vec<Appended> = outcomes.iter().map(|o| o[k]).collect();
        let new: Vec<Seq> = of_k
            .iter()
            .filter_map(|x| match x {
                Appended::New(q) => Some(*q),
                _ => None,
            })
            .collect();
        assert_eq!(new.len(), 1, "key {k}: exactly one stored: {of_k:?}");
        for x in &of_k {
            if let Appended::Duplicate { conv, seq } = x {
                assert_eq!((*conv, *seq), (ab, new[0]), "key {k}: {of_k:?}");
            }
        }
        seqs.insert(new[0]);
    }
    assert_eq!(seqs, (1..=KEYS as Seq).collect());
    assert_eq!(log_of(one, ab).len(), KEYS);
}

/// The tables of a database from before the message log (SQLite), as main created them.
const OLD_SQLITE_SCHEMA: &str = "
CREATE TABLE user(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL,
    password TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'offline'
    CHECK (state IN ('online', 'offline')), session TEXT NULL);
CREATE INDEX user_session ON user(session);
CREATE TABLE friend(userid INTEGER NOT NULL REFERENCES user(id),
    friendid INTEGER NOT NULL REFERENCES user(id), PRIMARY KEY (userid, friendid));
CREATE TABLE allgroup(id INTEGER PRIMARY KEY AUTOINCREMENT, groupname TEXT NOT NULL UNIQUE,
    groupdesc TEXT NOT NULL DEFAULT '');
CREATE TABLE groupuser(groupid INTEGER NOT NULL REFERENCES allgroup(id),
    userid INTEGER NOT NULL REFERENCES user(id),
    grouprole TEXT NOT NULL CHECK (grouprole IN ('creator', 'normal')),
    PRIMARY KEY (groupid, userid));
CREATE INDEX groupuser_user ON groupuser(userid);
CREATE TABLE offlinemessage(seq INTEGER PRIMARY KEY AUTOINCREMENT,
    userid INTEGER NOT NULL REFERENCES user(id), message TEXT NOT NULL);
CREATE INDEX offlinemessage_user_seq ON offlinemessage(userid, seq);
";

/// The same for MySQL (main's schema.sql).
const OLD_MYSQL_SCHEMA: &[&str] = &[
    "CREATE TABLE user (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, name VARCHAR(50) NOT NULL,
     password VARCHAR(255) NOT NULL, state ENUM('online', 'offline') NOT NULL DEFAULT 'offline',
     session VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
     INDEX user_session (session)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE friend (userid INT NOT NULL, friendid INT NOT NULL,
     PRIMARY KEY (userid, friendid), FOREIGN KEY (userid) REFERENCES user (id),
     FOREIGN KEY (friendid) REFERENCES user (id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE allgroup (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
     groupname VARCHAR(50) NOT NULL, groupdesc VARCHAR(200) NOT NULL DEFAULT '',
     UNIQUE KEY allgroup_name (groupname)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE groupuser (groupid INT NOT NULL, userid INT NOT NULL,
     grouprole ENUM('creator', 'normal') NOT NULL, PRIMARY KEY (groupid, userid),
     INDEX groupuser_user (userid), FOREIGN KEY (groupid) REFERENCES allgroup (id),
     FOREIGN KEY (userid) REFERENCES user (id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE offlinemessage (seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
     userid INT NOT NULL, message MEDIUMTEXT NOT NULL,
     INDEX offlinemessage_user_seq (userid, seq), FOREIGN KEY (userid) REFERENCES user (id))
     ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
];

const ALICE: UserId = 1;
const BOB: UserId = 2;
const CAROL: UserId = 3;
const DAVE: UserId = 4;
const GROUP: GroupId = 1;

fn pair_frame(from: UserId, to: UserId, text: &str) -> String {
    format!(
        r#"{{"msgid":6,"id":{from},"name":"u{from}","toid":{to},"msg":"{text}","time":"2024-05-01 10:00:00"}}"#
    )
}

fn group_frame(from: UserId, group: GroupId, text: &str) -> String {
    format!(
        r#"{{"msgid":10,"id":{from},"name":"u{from}","groupid":{group},"msg":"{text}","time":"2024-05-01 10:00:00"}}"#
    )
}

/// The rows of an old database.
struct OldRows {
    /// (id, name)
    users: Vec<(UserId, &'static str)>,
    /// Group 1's (member, role)
    members: Vec<(UserId, &'static str)>,
    /// The offline queue: (seq, receiver, frame)
    queue: Vec<(i64, UserId, String)>,
}

/// The old database's rows: users alice, bob, carol, dave (1-4), group 1 of all four created
/// by alice, and the offline queue. Bob and carol were offline when alice wrote "g1" to the
/// group (one copy each); dave was online throughout.
fn old_rows() -> OldRows {
    let users = vec![
        (ALICE, "alice"),
        (BOB, "bob"),
        (CAROL, "carol"),
        (DAVE, "dave"),
    ];
    let members = vec![
        (ALICE, "creator"),
        (BOB, "normal"),
        (CAROL, "normal"),
        (DAVE, "normal"),
    ];
    let queue = vec![
        (1, BOB, pair_frame(ALICE, BOB, "p1")),
        (2, CAROL, group_frame(ALICE, GROUP, "g1")),
        (3, BOB, group_frame(ALICE, GROUP, "g1")),
        (4, BOB, pair_frame(ALICE, BOB, "p2")),
        (5, CAROL, pair_frame(DAVE, CAROL, "p3")),
        (6, BOB, group_frame(CAROL, GROUP, "g2")),
        (7, BOB, "garbage, not JSON".to_string()),
        (8, BOB, pair_frame(99, BOB, "from nobody")),
        (9, CAROL, group_frame(ALICE, 42, "to no group")),
        (10, BOB, r#"{"msgid":5,"errno":0,"id":2}"#.to_string()),
    ];
    OldRows {
        users,
        members,
        queue,
    }
}

#[test]
fn log_migration_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("old.db");
    let path = path.to_str().unwrap().to_string();
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(OLD_SQLITE_SCHEMA).unwrap();
        let OldRows {
            users,
            members,
            queue,
        } = old_rows();
        for (id, name) in users {
            c.execute(
                "INSERT INTO user(id, name, password) VALUES (?, ?, 'h')",
                rusqlite::params![id, name],
            )
            .unwrap();
        }
        c.execute(
            "INSERT INTO allgroup(id, groupname, groupdesc) VALUES (1, 'old', '')",
            [],
        )
        .unwrap();
        for (id, role) in members {
            c.execute(
                "INSERT INTO groupuser(groupid, userid, grouprole) VALUES (1, ?, ?)",
                rusqlite::params![id, role],
            )
            .unwrap();
        }
        for (seq, user, message) in queue {
            c.execute(
                "INSERT INTO offlinemessage(seq, userid, message) VALUES (?, ?, ?)",
                rusqlite::params![seq, user, message],
            )
            .unwrap();
        }
    }
    let open = || -> Box<dyn Store> {
        Box::new(clusterchat::store::sqlite::SqliteStore::open(&path, 2).expect("open old sqlite"))
    };
    check_migration(&open);
}

#[test]
fn log_migration_mysql() {
    use ::mysql::prelude::Queryable;
    let Some(db) = util::mysql_db::TestDb::create("log_migration") else {
        return;
    };
    {
        let mut c = db.conn();
        for stmt in OLD_MYSQL_SCHEMA {
            c.query_drop(stmt).unwrap();
        }
        let OldRows {
            users,
            members,
            queue,
        } = old_rows();
        for (id, name) in users {
            c.exec_drop(
                "INSERT INTO user(id, name, password) VALUES (?, ?, 'h')",
                (id, name),
            )
            .unwrap();
        }
        c.query_drop("INSERT INTO allgroup(id, groupname, groupdesc) VALUES (1, 'old', '')")
            .unwrap();
        for (id, role) in members {
            c.exec_drop(
                "INSERT INTO groupuser(groupid, userid, grouprole) VALUES (1, ?, ?)",
                (id, role),
            )
            .unwrap();
        }
        for (seq, user, message) in queue {
            c.exec_drop(
                "INSERT INTO offlinemessage(seq, userid, message) VALUES (?, ?, ?)",
                (seq, user, message),
            )
            .unwrap();
        }
    }
    let open = || -> Box<dyn Store> {
        Box::new(clusterchat::store::mysql::MysqlStore::open(&db.url, 2).expect("open old mysql"))
    };
    check_migration(&open);
}

/// Opens the old database (see [`old_rows`]) and checks the log, the cursors, unread() and
/// what stayed in the old queue; then reopens it (nothing moves twice), lets the old queue
/// get two more messages (servers that still use it) and reopens it again.
fn check_migration(open: &dyn Fn() -> Box<dyn Store>) {
    let (ab, cd, g) = (
        ConvId::pair(ALICE, BOB),
        ConvId::pair(CAROL, DAVE),
        ConvId::group(GROUP),
    );
    let check_first = |s: &dyn Store| {
        assert_eq!(
            log_of(s, ab),
            [
                (1, pair_frame(ALICE, BOB, "p1")),
                (2, pair_frame(ALICE, BOB, "p2"))
            ]
        );
        // The two copies of "g1" are one message.
        assert_eq!(
            log_of(s, g),
            [
                (1, group_frame(ALICE, GROUP, "g1")),
                (2, group_frame(CAROL, GROUP, "g2"))
            ]
        );
        assert_eq!(log_of(s, cd), [(1, pair_frame(DAVE, CAROL, "p3"))]);
        for other in [
            ConvId::pair(BOB, 99),
            ConvId::group(42),
            ConvId::pair(ALICE, CAROL),
        ] {
            assert!(log_of(s, other).is_empty());
        }
        // Receivers start before their first migrated message; the others (the senders,
        // dave who was online) have seen everything.
        assert_eq!(s.unread(BOB).unwrap(), [unread(g, 0, 2), unread(ab, 0, 2)]);
        assert_eq!(
            s.unread(CAROL).unwrap(),
            [unread(g, 0, 2), unread(cd, 0, 1)]
        );
        assert!(s.unread(ALICE).unwrap().is_empty());
        assert!(s.unread(DAVE).unwrap().is_empty());
        assert_eq!(s.join_floor(GROUP, BOB).unwrap(), Some(0));
    };
    {
        let s = open();
        check_first(&*s);
    }
    // Nothing moves twice; the rows that could not be read are still queued.
    {
        let s = open();
        check_first(&*s);
        // Servers still on the old queue add to it.
        s.store_offline(BOB, &pair_frame(ALICE, BOB, "p4")).unwrap();
        s.store_offline_many(&[BOB, CAROL], &group_frame(DAVE, GROUP, "g3"))
            .unwrap();
    }
    let s = open();
    assert_eq!(log_of(&*s, ab).len(), 3);
    assert_eq!(log_of(&*s, ab)[2], (3, pair_frame(ALICE, BOB, "p4")));
    assert_eq!(log_of(&*s, g).len(), 3);
    assert_eq!(log_of(&*s, g)[2], (3, group_frame(DAVE, GROUP, "g3")));
    // Bob and carol had unread messages already: their cursors stay; alice and dave had
    // seen everything and still have.
    assert_eq!(s.unread(BOB).unwrap(), [unread(g, 0, 3), unread(ab, 0, 3)]);
    assert_eq!(
        s.unread(CAROL).unwrap(),
        [unread(g, 0, 3), unread(cd, 0, 1)]
    );
    assert!(s.unread(ALICE).unwrap().is_empty());
    assert!(s.unread(DAVE).unwrap().is_empty());
    // New messages go on from the migrated ones.
    assert_eq!(
        s.append(&[msg(ab, ALICE, "new")]).unwrap(),
        [Appended::New(4)]
    );
    // The rows that could not be moved are still in the old queue, in order.
    assert_eq!(
        s.take_offline(BOB).unwrap(),
        [
            "garbage, not JSON".to_string(),
            pair_frame(99, BOB, "from nobody"),
            r#"{"msgid":5,"errno":0,"id":2}"#.to_string(),
        ]
    );
    assert_eq!(
        s.take_offline(CAROL).unwrap(),
        [group_frame(ALICE, 42, "to no group")]
    );
    assert!(s.take_offline(ALICE).unwrap().is_empty());
}

/// Users of a database from before unique names: (id, name). 1 keeps "alice" (lowest id);
/// 2 and 4 are renamed; 5 keeps "alice#2", which 2's first new name would have taken; accents
/// count, so 6 and 7 both keep theirs.
const DUPLICATE_NAMES: &[(UserId, &str)] = &[
    (1, "alice"),
    (2, "Alice"),
    (3, "bob"),
    (4, " ALICE "),
    (5, "alice#2"),
    (6, "Zoë"),
    (7, "zoe"),
];

#[test]
fn duplicate_names_upgrade_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("old.db");
    let path = path.to_str().unwrap().to_string();
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(OLD_SQLITE_SCHEMA).unwrap();
        for (id, name) in DUPLICATE_NAMES {
            c.execute(
                "INSERT INTO user(id, name, password) VALUES (?, ?, ?)",
                rusqlite::params![id, name, format!("hash-{id}")],
            )
            .unwrap();
        }
    }
    let open = || -> Box<dyn Store> {
        Box::new(clusterchat::store::sqlite::SqliteStore::open(&path, 2).expect("open old sqlite"))
    };
    check_names_upgrade(&open);
}

#[test]
fn duplicate_names_upgrade_mysql() {
    use ::mysql::prelude::Queryable;
    let Some(db) = util::mysql_db::TestDb::create("names_upgrade") else {
        return;
    };
    {
        let mut c = db.conn();
        for stmt in OLD_MYSQL_SCHEMA {
            c.query_drop(stmt).unwrap();
        }
        for (id, name) in DUPLICATE_NAMES {
            c.exec_drop(
                "INSERT INTO user(id, name, password) VALUES (?, ?, ?)",
                (id, name, format!("hash-{id}")),
            )
            .unwrap();
        }
    }
    let open = || -> Box<dyn Store> {
        Box::new(clusterchat::store::mysql::MysqlStore::open(&db.url, 2).expect("open old mysql"))
    };
    check_names_upgrade(&open);
}

/// Opens the database of [`DUPLICATE_NAMES`] twice (the second open changes nothing) and
/// checks that every account is kept, with its password, under a unique name.
fn check_names_upgrade(open: &dyn Fn() -> Box<dyn Store>) {
    let expected = [
        (1, "alice"),
        (2, "Alice#2.2"),
        (3, "bob"),
        (4, "ALICE#4"),
        (5, "alice#2"),
        (6, "Zoë"),
        (7, "zoe"),
    ];
    for _ in 0..2 {
        let s = open();
        for (id, name) in expected {
            let rec = s.user(id).unwrap().expect("no account is lost");
            assert_eq!(rec.name, name);
            assert_eq!(rec.password_hash, format!("hash-{id}"));
            let by_name = s.user_by_name(&name.to_uppercase()).unwrap();
            assert_eq!(by_name.map(|u| u.id), Some(id), "{name}");
        }
        // From now on the names are unique.
        for taken in ["ALICE", "alice#2.2", "Alice#4", "ZOË"] {
            assert!(
                matches!(s.register(taken, "h"), Err(StoreError::Conflict(_))),
                "{taken}"
            );
        }
    }
    // New users go on after the old ids.
    assert!(open().register("carol", "h").unwrap() > 7);
}
