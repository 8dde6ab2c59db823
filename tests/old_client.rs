//! Wire compatibility with the ORIGINAL menu-driven C++ client of the muduo chat server.
//!
//! Nothing here uses `clusterchat::client`: each test speaks over a bare [`TcpStream`] and does
//! exactly what the old client does.
//!
//! * **Sending.** The client builds an `nlohmann::json` object and calls
//!   `send(fd, s.c_str(), strlen(s.c_str()) + 1, 0)`: the compact `dump()` text followed by
//!   one NUL byte. `nlohmann::json` keeps its keys in a `std::map`, so `dump()` writes them in
//!   byte order, not in the order the source assigns them (`msgid, id, name, toid, msg, time`
//!   goes out as `id, msg, msgid, name, time, toid`). [`dump`] reproduces that text byte for
//!   byte; one request also goes out in source order, to show that the order does not matter.
//! * **Receiving.** Every reply is read by one `recv(fd, buffer, 1024, 0)` into a zeroed
//!   buffer, then `json::parse(buffer)`, which stops at the first NUL. So a reply is only read
//!   correctly if one `recv` holds exactly one object followed by its NUL, in less than
//!   1024 bytes. A second object in the same `recv` would be lost without a trace.
//!   [`OldClient::recv`] enforces all of that.
//! * **Parsing.** The client reads `errno`, `id`, `name` with `get<int>()` / string
//!   conversions, and `friends`, `groups`, the groups' `users` and `offlinemsg` as
//!   `vector<string>`, each string being JSON text in its turn. The `read_*` helpers apply the
//!   same conversions and fail where the C++ code would throw.
//! * **Silence.** The original server answers ADD_FRIEND, ADD_GROUP, ONE_CHAT, GROUP_CHAT and
//!   LOGINOUT with nothing. [`OldClient::expect_silence`] checks that no extra reply turns up,
//!   because one could share a `recv` with a chat message and hide it.

mod util;

use serde_json::{json, Map, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use util::server::TestServer;

/// The original's `EnMsgType` values.
const LOGIN_MSG: i64 = 1;
const LOGIN_MSG_ACK: i64 = 2;
const LOGINOUT_MSG: i64 = 3;
const REG_MSG: i64 = 4;
const REG_MSG_ACK: i64 = 5;
const ONE_CHAT_MSG: i64 = 6;
const ADD_FRIEND_MSG: i64 = 7;
const CREATE_GROUP_MSG: i64 = 8;
const ADD_GROUP_MSG: i64 = 9;
const GROUP_CHAT_MSG: i64 = 10;

/// The old client's receive buffer: `char buffer[1024] = {0}`.
const RECV_BUFFER: usize = 1024;

/// The text `nlohmann::json::dump()` writes for an object with these members: compact, with
/// the keys in byte order (its objects are `std::map`s), strings escaped as JSON.
fn dump(fields: &[(&str, Value)]) -> String {
    let mut sorted: Vec<&(&str, Value)> = fields.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    in_order(sorted.into_iter())
}

/// The compact JSON text of these members, in the order given.
fn in_order<'a>(fields: impl Iterator<Item = &'a (&'a str, Value)>) -> String {
    let members: Vec<String> = fields
        .map(|(k, v)| format!("{}:{}", Value::from(*k), v))
        .collect();
    format!("{{{}}}", members.join(","))
}

/// A timestamp in the format of the old client's `getCurrentTime()`.
fn now_text() -> String {
    "2024-05-01 12:34:56".to_string()
}

/// One connection that behaves like the old C++ client.
struct OldClient {
    stream: TcpStream,
    /// The user logged in on this connection (`g_currentUser`).
    id: i64,
    name: String,
}

impl OldClient {
    /// `socket()` + `connect()`.
    fn connect(srv: &TestServer) -> OldClient {
        let stream = TcpStream::connect(srv.addr).expect("connect");
        OldClient {
            stream,
            id: -1,
            name: String::new(),
        }
    }

    /// `send(clientfd, request.c_str(), strlen(request.c_str()) + 1, 0)`.
    fn send_text(&mut self, text: &str) {
        let mut bytes = text.as_bytes().to_vec();
        bytes.push(0);
        self.stream.write_all(&bytes).expect("send");
    }

    /// `recv(clientfd, buffer, 1024, 0)` then `json::parse(buffer)`, checking that this one
    /// `recv` holds exactly one object followed by a NUL (so nothing else is lost with it).
    fn recv(&mut self) -> Value {
        let text = self.recv_text();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("json::parse throws ({e}): {text}"))
    }

    /// Like [`OldClient::recv`], returning the JSON text before the NUL.
    fn recv_text(&mut self) -> String {
        self.stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buffer = [0u8; RECV_BUFFER];
        let n = self.stream.read(&mut buffer).expect("recv");
        assert!(n > 0, "the server closed the connection");
        assert!(
            n < RECV_BUFFER,
            "a reply of {n} bytes fills the 1024-byte buffer: json::parse would run past it"
        );
        let got = &buffer[..n];
        let nul = got.iter().position(|&b| b == 0).unwrap_or_else(|| {
            panic!("no NUL after the reply: {:?}", String::from_utf8_lossy(got))
        });
        assert_eq!(
            nul,
            n - 1,
            "one recv() returned more than one object; json::parse(buffer) keeps only the \
             first and the rest is lost: {:?}",
            String::from_utf8_lossy(got)
        );
        String::from_utf8(got[..nul].to_vec()).expect("UTF-8 reply")
    }

    /// Checks that nothing arrives for a while (the original answers with silence).
    fn expect_silence(&mut self, after: &str) {
        self.stream
            .set_read_timeout(Some(Duration::from_millis(250)))
            .unwrap();
        let mut buffer = [0u8; RECV_BUFFER];
        match self.stream.read(&mut buffer) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Ok(n) => panic!(
                "after {after} the original says nothing, but {:?} arrived",
                String::from_utf8_lossy(&buffer[..n])
            ),
            Err(e) => panic!("recv after {after}: {e}"),
        }
    }

    /// Menu choice 2, "register": sends REG_MSG and reads REG_MSG_ACK. Returns
    /// `Ok(id)` where the client prints "register success, userid is <id>", `Err(ack)` where
    /// it prints "is already exist, register error!".
    fn register(&mut self, name: &str, password: &str) -> Result<i64, Value> {
        self.send_text(&dump(&[
            ("msgid", json!(REG_MSG)),
            ("name", json!(name)),
            ("password", json!(password)),
        ]));
        let ack = self.recv();
        assert_eq!(msgid(&ack), REG_MSG_ACK, "{ack}");
        if int(&ack, "errno") != 0 {
            return Err(ack);
        }
        Ok(int(&ack, "id"))
    }

    /// Menu choice 1, "login": sends LOGIN_MSG and reads LOGIN_MSG_ACK as the old client
    /// does. On success the connection's user is set (`g_currentUser`).
    fn login(&mut self, id: i64, password: &str) -> Result<LoginView, Value> {
        self.send_text(&dump(&[
            ("msgid", json!(LOGIN_MSG)),
            ("id", json!(id)),
            ("password", json!(password)),
        ]));
        let ack = self.recv();
        assert_eq!(msgid(&ack), LOGIN_MSG_ACK, "{ack}");
        if int(&ack, "errno") != 0 {
            // `cerr << responsejs["errmsg"]`: printed as JSON, so any value shows; it should
            // be the sentence, though.
            assert!(ack["errmsg"].is_string(), "errmsg: {ack}");
            return Err(ack);
        }
        let view = read_login_ack(&ack);
        self.id = view.id;
        self.name = view.name.clone();
        Ok(view)
    }

    /// `chat:<toid>:<msg>`; returns the text sent (without the NUL).
    fn chat(&mut self, toid: i64, msg: &str) -> String {
        let text = dump(&[
            ("msgid", json!(ONE_CHAT_MSG)),
            ("id", json!(self.id)),
            ("name", json!(self.name)),
            ("toid", json!(toid)),
            ("msg", json!(msg)),
            ("time", json!(now_text())),
        ]);
        self.send_text(&text);
        text
    }

    /// `groupchat:<groupid>:<msg>`; returns the text sent (without the NUL).
    fn group_chat(&mut self, groupid: i64, msg: &str) -> String {
        let text = dump(&[
            ("msgid", json!(GROUP_CHAT_MSG)),
            ("id", json!(self.id)),
            ("name", json!(self.name)),
            ("groupid", json!(groupid)),
            ("msg", json!(msg)),
            ("time", json!(now_text())),
        ]);
        self.send_text(&text);
        text
    }

    /// `addfriend:<friendid>`.
    fn add_friend(&mut self, friendid: i64) {
        self.send_text(&dump(&[
            ("msgid", json!(ADD_FRIEND_MSG)),
            ("id", json!(self.id)),
            ("friendid", json!(friendid)),
        ]));
    }

    /// `creategroup:<groupname>:<groupdesc>`.
    fn create_group(&mut self, name: &str, desc: &str) {
        self.send_text(&dump(&[
            ("msgid", json!(CREATE_GROUP_MSG)),
            ("id", json!(self.id)),
            ("groupname", json!(name)),
            ("groupdesc", json!(desc)),
        ]));
    }

    /// `addgroup:<groupid>`.
    fn add_group(&mut self, groupid: i64) {
        self.send_text(&dump(&[
            ("msgid", json!(ADD_GROUP_MSG)),
            ("id", json!(self.id)),
            ("groupid", json!(groupid)),
        ]));
    }

    /// `loginout`: back to the first menu; the socket stays open.
    fn loginout(&mut self) {
        self.send_text(&dump(&[
            ("msgid", json!(LOGINOUT_MSG)),
            ("id", json!(self.id)),
        ]));
    }
}

/// `js["msgid"].get<int>()`.
fn msgid(v: &Value) -> i64 {
    int(v, "msgid")
}

/// `js[key].get<int>()`: a JSON integer that fits a C++ `int`, or the client throws.
fn int(v: &Value, key: &str) -> i64 {
    let n = v[key]
        .as_i64()
        .unwrap_or_else(|| panic!("get<int>() on `{key}` throws: {v}"));
    assert!(i32::try_from(n).is_ok(), "`{key}` does not fit an int: {v}");
    n
}

/// `string s = js[key]` (or `.get<string>()`): a JSON string, or the client throws.
fn text(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` is not a string, the conversion throws: {v}"))
        .to_string()
}

/// `vector<string> vec = js[key]`, each element then `json::parse`d.
fn string_list(v: &Value, key: &str) -> Vec<Value> {
    let Some(list) = v.get(key) else {
        // The client reads the list only `if (responsejs.contains(key))`.
        return Vec::new();
    };
    list.as_array()
        .unwrap_or_else(|| panic!("`{key}` is not an array, vector<string> throws: {v}"))
        .iter()
        .map(|s| {
            let s = s
                .as_str()
                .unwrap_or_else(|| panic!("an element of `{key}` is not a string: {v}"));
            serde_json::from_str(s).unwrap_or_else(|e| panic!("json::parse({s:?}) throws: {e}"))
        })
        .collect()
}

/// A user as the client keeps it (`User`, or `GroupUser` with its role).
#[derive(Debug, Clone, PartialEq, Eq)]
struct UserView {
    id: i64,
    name: String,
    state: String,
    /// Only for group members.
    role: Option<String>,
}

/// A group as the client keeps it (`Group`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupView {
    id: i64,
    name: String,
    desc: String,
    users: Vec<UserView>,
}

/// What the client takes from a successful LOGIN_MSG_ACK.
#[derive(Debug, Clone)]
struct LoginView {
    id: i64,
    name: String,
    friends: Vec<UserView>,
    groups: Vec<GroupView>,
    /// Each offline message as the JSON object the client parses it into.
    offline: Vec<Value>,
    /// The same, as the JSON text the server listed (the frame as it was sent).
    offline_text: Vec<String>,
}

/// Reads a successful LOGIN_MSG_ACK the way the old client's login branch does.
fn read_login_ack(ack: &Value) -> LoginView {
    assert_eq!(int(ack, "errno"), 0, "{ack}");
    let user = |js: &Value, with_role: bool| UserView {
        id: int(js, "id"),
        name: text(js, "name"),
        state: text(js, "state"),
        role: with_role.then(|| text(js, "role")),
    };
    let friends = string_list(ack, "friends")
        .iter()
        .map(|js| user(js, false))
        .collect();
    let groups = string_list(ack, "groups")
        .iter()
        .map(|g| GroupView {
            id: int(g, "id"),
            name: text(g, "groupname"),
            desc: text(g, "groupdesc"),
            users: string_list(g, "users")
                .iter()
                .map(|u| user(u, true))
                .collect(),
        })
        .collect();
    let offline: Vec<Value> = string_list(ack, "offlinemsg");
    for m in &offline {
        read_chat(m);
    }
    let offline_text = ack
        .get("offlinemsg")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    LoginView {
        id: int(ack, "id"),
        name: text(ack, "name"),
        friends,
        groups,
        offline,
        offline_text,
    }
}

/// What the client prints for a chat message (pushed or offline):
/// `time [id]name said: msg`, with `群消息[groupid]:` in front for group messages.
fn read_chat(js: &Value) -> String {
    let line = format!(
        "{} [{}]{} said: {}",
        text(js, "time"),
        js["id"],
        text(js, "name"),
        text(js, "msg")
    );
    match msgid(js) {
        ONE_CHAT_MSG => line,
        GROUP_CHAT_MSG => format!("群消息[{}]:{line}", js["groupid"]),
        other => panic!("an offline message with msgid {other}: {js}"),
    }
}

/// Registers `name` on a fresh connection the way a user of the old client would.
fn register(srv: &TestServer, name: &str) -> i64 {
    let mut c = OldClient::connect(srv);
    c.register(name, &format!("pw-{name}"))
        .unwrap_or_else(|ack| panic!("register {name}: {ack}"))
}

#[test]
fn register_answers_reg_ack_with_the_new_id() {
    let srv = TestServer::start();
    let mut c = OldClient::connect(&srv);
    let a = c.register("alice", "pw-alice").expect("register alice");
    let b = c.register("bob", "pw-bob").expect("register bob");
    assert!(a > 0 && b > 0 && a != b, "ids {a} and {b}");

    // An empty name is refused; the client only looks at errno != 0.
    let ack = c.register("", "pw").expect_err("empty name");
    assert_ne!(int(&ack, "errno"), 0, "{ack}");
}

#[test]
fn login_errors_carry_errno_and_errmsg() {
    let srv = TestServer::start();
    let id = register(&srv, "carol");
    let mut c = OldClient::connect(&srv);

    let wrong = c.login(id, "wrong").expect_err("wrong password");
    assert_eq!(int(&wrong, "errno"), 1, "{wrong}");
    assert_eq!(text(&wrong, "errmsg"), "id or password is invalid!");

    let unknown = c.login(id + 1000, "pw-carol").expect_err("unknown id");
    assert_eq!(int(&unknown, "errno"), 1, "{unknown}");

    // Back at the first menu after a failure, the same connection logs in fine.
    let me = c.login(id, "pw-carol").expect("login");
    assert_eq!((me.id, me.name.as_str()), (id, "carol"));

    let mut other = OldClient::connect(&srv);
    let busy = other.login(id, "pw-carol").expect_err("already online");
    assert_eq!(int(&busy, "errno"), 2, "{busy}");
    assert_eq!(
        text(&busy, "errmsg"),
        "this account is using, input another!"
    );
}

#[test]
fn a_whole_session_as_the_old_client_does_it() {
    let srv = TestServer::start();
    let a = register(&srv, "alice");
    let b = register(&srv, "bob");

    let mut alice = OldClient::connect(&srv);
    let mut bob = OldClient::connect(&srv);
    let first = alice.login(a, "pw-alice").expect("alice logs in");
    assert_eq!((first.id, first.name.as_str()), (a, "alice"));
    assert!(first.friends.is_empty() && first.groups.is_empty() && first.offline.is_empty());
    bob.login(b, "pw-bob").expect("bob logs in");

    // addfriend:<bob>
    alice.add_friend(b);
    alice.expect_silence("addfriend");

    // chat:<bob>:hello bob — bob's reader thread gets alice's very bytes.
    let sent = alice.chat(b, "hello bob");
    assert_eq!(bob.recv_text(), with_seq(&sent, 1));
    let line = read_chat(&serde_json::from_str(&sent).unwrap());
    assert_eq!(line, format!("{} [{a}]alice said: hello bob", now_text()));
    alice.expect_silence("chat");

    // chat:<alice>:hi alice — the fields in source order this time (as an `ordered_json`
    // build would send them): the server does not care about the order.
    let fields = [
        ("msgid", json!(ONE_CHAT_MSG)),
        ("id", json!(b)),
        ("name", json!("bob")),
        ("toid", json!(a)),
        ("msg", json!("hi alice: 你好")),
        ("time", json!(now_text())),
    ];
    bob.send_text(&in_order(fields.iter()));
    let got = alice.recv();
    assert_eq!(msgid(&got), ONE_CHAT_MSG);
    assert_eq!((int(&got, "id"), text(&got, "name")), (b, "bob".into()));
    assert_eq!(
        (int(&got, "toid"), text(&got, "msg")),
        (a, "hi alice: 你好".into())
    );
    bob.expect_silence("chat");

    // creategroup:rust:all about rust — the reply (a msgid the old client does not know) is
    // skipped by its reader thread; it must still come alone in its recv().
    alice.create_group("rust", "all about rust");
    let created = alice.recv();
    assert!(
        ![ONE_CHAT_MSG, GROUP_CHAT_MSG, LOGIN_MSG_ACK, REG_MSG_ACK].contains(&msgid(&created)),
        "the create-group reply must be one the old client ignores: {created}"
    );

    // The old client learns the group's id from the group list: loginout, log in again on
    // the same connection.
    alice.loginout();
    alice.expect_silence("loginout");
    let again = alice.login(a, "pw-alice").expect("alice logs in again");
    let bob_view = UserView {
        id: b,
        name: "bob".into(),
        state: "online".into(),
        role: None,
    };
    assert_eq!(again.friends, vec![bob_view]);
    assert_eq!(again.groups.len(), 1, "{:?}", again.groups);
    let group = again.groups[0].clone();
    assert_eq!(
        (group.name.as_str(), group.desc.as_str()),
        ("rust", "all about rust")
    );
    let creator = UserView {
        id: a,
        name: "alice".into(),
        state: "online".into(),
        role: Some("creator".into()),
    };
    assert_eq!(group.users, vec![creator.clone()]);

    // addgroup:<gid>, then groupchat both ways. Bob's message reaching alice also shows that
    // his addgroup was done.
    bob.add_group(group.id);
    let from_bob = bob.group_chat(group.id, "hello group");
    assert_eq!(alice.recv_text(), with_seq(&from_bob, 1));
    let line = read_chat(&serde_json::from_str(&from_bob).unwrap());
    assert_eq!(
        line,
        format!(
            "群消息[{}]:{} [{b}]bob said: hello group",
            group.id,
            now_text()
        )
    );
    let from_alice = alice.group_chat(group.id, "welcome bob");
    assert_eq!(bob.recv_text(), with_seq(&from_alice, 2));
    alice.expect_silence("groupchat");
    bob.expect_silence("addgroup and groupchat");

    // bob: loginout. A mistyped password at the first menu (answered in order on bob's
    // connection) shows that the logout is done before alice writes again.
    bob.loginout();
    assert_eq!(int(&bob.login(b, "typo").expect_err("typo"), "errno"), 1);
    let offline_chat = alice.chat(b, "are you there?");
    // Offline messages of several conversations come oldest first by arrival time, which has
    // millisecond resolution: let the two arrive in different milliseconds.
    std::thread::sleep(std::time::Duration::from_millis(5));
    let offline_group = alice.group_chat(group.id, "bob is away");
    alice.expect_silence("chat and groupchat to an offline user");
    bob.expect_silence("messages while logged out");

    // bob logs in again on the same connection: both messages, in order, as sent.
    let back = bob.login(b, "pw-bob").expect("bob logs in again");
    assert_eq!(
        back.offline_text,
        vec![with_seq(&offline_chat, 3), with_seq(&offline_group, 3)]
    );
    assert_eq!(
        read_chat(&back.offline[0]),
        format!("{} [{a}]alice said: are you there?", now_text())
    );
    assert_eq!(
        read_chat(&back.offline[1]),
        format!(
            "群消息[{}]:{} [{a}]alice said: bob is away",
            group.id,
            now_text()
        )
    );
    assert!(
        back.friends.is_empty(),
        "friendship is one-way, as in the original"
    );
    let member = UserView {
        id: b,
        name: "bob".into(),
        state: "online".into(),
        role: Some("normal".into()),
    };
    assert_eq!(back.groups.len(), 1);
    let mut users = back.groups[0].users.clone();
    users.sort_by_key(|u| u.id);
    assert_eq!(users, vec![creator, member]);
}

#[test]
fn offline_messages_wait_for_a_later_connection() {
    let srv = TestServer::start();
    let a = register(&srv, "alice");
    let b = register(&srv, "bob");

    let mut alice = OldClient::connect(&srv);
    alice.login(a, "pw-alice").expect("alice logs in");
    let sent: Vec<String> = ["one", "two", "three"]
        .iter()
        .map(|m| alice.chat(b, m))
        .collect();
    alice.expect_silence("chat to an offline user");

    // Bob starts the client later: "3. quit" closed nothing of his, he was never online.
    let mut bob = OldClient::connect(&srv);
    let view = bob.login(b, "pw-bob").expect("bob logs in");
    let numbered: Vec<String> = (1..).zip(&sent).map(|(n, m)| with_seq(m, n)).collect();
    assert_eq!(view.offline_text, numbered);
    let lines: Vec<String> = view.offline.iter().map(read_chat).collect();
    assert_eq!(
        lines,
        ["one", "two", "three"]
            .map(|m| format!("{} [{a}]alice said: {m}", now_text()))
            .to_vec()
    );

    // Read once: the next login shows none.
    bob.loginout();
    let view = bob.login(b, "pw-bob").expect("bob logs in again");
    assert!(view.offline.is_empty(), "{:?}", view.offline_text);
}

#[test]
fn errors_come_alone_with_a_msgid_the_old_client_skips() {
    let srv = TestServer::start();
    let a = register(&srv, "alice");
    let mut alice = OldClient::connect(&srv);
    alice.login(a, "pw-alice").expect("alice logs in");

    // chat:9999:hello — the original stored this for a user that does not exist; this
    // server answers with an error, which the old client's reader thread skips.
    alice.chat(9999, "hello?");
    let err = alice.recv();
    assert!(
        ![ONE_CHAT_MSG, GROUP_CHAT_MSG, LOGIN_MSG_ACK, REG_MSG_ACK].contains(&msgid(&err)),
        "{err}"
    );
    assert_ne!(int(&err, "errno"), 0, "{err}");

    // The connection still works: a message to herself comes back as a chat.
    let sent = alice.chat(a, "note to self");
    assert_eq!(alice.recv_text(), with_seq(&sent, 1));
}

/// What the receiver reads for a chat the old client sent: its very bytes, with the `seq` the
/// message log gave it as one more field at the end (the old client reads fields by name).
fn with_seq(sent: &str, seq: i64) -> String {
    let body = sent.strip_suffix('}').expect("a JSON object");
    format!("{body},\"seq\":{seq}}}")
}

/// The `dump` helper writes what nlohmann's `dump()` writes.
#[test]
fn dump_matches_nlohmann() {
    let text = dump(&[
        ("msgid", json!(ONE_CHAT_MSG)),
        ("id", json!(1)),
        ("name", json!("a\"b")),
        ("toid", json!(2)),
        ("msg", json!("x")),
        ("time", json!("t")),
    ]);
    assert_eq!(
        text,
        r#"{"id":1,"msg":"x","msgid":6,"name":"a\"b","time":"t","toid":2}"#
    );
    let parsed: Map<String, Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed.len(), 6);
}
