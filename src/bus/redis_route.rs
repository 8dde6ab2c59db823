//! Routing by server inside Redis: the presence directory, the routing script and the batches
//! it publishes to each server's channel.
//!
//! * The **presence directory** is one hash, `<prefix>presence`: field = user id, value = the
//!   session that holds the user (`"<node>/<connection>"`, the same claim the store keeps). A
//!   login writes it (after its claim in the store, before it reads the log), a logout deletes
//!   it only if it still names that session ([`LEAVE_SCRIPT`]), so a late logout never erases
//!   the entry of the user's next session.
//! * The **routing script** ([`ROUTE_SCRIPT`]) takes a batch of messages, each with its
//!   recipients, looks every recipient up in the directory (one `HMGET`), groups them by
//!   server and `PUBLISH`es one payload per server on `<prefix>node:<node>`: the messages that
//!   have receivers there, each with the list of them. It answers, per message, 1 if some
//!   server received it. The lookup and the publish are one atomic step in Redis, so a login
//!   that wrote its entry before reading the log either is found by the script or reads a log
//!   that already holds the message (the sender publishes only after the commit): no window
//!   in which a message is neither pushed nor read. A server that is gone has no subscriber
//!   on its channel: PUBLISH counts 0 there, and its users' messages wait in the log.
//! * A **payload** is `ids:len:frame` repeated (`ids` comma-separated decimal user ids, `len`
//!   the frame's length in bytes): [`decode`] reads it back on the receiving server. A stored
//!   chat's frame travels in its bus form, `#<conv>:<seq>:` before the frame
//!   (`service::relay::Stored`), so the receiving server fans it out without parsing its
//!   JSON; the bus itself treats it as opaque bytes. The
//!   script marks its parts `!ids:len:frame`: *routed by the directory as it was after the
//!   commit*, so a recipient who is not on the receiving server may be skipped. An unmarked
//!   part was sent straight to a server's channel by a sender's presence cache
//!   ([`super::redis_publisher`]), which may be stale: the receiving server sends a recipient
//!   it does not hold through the script again (marked then, so it never loops).
//! * The script answers `{reached, found}`: per message 1 if some server received it, and per
//!   recipient (in argument order) the directory entry it read (nil: none), from which the
//!   sender's cache learns.

use clusterchat_proto::UserId;

/// The routing script: `KEYS[1]` = the directory, `ARGV[1]` = the channel prefix
/// (`<prefix>node:`), then per message `n`, `n` user ids and the frame. HMGET in chunks of
/// 4,000 (Lua's `unpack` limit).
pub(super) const ROUTE_SCRIPT: &str = r#"
local dir, prefix = KEYS[1], ARGV[1]
local entries, ids = {}, {}
local i, nargs = 2, #ARGV
while i <= nargs do
  local n = tonumber(ARGV[i])
  entries[#entries + 1] = {#ids + 1, n, ARGV[i + n + 1]}
  for k = 1, n do ids[#ids + 1] = ARGV[i + k] end
  i = i + n + 2
end
local where = {}
for c = 1, #ids, 4000 do
  local last = math.min(c + 3999, #ids)
  local got = redis.call('HMGET', dir, unpack(ids, c, last))
  for k = 1, #got do where[c + k - 1] = got[k] end
end
local out, order = {}, {}
for e = 1, #entries do
  local first, n, frame = entries[e][1], entries[e][2], entries[e][3]
  local per, nodes = {}, {}
  for k = first, first + n - 1 do
    local v = where[k]
    if v then
      local node = string.match(v, '^(.*)/[^/]*$')
      if node then
        local l = per[node]
        if not l then
          l = {}
          per[node] = l
          nodes[#nodes + 1] = node
        end
        l[#l + 1] = ids[k]
      end
    end
  end
  for _, node in ipairs(nodes) do
    local parts = out[node]
    if not parts then
      parts = {}
      out[node] = parts
      order[#order + 1] = node
    end
    parts[#parts + 1] = '!' .. table.concat(per[node], ',') .. ':' .. #frame .. ':'
    parts[#parts + 1] = frame
  end
  entries[e][4] = nodes
end
local got = {}
for _, node in ipairs(order) do
  got[node] = redis.call('PUBLISH', prefix .. node, table.concat(out[node]))
end
local reached = {}
for e = 1, #entries do
  local r = 0
  for _, node in ipairs(entries[e][4]) do
    if got[node] > 0 then r = 1 end
  end
  reached[e] = r
end
local found = {}
for k = 1, #ids do found[k] = where[k] or false end
return {reached, found}
"#;

/// Deletes a directory entry only if it still names the session: `KEYS[1]` = the directory,
/// `ARGV[1]` = the user, `ARGV[2]` = the session.
pub(super) const LEAVE_SCRIPT: &str = r#"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"#;

/// Appends one message of a routing batch to `cmd` (`n`, the ids, the frame).
pub(super) fn add_message(cmd: &mut redis::Cmd, users: &[UserId], frame: &[u8]) {
    cmd.arg(users.len()).arg(users).arg(frame);
}

/// A payload is malformed (only a bug or a foreign publisher makes one).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct BadPayload;

/// Appends one unmarked part (`ids:len:frame`) to a payload published straight to a server.
pub(super) fn encode_direct(out: &mut Vec<u8>, users: &[UserId], frame: &[u8]) {
    use std::io::Write;
    for (i, u) in users.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = write!(out, "{u}");
    }
    let _ = write!(out, ":{}:", frame.len());
    out.extend_from_slice(frame);
}

/// Reads a payload back: calls `each(users, frame, direct)` per message, in order (`direct`:
/// an unmarked part, sent by a sender's cache rather than routed by the script). Stops at the
/// first malformed part (what came before it was delivered).
pub(super) fn decode(
    mut payload: &[u8],
    mut each: impl FnMut(&[UserId], &[u8], bool),
) -> Result<(), BadPayload> {
    let mut users = Vec::new();
    while !payload.is_empty() {
        let direct = payload[0] != b'!';
        if !direct {
            payload = &payload[1..];
        }
        let (ids, rest) = split_colon(payload)?;
        let (len, rest) = split_colon(rest)?;
        let len: usize = std::str::from_utf8(len)
            .ok()
            .and_then(|l| l.parse().ok())
            .ok_or(BadPayload)?;
        if rest.len() < len {
            return Err(BadPayload);
        }
        users.clear();
        for id in ids.split(|b| *b == b',') {
            let id = std::str::from_utf8(id)
                .ok()
                .and_then(|i| i.parse().ok())
                .ok_or(BadPayload)?;
            users.push(id);
        }
        let (frame, rest) = rest.split_at(len);
        each(&users, frame, direct);
        payload = rest;
    }
    Ok(())
}

fn split_colon(b: &[u8]) -> Result<(&[u8], &[u8]), BadPayload> {
    let i = b.iter().position(|c| *c == b':').ok_or(BadPayload)?;
    Ok((&b[..i], &b[i + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_reads_back_as_its_messages_and_their_recipients() {
        let payload = b"!3,9:2:{}7:11:{\"a\":\"b:c\"}";
        let mut got = Vec::new();
        decode(payload, |u, f, d| got.push((u.to_vec(), f.to_vec(), d))).unwrap();
        assert_eq!(
            got,
            [
                (vec![3, 9], b"{}".to_vec(), false),
                (vec![7], br#"{"a":"b:c"}"#.to_vec(), true)
            ]
        );
        // What the sender's cache builds reads back the same way.
        let mut direct = Vec::new();
        encode_direct(&mut direct, &[3, 9], b"{}");
        assert_eq!(direct, b"3,9:2:{}");
        // A nudge is an empty frame.
        let mut nudged = Vec::new();
        decode(b"5:0:", |u, f, _| nudged.push((u.to_vec(), f.len()))).unwrap();
        assert_eq!(nudged, [(vec![5], 0)]);
    }

    #[test]
    fn a_malformed_payload_is_refused_after_its_good_part() {
        let mut n = 0;
        assert_eq!(decode(b"1:2:{}2:9:{}", |_, _, _| n += 1), Err(BadPayload));
        assert_eq!(n, 1);
        assert_eq!(decode(b"x:2:{}", |_, _, _| n += 1), Err(BadPayload));
        assert_eq!(decode(b"12", |_, _, _| n += 1), Err(BadPayload));
        assert_eq!(n, 1);
    }
}
