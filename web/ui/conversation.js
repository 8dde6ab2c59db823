// The open conversation: its messages in seq order (then ours still being sent), scroll-back
// through HISTORY (a button, or scrolling to the top), the group's members, the compose box.

import { el, replace, byId } from './dom.js';

const LOAD_WHEN_WITHIN_PX = 40;

export class ConversationView {
  /**
   * handlers: onLoadOlder(key), onSend(key, text), onMembers(groupid), onBack(),
   * onRetry(key, cmid) and onDismiss(key, cmid) for a chat the server refused
   */
  constructor(store, handlers) {
    this.store = store;
    this.h = handlers;
    this.key = null;
    this.scroller = byId('messages');
    this.scroller.addEventListener('scroll', () => this.maybeLoadOlder());
    byId('load-older').addEventListener('click', () => this.key && this.h.onLoadOlder(this.key));
    byId('back-btn').addEventListener('click', () => this.h.onBack());
    byId('members-btn').addEventListener('click', () => this.toggleMembers());
    const input = byId('compose-input');
    byId('compose').addEventListener('submit', (e) => {
      e.preventDefault();
      this.send();
    });
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey) {
        e.preventDefault();
        this.send();
      }
    });
  }

  /** Shows conversation `key` (null: none). */
  show(key) {
    this.key = key;
    byId('conv-empty').hidden = key !== null;
    byId('conv-pane').hidden = key === null;
    byId('members-panel').hidden = true;
    this.setError('');
    if (key === null) return;
    this.render(true);
    byId('compose-input').focus();
  }

  /** Redraws the open conversation, keeping the reader's place (or the bottom). */
  render(toBottom = false) {
    if (this.key === null) return;
    const store = this.store;
    const conv = store.conv(this.key);
    byId('conv-title').textContent = store.title(this.key);
    if (conv.kind === 'group') {
      const g = store.groups.get(conv.id);
      byId('conv-sub').textContent = `group #${conv.id}${g?.desc ? ` · ${g.desc}` : ''}`;
      byId('members-btn').hidden = false;
      if (!byId('members-panel').hidden) this.renderMembers();
    } else {
      const state = store.users.get(conv.id)?.state;
      byId('conv-sub').textContent = `#${conv.id}${state ? ` · ${state}` : ''}`;
      byId('members-btn').hidden = true;
    }
    const s = this.scroller;
    const fromBottom = s.scrollHeight - s.scrollTop;
    const atBottom = fromBottom - s.clientHeight < 30;

    const { stored, pending } = conv.ordered();
    const me = store.me?.id;
    const items = stored.map((m) => this.message(m, m.id === me, conv.kind === 'group'));
    for (const [cmid, p] of pending) {
      const li = this.message(p.frame, true, false);
      li.classList.add(p.error ? 'failed' : 'pending');
      li.dataset.cmid = cmid;
      li.querySelector('.meta').append(el('span', {}, p.error ? `not sent: ${p.error}` : 'sending…'));
      if (p.error) {
        const key = this.key;
        const retry = () => this.h.onRetry(key, cmid);
        const dismiss = () => this.h.onDismiss(key, cmid);
        li.append(
          el(
            'div',
            { class: 'row' },
            el('button', { type: 'button', class: 'small retry', onclick: retry }, 'Retry'),
            el('button', { type: 'button', class: 'small secondary dismiss', onclick: dismiss },
              'Dismiss'),
          ),
        );
      }
      items.push(li);
    }
    replace(byId('message-list'), items);
    const loaded = conv.historyFloor !== null;
    byId('load-older').hidden = !loaded || !conv.more;
    byId('load-older').disabled = conv.loading;
    byId('history-start').hidden = !loaded || conv.more || stored.length === 0;

    if (toBottom || atBottom) s.scrollTop = s.scrollHeight;
    else s.scrollTop = s.scrollHeight - fromBottom;
  }

  message(m, mine, showSender) {
    const who = mine ? 'you' : m.name || this.store.userName(m.id);
    return el(
      'li',
      { class: `msg${mine ? ' mine' : ''}`, dataset: { seq: m.seq ?? '' } },
      el(
        'div',
        { class: 'meta' },
        showSender || !mine ? el('span', { class: 'from' }, who) : null,
        el('span', { class: 'time' }, m.time || ''),
      ),
      el('div', { class: 'text' }, m.msg),
    );
  }

  maybeLoadOlder() {
    if (this.key === null) return;
    const conv = this.store.conv(this.key);
    if (this.scroller.scrollTop > LOAD_WHEN_WITHIN_PX) return;
    if (conv.historyFloor === null || !conv.more || conv.loading) return;
    this.h.onLoadOlder(this.key);
  }

  send() {
    const input = byId('compose-input');
    const text = input.value;
    if (!text.trim() || this.key === null) return;
    input.value = '';
    this.h.onSend(this.key, text);
  }

  toggleMembers() {
    const panel = byId('members-panel');
    panel.hidden = !panel.hidden;
    if (!panel.hidden && this.key) {
      this.renderMembers();
      this.h.onMembers(Number(this.key.slice(2)));
    }
  }

  renderMembers() {
    const g = this.store.groups.get(Number(this.key.slice(2)));
    const users = g?.users || [];
    replace(
      byId('members-panel'),
      users.length ? null : el('li', { class: 'muted' }, 'Loading members…'),
      users.map((u) => {
        const known = this.store.users.get(u.id) || {};
        return el(
          'li',
          {},
          el('span', { class: `dot ${known.state || 'unknown'}` }),
          el('span', {}, known.name || `user #${u.id}`),
          el('span', { class: 'muted' }, `#${u.id}${u.role === 'creator' ? ' · creator' : ''}`),
        );
      }),
      g?.moreMembers ? el('li', { class: 'muted' }, 'and more') : null,
    );
  }

  setError(text) {
    byId('conv-error').textContent = text;
  }
}
