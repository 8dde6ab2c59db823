// The conversation lists: friends (with presence), groups, and 1:1 chats with non-friends,
// each with its unread count.

import { el, replace, byId } from './dom.js';

/** Redraws the three lists from `store`; `onOpen(key)` opens a conversation. */
export function renderSidebar(store, onOpen) {
  const friendKeys = store.friends.map((id) => `u:${id}`);
  replace(
    byId('friend-list'),
    friendKeys.length
      ? friendKeys.map((key) => item(store, key, onOpen))
      : el('li', { class: 'muted' }, 'No friends yet: add one by id.'),
  );
  const groupKeys = [...store.groups.keys()].sort((a, b) => a - b).map((id) => `g:${id}`);
  replace(
    byId('group-list'),
    groupKeys.length
      ? groupKeys.map((key) => item(store, key, onOpen))
      : el('li', { class: 'muted' }, 'No groups yet: create or join one.'),
  );
  const others = [...store.convs.values()]
    .filter((c) => c.kind === 'user' && !store.friends.includes(c.id))
    .filter((c) => c.messages.size > 0 || c.pending.size > 0 || c.key === store.activeKey)
    .sort((a, b) => b.lastActivity - a.lastActivity)
    .map((c) => item(store, c.key, onOpen));
  byId('others-panel').hidden = others.length === 0;
  replace(byId('other-list'), others);
}

function item(store, key, onOpen) {
  const conv = store.conv(key);
  let dot = null;
  let sub = null;
  if (conv.kind === 'user') {
    const state = store.users.get(conv.id)?.state;
    dot = el('span', {
      class: `dot ${state || 'unknown'}`,
      title: state || 'presence unknown',
    });
    sub = el('span', { class: 'muted' }, `#${conv.id}`);
  } else {
    const g = store.groups.get(conv.id);
    sub = el('span', { class: 'muted' }, `#${conv.id}${g?.members ? ` · ${g.members}` : ''}`);
  }
  return el(
    'li',
    {
      class: key === store.activeKey ? 'active' : '',
      dataset: { key },
      role: 'button',
      tabindex: '0',
      onclick: () => onOpen(key),
      onkeydown: (e) => {
        if (e.key === 'Enter') onOpen(key);
      },
    },
    dot,
    el('span', { class: 'name' }, store.title(key)),
    sub,
    conv.unread > 0 ? el('span', { class: 'badge', title: 'unread' }, conv.unread) : null,
  );
}
