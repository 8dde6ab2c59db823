// The web client's logic without a browser (node:test): conversation keys, the store's
// dedupe by seq, HISTORY pages and the floor for the next one, unread counts, receipts
// batching, the login field and errno sentences. Run by tests/browser.rs (needs only node).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { conversationOf, targetOf, MSG } from '../../web/protocol.js';
import { ChatStore } from '../../web/store.js';
import { Receipts } from '../../web/receipts.js';
import { describe as describeErrno } from '../../web/errors.js';
import { parseIdentity } from '../../web/ui/login.js';

const ME = 1;
const chat = (id, toid, seq, msg = `m${seq}`) =>
  ({ msgid: MSG.ONE_CHAT, id, name: `u${id}`, toid, msg, seq });
const group = (id, groupid, seq) =>
  ({ msgid: MSG.GROUP_CHAT, id, name: `u${id}`, groupid, msg: `g${seq}`, seq });

function loggedIn() {
  const store = new ChatStore();
  store.applyLogin({
    id: ME, name: 'me',
    friends: [JSON.stringify({ id: 2, name: 'bob', state: 'online' })],
    groups: [JSON.stringify({ id: 7, groupname: 'g', groupdesc: 'd', members: 3 })],
  });
  return store;
}

test('a conversation is named by the other party or the group', () => {
  assert.equal(conversationOf(chat(2, ME, 1), ME), 'u:2');
  assert.equal(conversationOf(chat(ME, 2, 1), ME), 'u:2');
  assert.equal(conversationOf(chat(ME, ME, 1), ME), 'u:1');
  assert.equal(conversationOf(group(3, 7, 1), ME), 'g:7');
  assert.deepEqual(targetOf('u:2'), { peer: 2 });
  assert.deepEqual(targetOf('g:7'), { groupid: 7 });
});

test('the login reply fills friends, presence and groups', () => {
  const store = loggedIn();
  assert.deepEqual(store.friends, [2]);
  assert.equal(store.users.get(2).state, 'online');
  assert.equal(store.title('g:7'), 'g');
  assert.equal(store.groups.get(7).members, 3);
  assert.equal(store.title('u:9'), 'user #9');
});

test('a PRESENCE push (23) updates a friend and asks for a redraw once', () => {
  const store = loggedIn();
  assert.equal(MSG.PRESENCE, 23);
  let changes = 0;
  store.addEventListener('change', () => changes++);
  assert.equal(store.setPresence(2, 'offline'), true);
  assert.equal(store.users.get(2).state, 'offline');
  assert.equal(store.users.get(2).name, 'bob', 'the name stays');
  assert.equal(store.setPresence(2, 'offline'), false, 'no change, no redraw');
  assert.equal(store.setPresence(2, 'away'), false, 'an unknown state is ignored');
  assert.equal(store.setPresence(2, 'online'), true);
  assert.equal(store.users.get(2).state, 'online');
  assert.equal(changes, 2);
});

test('a message delivered twice is kept once and counted once', () => {
  const store = loggedIn();
  assert.equal(store.addChat(chat(2, ME, 5), { countUnread: true }), true);
  assert.equal(store.addChat(chat(2, ME, 5), { countUnread: true }), false);
  assert.equal(store.conv('u:2').messages.size, 1);
  assert.equal(store.conv('u:2').unread, 1);
  // Our own messages never count; the open conversation does not either.
  store.addChat(chat(ME, 2, 6), { countUnread: true });
  assert.equal(store.conv('u:2').unread, 1);
  store.setActive('u:2');
  assert.equal(store.conv('u:2').unread, 0);
  store.addChat(chat(2, ME, 7), { countUnread: true });
  assert.equal(store.conv('u:2').unread, 0);
});

test('a group first seen in a message is listed; a sender learns a name', () => {
  const store = loggedIn();
  store.addChat(group(4, 12, 1), { countUnread: true });
  assert.ok(store.groups.has(12));
  assert.equal(store.userName(4), 'u4');
});

test('HISTORY pages set the floor for the next page and merge with deliveries', () => {
  const store = loggedIn();
  // Delivered while away: 41..45 (ours in between are not delivered).
  for (const seq of [41, 43, 45]) store.addChat(chat(2, ME, seq));
  const newest = [];
  for (let seq = 21; seq <= 45; seq++) newest.push(chat(seq % 2 ? 2 : ME, seq % 2 ? ME : 2, seq));
  store.addHistory('u:2', { messages: newest, more: true });
  const conv = store.conv('u:2');
  assert.equal(conv.historyFloor, 21);
  assert.equal(conv.more, true);
  assert.equal(conv.messages.size, 25, 'no seq twice');
  store.addHistory('u:2', { messages: [chat(2, ME, 20)], more: false });
  assert.equal(conv.historyFloor, 20);
  assert.equal(conv.more, false);
  const seqs = conv.ordered().stored.map((m) => m.seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
  // An empty conversation: loaded, nothing more.
  store.addHistory('u:9', { messages: [], more: false });
  assert.equal(store.conv('u:9').historyFloor, 0);
});

test('receipts: the highest seq per conversation, only once ready, batched', () => {
  const sent = [];
  const r = new Receipts((key, seq) => sent.push([key, seq]));
  r.note('u:2', 3);
  r.note('u:2', 5);
  r.note('u:2', 4);
  r.note('g:7', 9);
  assert.deepEqual(sent, [], 'nothing before SYNC_DONE');
  r.start();
  assert.deepEqual(sent, [['u:2', 5], ['g:7', 9]]);
  sent.length = 0;
  for (let seq = 10; seq < 110; seq++) r.note('g:7', seq);
  assert.deepEqual(sent, [['g:7', 109]], 'a hundred messages flush at once');
  r.stop();
  r.note('u:2', 6);
  r.flush();
  assert.equal(sent.length, 1, 'nothing while stopped');
  assert.equal(r.due.get('u:2'), 6, 'kept for the next session');
});

test('the login field: digits or #digits are an id, anything else a name', () => {
  assert.deepEqual(parseIdentity(' 42 '), { id: 42 });
  assert.deepEqual(parseIdentity('#7'), { id: 7 });
  assert.deepEqual(parseIdentity('alice'), { name: 'alice' });
  assert.deepEqual(parseIdentity('#al'), { name: '#al' });
});

test('every errno has a sentence, with the server detail after it', () => {
  for (const errno of [1, 2, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109]) {
    assert.doesNotMatch(describeErrno(errno, ''), /^Error \d+$/, `errno ${errno}`);
  }
  assert.equal(describeErrno(109, 'retry in 4 s'), 'Too many attempts; wait a moment: retry in 4 s');
  assert.equal(describeErrno(999, 'odd'), 'odd');
  assert.match(describeErrno(1, 'name is already taken', MSG.REG), /^Registration refused: name/);
  assert.match(describeErrno(1, '', MSG.LOGIN), /^Wrong name, id or password/);
});
