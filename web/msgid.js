// The protocol's msgids (docs/PROTOCOL.md; crates/proto/src/msgid.rs) and how a chat frame
// names its conversation, as the page keys them.

export const MSG = {
  LOGIN: 1, LOGIN_ACK: 2, LOGOUT: 3, REG: 4, REG_ACK: 5, ONE_CHAT: 6, ADD_FRIEND: 7,
  CREATE_GROUP: 8, ADD_GROUP: 9, GROUP_CHAT: 10, CREATE_GROUP_ACK: 11, ACK: 12, ERROR: 13,
  RECV: 14, SYNC_DONE: 15, HISTORY: 16, HISTORY_ACK: 17, MEMBERS: 18, MEMBERS_ACK: 19,
  PING: 20, PONG: 21, KICKED: 22, PRESENCE: 23,
};

/** The conversation key of a chat frame for user `me`: 'u:<peer id>' or 'g:<group id>'. */
export function conversationOf(frame, me) {
  if (frame.msgid === MSG.GROUP_CHAT) return `g:${frame.groupid}`;
  return `u:${frame.id === me ? frame.toid : frame.id}`;
}

/** The RECV / HISTORY target of a conversation key: {peer} or {groupid}. */
export function targetOf(key) {
  const id = Number(key.slice(2));
  return key.startsWith('g:') ? { groupid: id } : { peer: id };
}
