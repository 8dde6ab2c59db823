//! The SQLite store's tables (the log's index tables are in `sqlite_index`).

/// The schema, idempotent (`IF NOT EXISTS`), applied at every open so a new file just works.
/// Foreign keys keep friends, members and offline messages pointing at real rows.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS user(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    password TEXT NOT NULL,           -- argon2 PHC string, never plaintext
    name_key TEXT NULL,               -- names::name_key(name), UNIQUE (see names::sqlite)
    state TEXT NOT NULL DEFAULT 'offline' CHECK (state IN ('online', 'offline')),
    session TEXT NULL                 -- '<node>/<conn>' holding the login
);
CREATE INDEX IF NOT EXISTS user_session ON user(session);
CREATE TABLE IF NOT EXISTS friend(
    userid INTEGER NOT NULL REFERENCES user(id),
    friendid INTEGER NOT NULL REFERENCES user(id),
    PRIMARY KEY (userid, friendid)
);
CREATE TABLE IF NOT EXISTS allgroup(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    groupname TEXT NOT NULL UNIQUE,
    groupdesc TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS groupuser(
    groupid INTEGER NOT NULL REFERENCES allgroup(id),
    userid INTEGER NOT NULL REFERENCES user(id),
    grouprole TEXT NOT NULL CHECK (grouprole IN ('creator', 'normal')),
    PRIMARY KEY (groupid, userid)
);
CREATE INDEX IF NOT EXISTS groupuser_user ON groupuser(userid);
CREATE TABLE IF NOT EXISTS offlinemessage(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    userid INTEGER NOT NULL REFERENCES user(id),
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS offlinemessage_user_seq ON offlinemessage(userid, seq);
CREATE TABLE IF NOT EXISTS conversation(
    conv INTEGER PRIMARY KEY,          -- ConvId: pair a<b is a*2^32+b, group g is -g
    last_seq INTEGER NOT NULL,         -- the highest seq given out (may lag: sqlite_append)
    usera INTEGER NULL,                -- a pair's users (NULL for a group), for unread()
    userb INTEGER NULL
);
CREATE INDEX IF NOT EXISTS conversation_usera ON conversation(usera);
CREATE INDEX IF NOT EXISTS conversation_userb ON conversation(userb);
CREATE TABLE IF NOT EXISTS msgcmid(
    sender INTEGER NOT NULL,
    cmid TEXT NOT NULL,                -- compared as bytes (BINARY), as in MySQL
    conv INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    created INTEGER NOT NULL,          -- Unix ms of the message it names
    PRIMARY KEY (sender, cmid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS msgcmid_created ON msgcmid(created);
CREATE TABLE IF NOT EXISTS msgcursor(
    userid INTEGER NOT NULL,
    conv INTEGER NOT NULL,
    seq INTEGER NOT NULL,              -- the highest seq delivered to the user
    floor INTEGER NOT NULL DEFAULT 0,  -- a group's last_seq when the user joined
    PRIMARY KEY (userid, conv)
) WITHOUT ROWID;
";
