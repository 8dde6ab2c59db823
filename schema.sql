-- clusterchat schema for MySQL / MariaDB: the C++ seed's five tables, with fixes, and the
-- message log's four.
--
-- Applied by MysqlStore at every open (and usable by hand: mysql chat < schema.sql), so it is
-- idempotent: CREATE TABLE IF NOT EXISTS only, nothing is ever dropped (the one ALTER, the
-- name_key of older databases, is made by MysqlStore in code).
--
-- Fixes over the seed, and why:
--  * InnoDB everywhere: transactions (create_group, take_offline) and row locks need it.
--  * utf8mb4 / utf8mb4_unicode_ci: the seed's utf8 (utf8mb3) cannot store emoji and other
--    characters outside the BMP; they were mangled or refused.
--  * user.password holds an argon2 PHC string (~100 chars), never plaintext: VARCHAR(255).
--  * user.session names the "<node>/<conn>" holding a login so that a claim is one atomic
--    conditional UPDATE across servers and a node's users can be released when it stops.
--  * offlinemessage gets seq (AUTO_INCREMENT) as key: the seed had no key and no order, so
--    messages came back in any order and could not be deleted exactly as read. message is
--    MEDIUMTEXT: the seed's VARCHAR(50) truncated every longer message.
--  * Indexes for the queries the server runs: offline messages by (userid, seq), groups of a
--    user by groupuser(userid), a node's sessions by user(session).
--  * Foreign keys keep friends, members and offline messages pointing at real rows.
--  * user.session compares binary (utf8mb4_bin): sessions are identifiers, and the default
--    case-insensitive collation would let a logout of "N1/5" release the login of "n1/5".
--  * user names are unique, compared case-insensitively (the seed's name UNIQUE): name_key
--    holds the name trimmed and lowercased by the server (the same rule on SQLite), under a
--    UNIQUE index; utf8mb4_bin, so that the server's rule alone decides. NULL only in rows
--    written by servers from before it: MysqlStore adds the column to older databases and
--    gives those rows their key at open, renaming a later holder of a taken name to
--    "<name>#<id>" (src/store/names/).
--
-- The message log (DESIGN.md: store first, deliver from the log) replaces the seed's
-- offlinemessage: "offline messages" are what lies after a user's cursor.
--  * conversation: one row per pair of users or group that has had a message. conv packs the
--    conversation in one BIGINT (pair a<b: a*2^32+b, group g: -g). last_seq is bumped in each
--    append transaction: that row lock hands out gap-free seqs across servers. usera, userb
--    (NULL for a group) find a user's pairs.
--  * message: the log, keyed (conv, seq), so reading a conversation is one range scan. body is
--    the chat frame as forwarded, without seq. created (Unix ms, indexed) drives retention.
--  * msgcmid: the client message ids of the last day per sender, so a retried send is
--    answered with its original seq. cmid is VARBINARY: compared byte for byte, trailing
--    spaces included (utf8mb4_bin would ignore them: it is PAD SPACE).
--  * msgcursor: per user and conversation, the highest seq delivered (seq) and, for a group,
--    its last_seq when the user joined (floor: where their history starts).
--  * offlinemessage stays while old servers may still queue into it: at every open MysqlStore
--    moves its rows into the log (and keeps, with a warning, any it cannot read).
-- MysqlStore drops '--' comments, then splits on semicolons: keep them out of string literals.

CREATE TABLE IF NOT EXISTS user (
    id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(50) NOT NULL,
    password VARCHAR(255) NOT NULL,
    state ENUM('online', 'offline') NOT NULL DEFAULT 'offline',
    session VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    name_key VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    INDEX user_session (session),
    UNIQUE KEY user_name_key (name_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS friend (
    userid INT NOT NULL,
    friendid INT NOT NULL,
    PRIMARY KEY (userid, friendid),
    FOREIGN KEY (userid) REFERENCES user (id),
    FOREIGN KEY (friendid) REFERENCES user (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS allgroup (
    id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    groupname VARCHAR(50) NOT NULL,
    groupdesc VARCHAR(200) NOT NULL DEFAULT '',
    UNIQUE KEY allgroup_name (groupname)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS groupuser (
    groupid INT NOT NULL,
    userid INT NOT NULL,
    grouprole ENUM('creator', 'normal') NOT NULL,
    PRIMARY KEY (groupid, userid),
    INDEX groupuser_user (userid),
    FOREIGN KEY (groupid) REFERENCES allgroup (id),
    FOREIGN KEY (userid) REFERENCES user (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS offlinemessage (
    seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    userid INT NOT NULL,
    message MEDIUMTEXT NOT NULL,
    INDEX offlinemessage_user_seq (userid, seq),
    FOREIGN KEY (userid) REFERENCES user (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS conversation (
    conv BIGINT NOT NULL PRIMARY KEY,
    last_seq BIGINT NOT NULL,
    usera INT NULL,
    userb INT NULL,
    INDEX conversation_usera (usera),
    INDEX conversation_userb (userb)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS message (
    conv BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    sender INT NOT NULL,
    created BIGINT NOT NULL,
    body MEDIUMTEXT NOT NULL,
    PRIMARY KEY (conv, seq),
    INDEX message_created (created)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS msgcmid (
    sender INT NOT NULL,
    cmid VARBINARY(64) NOT NULL,
    conv BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    created BIGINT NOT NULL,
    PRIMARY KEY (sender, cmid),
    INDEX msgcmid_created (created)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS msgcursor (
    userid INT NOT NULL,
    conv BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    floor BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (userid, conv)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE utf8mb4_unicode_ci;
