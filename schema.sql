-- clusterchat schema for MySQL / MariaDB: the C++ seed's five tables, with fixes.
--
-- Applied by MysqlStore at every open (and usable by hand: mysql chat < schema.sql), so it is
-- idempotent: CREATE TABLE IF NOT EXISTS only, nothing is ever dropped or altered.
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
-- MysqlStore drops '--' comments, then splits on semicolons: keep them out of string literals.

CREATE TABLE IF NOT EXISTS user (
    id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(50) NOT NULL,
    password VARCHAR(255) NOT NULL,
    state ENUM('online', 'offline') NOT NULL DEFAULT 'offline',
    session VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    INDEX user_session (session)
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
