//! A user whose groups would make a legacy LOGIN_ACK larger than 64 KiB, on SQLite and on
//! MySQL: the login succeeds, its LOGIN_ACK is at most 64 KiB (measured in bytes on the wire)
//! and what it lists is true, only cut; a sync login lists every group with its member count.
//!
//! Names full of `"` and `\` keep the setup small: the group list nests JSON in strings twice
//! (a member in a group's `users`, a group in `groups`), so each such character costs 8 bytes.

mod util;

use serde_json::{json, Value};
use std::collections::HashMap;
use util::chatlog::{logout, pw, read_sync, sync_login, LOGIN, LOGIN_ACK};
use util::raw_conn::RawConn;
use util::server::TestServer;

const GROUPS: usize = 6;
const MEMBERS: usize = 30;

/// A name of exactly `len` characters: `tag`, then `"` and `\` alternating.
fn heavy(tag: &str, len: usize) -> String {
    let mut s = tag.to_string();
    while s.chars().count() < len {
        s.push(if s.len() % 2 == 0 { '"' } else { '\\' });
    }
    s
}

/// Decodes a list of JSON-encoded strings.
fn strings(v: &Value) -> Vec<Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| serde_json::from_str(s.as_str().expect("a JSON string")).expect("JSON"))
        .collect()
}

fn a_group_list_over_64_kib_is_cut_and_the_login_succeeds() {
    let srv = TestServer::start();
    let owner = "owner";
    let (mut o, ido) = srv.user(owner);
    let mut groups = HashMap::new(); // id -> (name, desc)
    for g in 0..GROUPS {
        let (name, desc) = (heavy(&format!("g{g}"), 50), heavy(&format!("d{g}"), 200));
        let id = o.create_group(ido, &name, &desc).unwrap();
        groups.insert(id, (name, desc));
    }
    let mut members = HashMap::from([(ido, (owner.to_string(), "creator"))]);
    for m in 0..MEMBERS {
        let name = heavy(&format!("m{m}"), 50);
        let (mut c, id) = srv.user(&name);
        for g in groups.keys() {
            c.join_group(id, *g).unwrap();
        }
        c.logout(id).unwrap();
        members.insert(id, (name, "normal"));
    }
    logout(&mut o);

    // What a LOGIN_ACK listing everything would weigh.
    let users: Vec<String> = members
        .iter()
        .map(|(id, (name, role))| {
            json!({"id": id, "name": name, "role": role, "state": "offline"}).to_string()
        })
        .collect();
    let full: Vec<String> = groups
        .iter()
        .map(|(id, (name, desc))| {
            json!({"groupdesc": desc, "groupname": name, "id": id, "users": users}).to_string()
        })
        .collect();
    let full_size = json!({"msgid": 2, "errno": 0, "id": ido, "name": owner, "friends": [],
        "groups": full, "offlinemsg": []})
    .to_string()
    .len();
    assert!(
        full_size > 80 * 1024,
        "the setup is too small: {full_size} B"
    );

    let mut conn = RawConn::connect(srv.addr);
    conn.send(&json!({"msgid": LOGIN, "id": ido, "password": pw(owner)}));
    let (size, ack) = conn.next();
    assert_eq!(
        (&ack["msgid"], &ack["errno"]),
        (&json!(LOGIN_ACK), &json!(0)),
        "{:.300}",
        ack.to_string()
    );
    assert!(
        size <= 64 * 1024,
        "legacy LOGIN_ACK of {size} bytes (all of it: {full_size})"
    );
    // What it lists is true: real groups with their names, real members with their roles.
    let listed = strings(&ack["groups"]);
    let mut entries = 0;
    for g in &listed {
        let id = g["id"].as_i64().unwrap_or_else(|| panic!("group id: {g}"));
        let (name, desc) = &groups[&id];
        assert_eq!(
            (&g["groupname"], &g["groupdesc"]),
            (&json!(name), &json!(desc))
        );
        for u in strings(&g["users"]) {
            let uid = u["id"].as_i64().unwrap();
            let (uname, role) = &members[&uid];
            assert_eq!(
                (&u["name"], &u["role"]),
                (&json!(uname), &json!(role)),
                "{u}"
            );
            entries += 1;
        }
    }
    eprintln!(
        "legacy LOGIN_ACK: {size} B of {full_size}: {} of {GROUPS} groups, {entries} of {} members",
        listed.len(),
        GROUPS * (MEMBERS + 1)
    );
    // Cut, not emptied: a group is about a sixth of the full reply, so some must fit.
    assert!(
        listed.len() >= 2,
        "only {} of {GROUPS} groups kept in {size} B",
        listed.len()
    );
    conn.close();

    // A sync login lists every group, with its member count.
    let (mut c, ack) = sync_login(srv.addr, ido, &pw(owner));
    let listed = strings(&ack["groups"]);
    assert_eq!(listed.len(), GROUPS, "{ack}");
    for g in &listed {
        assert!(groups.contains_key(&g["id"].as_i64().unwrap()), "{g}");
        assert_eq!(g["members"], MEMBERS + 1, "{g}");
        assert!(g.get("users").is_none(), "{g}");
    }
    assert_eq!(read_sync(&mut c).count, 0);
}

on_both_backends!(a_group_list_over_64_kib_is_cut_and_the_login_succeeds);
