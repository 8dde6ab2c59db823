// What the page knows: who we are, users' names and presence, friends, groups, and the
// conversations with their messages. Pure data (no DOM, no socket); emits 'change'.
//
// A conversation's messages are keyed by seq, so a message that arrives twice (a sync login
// after a drop, a HISTORY page that overlaps what was delivered, our own chat's ACK and its
// copy in HISTORY) is shown once. Our chats not yet stored wait in `pending` by cmid.

import { MSG, conversationOf } from './protocol.js';

/** Decodes one entry of the LOGIN_ACK's lists (JSON-encoded strings, see PROTOCOL.md). */
function decodeEntry(entry) {
  if (typeof entry !== 'string') return entry && typeof entry === 'object' ? entry : null;
  try {
    return JSON.parse(entry);
  } catch {
    return null;
  }
}

export class Conversation {
  constructor(key) {
    this.key = key;
    this.kind = key.startsWith('g:') ? 'group' : 'user';
    this.id = Number(key.slice(2));
    this.messages = new Map(); // seq -> chat frame
    this.pending = new Map(); // cmid -> {frame, error?}
    this.unread = 0;
    this.historyFloor = null; // lowest seq from which on HISTORY has filled everything
    this.more = true; // older messages may remain below historyFloor
    this.loading = false;
    this.lastActivity = 0;
  }

  /** Messages in seq order, then the pending ones in send order. */
  ordered() {
    const stored = [...this.messages.values()].sort((a, b) => a.seq - b.seq);
    return { stored, pending: [...this.pending.entries()] };
  }
}

export class ChatStore extends EventTarget {
  constructor() {
    super();
    this.clear();
  }

  clear() {
    this.me = null; // {id, name}
    this.users = new Map(); // id -> {id, name?, state?}
    this.friends = []; // ids, in the server's order then added ones
    this.groups = new Map(); // id -> {id, name?, desc?, members?, users?: [...], more?}
    this.convs = new Map(); // key -> Conversation
    this.activeKey = null;
  }

  /** Takes in a LOGIN_ACK (first login or resume). Another user than before: starts afresh. */
  applyLogin(ack) {
    if (this.me && this.me.id !== ack.id) this.clear();
    this.me = { id: ack.id, name: ack.name };
    this.learnUser({ id: ack.id, name: ack.name, state: 'online' });
    const friends = [];
    for (const f of (ack.friends || []).map(decodeEntry)) {
      if (!f || typeof f.id !== 'number') continue;
      this.learnUser(f);
      friends.push(f.id);
    }
    for (const id of this.friends) if (!friends.includes(id)) friends.push(id);
    this.friends = friends;
    for (const g of (ack.groups || []).map(decodeEntry)) {
      if (!g || typeof g.id !== 'number') continue;
      const group = this.group(g.id);
      group.name = g.groupname;
      group.desc = g.groupdesc;
      if (typeof g.members === 'number') group.members = g.members;
      this.conv(`g:${g.id}`);
    }
    for (const id of this.friends) this.conv(`u:${id}`);
    this.changed();
  }

  learnUser(u) {
    if (!u || typeof u.id !== 'number') return;
    const known = this.users.get(u.id) || { id: u.id };
    if (typeof u.name === 'string' && u.name) known.name = u.name;
    if (u.state === 'online' || u.state === 'offline') known.state = u.state;
    this.users.set(u.id, known);
  }

  /**
   * A PRESENCE push (msgid 23): user `id` is now `state` ('online' or 'offline'). Returns
   * whether anything changed (then the page re-renders).
   */
  setPresence(id, state) {
    if (typeof id !== 'number' || (state !== 'online' && state !== 'offline')) return false;
    if (this.users.get(id)?.state === state) return false;
    this.learnUser({ id, state });
    this.changed();
    return true;
  }

  group(id) {
    if (!this.groups.has(id)) this.groups.set(id, { id });
    return this.groups.get(id);
  }

  conv(key) {
    if (!this.convs.has(key)) this.convs.set(key, new Conversation(key));
    return this.convs.get(key);
  }

  /** A conversation's title: the user's or group's name, else its id. */
  title(key) {
    const id = Number(key.slice(2));
    if (key.startsWith('g:')) return this.groups.get(id)?.name || `group #${id}`;
    if (this.me && id === this.me.id) return `${this.me.name} (you)`;
    return this.users.get(id)?.name || `user #${id}`;
  }

  userName(id) {
    return this.users.get(id)?.name || `user #${id}`;
  }

  addFriend(id) {
    if (!this.friends.includes(id)) this.friends.push(id);
    this.conv(`u:${id}`);
    this.changed();
  }

  /**
   * Adds a chat frame (delivered, from HISTORY, or ours once acknowledged). Returns whether
   * it was new. `countUnread`: a delivered message from someone else to a conversation not
   * on screen.
   */
  addChat(frame, { countUnread = false } = {}) {
    if (!this.me || typeof frame.seq !== 'number') return false;
    if (frame.msgid !== MSG.ONE_CHAT && frame.msgid !== MSG.GROUP_CHAT) return false;
    const key = conversationOf(frame, this.me.id);
    const conv = this.conv(key);
    if (conv.kind === 'group') this.group(conv.id); // joined elsewhere: list it
    if (typeof frame.id === 'number' && typeof frame.name === 'string') {
      this.learnUser({ id: frame.id, name: frame.name });
    }
    if (conv.messages.has(frame.seq)) return false;
    conv.messages.set(frame.seq, frame);
    conv.lastActivity = Math.max(conv.lastActivity, frame.seq);
    const hidden = typeof document !== 'undefined' && document.hidden;
    const onScreen = key === this.activeKey && !hidden;
    if (countUnread && frame.id !== this.me.id && !onScreen) conv.unread += 1;
    this.changed(key);
    return true;
  }

  /** Merges a HISTORY_ACK page into its conversation (below or at the floor). */
  addHistory(key, page) {
    const conv = this.conv(key);
    const messages = Array.isArray(page.messages) ? page.messages : [];
    for (const m of messages) this.addChat(m);
    if (messages.length > 0) {
      const first = messages[0].seq;
      conv.historyFloor = conv.historyFloor === null ? first : Math.min(conv.historyFloor, first);
    } else if (conv.historyFloor === null) {
      conv.historyFloor = 0;
    }
    conv.more = page.more === true;
    this.changed(key);
  }

  /** Takes in a MEMBERS_ACK page: the group's users and their presence. */
  addMembers(groupid, page, first) {
    const group = this.group(groupid);
    if (first) group.users = [];
    for (const u of page.users || []) {
      this.learnUser(u);
      if (!group.users.some((m) => m.id === u.id)) group.users.push({ id: u.id, role: u.role });
    }
    group.moreMembers = page.more === true;
    if (!group.moreMembers) group.members = group.users.length;
    this.changed(`g:${groupid}`);
  }

  setActive(key) {
    this.activeKey = key;
    if (key) this.conv(key).unread = 0;
    this.changed(key);
  }

  /** Unread messages in all conversations. */
  totalUnread() {
    let n = 0;
    for (const c of this.convs.values()) n += c.unread;
    return n;
  }

  changed(key = null) {
    this.dispatchEvent(new CustomEvent('change', { detail: { key } }));
  }
}
