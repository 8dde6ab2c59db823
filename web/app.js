// The page: wires the protocol client (protocol.js), the data (store.js) and the views
// (ui/*.js). Served by chatserver's HTTP front with the WebSocket at ./ws.

import { ChatConnection, MSG, conversationOf, targetOf } from './protocol.js';
import { ChatStore } from './store.js';
import { ChatError } from './errors.js';
import { byId } from './ui/dom.js';
import { initLogin, showLoginView } from './ui/login.js';
import { renderSidebar } from './ui/sidebar.js';
import { ConversationView } from './ui/conversation.js';
import { startClusterPanel } from './ui/cluster.js';

const HISTORY_PAGE = 30;
// A fallback only: the server pushes friends' presence (PRESENCE, msgid 23).
const PRESENCE_EVERY_MS = 30000;
const PRESENCE_GROUPS_PER_ROUND = 8;

const wsUrl = new URL('ws', location.href);
wsUrl.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
const conn = new ChatConnection(wsUrl.href);
const store = new ChatStore();
let firstSync = true;
let stopCluster = null;
let presenceTimer = null;
let presenceCursor = 0;

const view = new ConversationView(store, {
  onLoadOlder: loadHistory,
  onSend: send,
  onMembers: loadMembers,
  onBack: () => openConversation(null),
  onRetry(key, cmid) {
    const conv = store.conv(key);
    const p = conv.pending.get(cmid);
    conv.pending.delete(cmid);
    if (p) send(key, p.frame.msg); // refused, so nothing was stored: a new cmid
  },
  onDismiss(key, cmid) {
    store.conv(key).pending.delete(cmid);
    store.changed(key);
  },
});

// --- rendering: one redraw per animation frame, whatever changed ---------------------------
let redrawQueued = false;
store.addEventListener('change', () => {
  if (redrawQueued) return;
  redrawQueued = true;
  requestAnimationFrame(() => {
    redrawQueued = false;
    renderSidebar(store, openConversation);
    view.render();
    const unread = store.totalUnread();
    document.title = unread > 0 ? `(${unread}) clusterchat` : 'clusterchat';
  });
});

// Back to a tab that shows a conversation: what arrived there meanwhile is read now.
document.addEventListener('visibilitychange', () => {
  if (!document.hidden && store.activeKey) store.setActive(store.activeKey);
});

function banner(text) {
  byId('banner-text').textContent = text;
  byId('banner').hidden = !text;
}
byId('banner-close').addEventListener('click', () => banner(''));

function nowUtc() {
  return new Date().toISOString().slice(0, 19).replace('T', ' ');
}

// --- login ---------------------------------------------------------------------------------
initLogin({
  async onLogin(credentials) {
    firstSync = true;
    await loginRetryingBusy(credentials);
    enterChat();
  },
  async onRegister(name, password) {
    const reg = await conn.register(name, password);
    firstSync = true;
    await conn.login({ id: reg.id, password });
    enterChat();
    banner(`Welcome, ${reg.name}! Your id is #${reg.id}: friends add you by it.`);
  },
});

/**
 * Logs in; errno 2 (online elsewhere) is retried twice after 0.7 s, since a page just
 * reloaded or closed may still be logging out on its server. Still 2: the form offers a
 * takeover.
 */
async function loginRetryingBusy(credentials) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await conn.login(credentials);
    } catch (err) {
      if (err.errno !== 2 || credentials.takeover || attempt >= 2) throw err;
      await new Promise((resolve) => setTimeout(resolve, 700));
    }
  }
}

function enterChat() {
  byId('login-view').hidden = true;
  byId('chat-view').hidden = false;
  if (!stopCluster) stopCluster = startClusterPanel(() => conn.node || null);
  clearInterval(presenceTimer);
  presenceTimer = setInterval(refreshPresence, PRESENCE_EVERY_MS);
}

function leaveChat(message) {
  clearInterval(presenceTimer);
  if (stopCluster) stopCluster();
  stopCluster = null;
  banner('');
  showLoginView(message);
}

byId('logout-btn').addEventListener('click', () => {
  conn.logout();
  store.clear();
  openConversation(null);
  leaveChat('');
});

// --- protocol events -----------------------------------------------------------------------
conn.addEventListener('login', (e) => {
  const ack = e.detail;
  // The server this WebSocket is on, if the server says (the protocol has no such field yet).
  conn.node = typeof ack.node === 'string' ? ack.node : null;
  store.applyLogin(ack); // another user than before: starts afresh (activeKey null)
  byId('me').textContent = `${ack.name} (#${ack.id})`;
  // Names of groups joined and friends added since the last login are in this LOGIN_ACK.
  if (store.activeKey) view.render();
  else if (view.key !== null) openConversation(null);
});

conn.addEventListener('chat', (e) => {
  const { frame } = e.detail;
  if (!store.me || typeof frame.seq !== 'number') return;
  store.addChat(frame, { countUnread: true });
  // A live message says its sender is online (as chatclient reads it); stored ones do not.
  if (e.detail.live && frame.id !== store.me.id) {
    store.learnUser({ id: frame.id, state: 'online' });
  }
  conn.received(conversationOf(frame, store.me.id), frame.seq);
});

conn.addEventListener('syncdone', (e) => {
  const { count } = e.detail;
  if (firstSync && count > 0) {
    banner(`${count} message${count === 1 ? '' : 's'} arrived while you were away.`);
  }
  firstSync = false;
});

// A friend came online or went offline (PRESENCE, msgid 23): the sidebar shows it at once.
conn.addEventListener('presence', (e) => {
  store.setPresence(e.detail.id, e.detail.state);
});

conn.addEventListener('kicked', (e) => {
  leaveChat(`${e.detail.errmsg || 'This account logged in elsewhere.'} Log in again to continue here.`);
});

conn.addEventListener('error', (e) => {
  // On the login form the next login reconnects; in the chat it is news.
  if (!byId('chat-view').hidden) banner(e.detail.message);
});

conn.addEventListener('status', (e) => {
  const { state, retryIn, reason } = e.detail;
  const s = byId('conn-status');
  s.className = `status ${state}`;
  s.textContent = {
    connecting: 'connecting…',
    online: 'online',
    offline: retryIn ? `connection lost; retrying in ${Math.ceil(retryIn / 1000)} s` : 'offline',
    ended: `session ended${reason ? `: ${reason}` : ''}`,
  }[state];
  if (state === 'ended' && reason && !byId('chat-view').hidden && reason !== 'logged out') {
    leaveChat(reason);
  }
});

// --- actions -------------------------------------------------------------------------------
function openConversation(key) {
  store.setActive(key);
  // At phone width the pane must be displayed before it is drawn, or it cannot scroll down.
  byId('chat-view').classList.toggle('in-conversation', key !== null);
  view.show(key);
  renderSidebar(store, openConversation);
  if (key && store.conv(key).historyFloor === null) loadHistory(key);
}

async function loadHistory(key) {
  const conv = store.conv(key);
  if (conv.loading) return;
  conv.loading = true;
  const req = { msgid: MSG.HISTORY, ...targetOf(key), limit: HISTORY_PAGE };
  if (conv.historyFloor !== null) {
    if (!conv.more || conv.historyFloor <= 1) {
      conv.loading = false;
      return;
    }
    req.before = conv.historyFloor;
  }
  try {
    const page = await conn.request(req);
    store.addHistory(key, page);
  } catch (err) {
    if (store.activeKey === key) view.setError(`Could not load messages. ${err.message}`);
  } finally {
    conv.loading = false;
    store.changed(key);
  }
}

function send(key, text) {
  const conv = store.conv(key);
  const frame =
    conv.kind === 'group'
      ? { msgid: MSG.GROUP_CHAT, groupid: conv.id }
      : { msgid: MSG.ONE_CHAT, toid: conv.id };
  Object.assign(frame, { id: store.me.id, name: store.me.name, msg: text, time: nowUtc() });
  const { cmid, stored } = conn.sendChat(frame);
  conv.pending.set(cmid, { frame });
  store.changed(key);
  stored.then(
    ({ seq }) => {
      conv.pending.delete(cmid);
      store.addChat({ ...frame, seq });
    },
    (err) => {
      const p = conv.pending.get(cmid);
      if (p) p.error = err.message;
      store.changed(key);
    },
  );
}

async function loadMembers(groupid) {
  try {
    const page = await conn.request({ msgid: MSG.MEMBERS, groupid, limit: 200 });
    store.addMembers(groupid, page, true);
  } catch (err) {
    view.setError(`Could not load the members. ${err.message}`);
  }
}

/**
 * The server pushes friends' presence (PRESENCE, msgid 23; see the 'presence' handler), but
 * best effort, and only for friends: a fellow group member who is no friend is not pushed.
 * So every 30 s this also asks MEMBERS of a few groups in turn, which refreshes everyone we
 * share a group with (and corrects a lost push).
 */
async function refreshPresence() {
  if (!conn.isOnline()) return;
  const ids = [...store.groups.keys()].sort((a, b) => a - b);
  for (let i = 0; i < Math.min(ids.length, PRESENCE_GROUPS_PER_ROUND); i++) {
    const id = ids[(presenceCursor + i) % ids.length];
    try {
      store.addMembers(id, await conn.request({ msgid: MSG.MEMBERS, groupid: id, limit: 200 }), true);
    } catch {
      // Not a member any more, or offline: the next round tries again.
    }
  }
  presenceCursor += PRESENCE_GROUPS_PER_ROUND;
}

function parseId(text) {
  const m = /^#?(\d{1,15})$/.exec(text.trim());
  if (!m) throw new ChatError(102, 'an id is a number, like 7 or #7');
  return Number(m[1]);
}

function sidebarAction(form, action) {
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    byId('sidebar-error').textContent = '';
    const button = form.querySelector('button');
    button.disabled = true;
    try {
      await action();
      form.reset();
    } catch (err) {
      byId('sidebar-error').textContent = err.message;
    } finally {
      button.disabled = false;
    }
  });
}

sidebarAction(byId('add-friend-form'), async () => {
  const friendid = parseId(byId('add-friend-id').value);
  await conn.request({ msgid: MSG.ADD_FRIEND, friendid });
  store.addFriend(friendid);
  openConversation(`u:${friendid}`);
});

sidebarAction(byId('create-group-form'), async () => {
  const groupname = byId('create-group-name').value.trim();
  const groupdesc = byId('create-group-desc').value.trim();
  const ack = await conn.request({ msgid: MSG.CREATE_GROUP, groupname, groupdesc });
  if (ack.errno) throw new ChatError(ack.errno, ack.errmsg, MSG.CREATE_GROUP);
  const g = store.group(ack.groupid);
  Object.assign(g, { name: ack.groupname, desc: ack.groupdesc, members: 1 });
  openConversation(`g:${ack.groupid}`);
});

sidebarAction(byId('join-group-form'), async () => {
  const groupid = parseId(byId('join-group-id').value);
  await conn.request({ msgid: MSG.ADD_GROUP, groupid });
  store.group(groupid);
  openConversation(`g:${groupid}`);
  loadMembers(groupid);
});

// Handy in the browser console and for the tests: the page's state, read-only by convention.
window.clusterchat = { conn, store };
