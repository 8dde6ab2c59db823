// The JSON protocol client (docs/PROTOCOL.md) over a WebSocket: one JSON object per text
// message each way. It owns the transport and its promises; it knows nothing of the page.
//
// * Requests carry a `reqid`; the ACK (12), the typed replies (11, 17, 19) or an ERROR (13)
//   with the same reqid settle the promise `request()` returned.
// * LOGIN is always a sync login: after the LOGIN_ACK the server sends what arrived while we
//   were away, then SYNC_DONE; `received()` notes each message for the cumulative RECVs
//   (receipts.js), so the server's cursors move only for what we have.
// * Chats go through an outbox with a `cmid` each: one not acknowledged when the connection
//   drops is sent again after the resume, and the server stores it at most once.
// * Heartbeat: a PING every 20 s; nothing heard for 45 s means the connection is dead.
// * Reconnect: after a drop (not after KICKED or logout) it reconnects with exponential
//   backoff (0.5 s doubling to 15 s, with jitter) and logs in again (sync, takeover: our own
//   stale session may still hold the account).

import { ChatError } from './errors.js';
import { Receipts } from './receipts.js';
import { MSG, targetOf } from './msgid.js';

export { MSG, conversationOf, targetOf } from './msgid.js';

const REQUEST_TIMEOUT_MS = 20000;
const PING_EVERY_MS = 20000;
const DEAD_AFTER_MS = 45000;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15000;

/**
 * Events (CustomEvent, `detail`):
 *   status   {state: 'connecting'|'online'|'offline'|'ended', retryIn?, reason?}
 *   login    the LOGIN_ACK (after every successful login, first or resumed)
 *   chat     {frame, live}: a 6 / 10 frame for us (live: after SYNC_DONE)
 *   syncdone {count}
 *   kicked   {errmsg}: the account logged in elsewhere; no reconnect
 *   error    ChatError: an ERROR frame that answers no request of ours (104 timeout, ...)
 */
export class ChatConnection extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.ws = null;
    this.opening = null; // the promise of a socket being opened
    this.openingReject = null;
    this.nextReqid = 1;
    this.pending = new Map(); // reqid -> {resolve, reject, timer, msgid}
    this.authWaiter = null; // {expect, resolve, reject}
    this.credentials = null; // {id, password} once logged in: enables resume
    this.me = null;
    this.synced = false;
    this.outbox = []; // [{cmid, frame, reqid, resolve, reject}], in send order
    this.cmidPrefix = randomId();
    this.cmidCounter = 0;
    this.receipts = new Receipts((key, seq) =>
      this.sendFrame({ msgid: MSG.RECV, ...targetOf(key), seq }),
    );
    this.attempt = 0;
    this.reconnectTimer = null;
    this.ended = false;
    this.lastInput = 0;
    this.heartbeat = null;
    this.state = 'offline';
    this.debug = false; // true: every frame in and out goes to console.debug
    this.pingEveryMs = PING_EVERY_MS;
    this.deadAfterMs = DEAD_AFTER_MS;
    // A page being closed confirms what it has (best effort: the socket is going away).
    addEventListener('pagehide', () => this.receipts.flush());
  }

  /** Registers an account; resolves {id, name}, rejects ChatError. */
  async register(name, password) {
    await this.open();
    const ack = await this.auth({ msgid: MSG.REG, name, password }, MSG.REG_ACK);
    return { id: ack.id, name: ack.name };
  }

  /**
   * Logs in (sync) by `id` or `name`; resolves the LOGIN_ACK, rejects ChatError. After
   * success the connection resumes by itself after a drop.
   */
  async login({ id, name, password, takeover = false }) {
    this.ended = false;
    await this.open();
    const req = { msgid: MSG.LOGIN, password, sync: true };
    if (id !== undefined) req.id = id;
    else req.name = name;
    if (takeover) req.takeover = true;
    const ack = await this.auth(req, MSG.LOGIN_ACK);
    if (this.me !== null && ack.id !== this.me) this.dropOutbox('logged in as another user');
    this.credentials = { id: ack.id, password };
    this.onLoggedIn(ack);
    return ack;
  }

  /** Ends the session on purpose: LOGOUT, close, no reconnect; unsent chats are dropped. */
  logout() {
    this.ended = true;
    this.credentials = null;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.receipts.flush();
      this.sendFrame({ msgid: MSG.LOGOUT });
    }
    this.dropOutbox('logged out');
    this.shutdown();
    this.setStatus('ended', { reason: 'logged out' });
  }

  /**
   * Sends a request with a fresh reqid; resolves the reply (ACK or typed reply), rejects
   * ChatError (errno 0: not connected, no answer in 20 s, or the connection dropped).
   */
  request(frame) {
    if (!this.isOnline()) return Promise.reject(new ChatError(0, 'not connected; retrying'));
    return new Promise((resolve, reject) => {
      const reqid = this.nextReqid++;
      const timer = setTimeout(() => {
        this.pending.delete(reqid);
        reject(new ChatError(0, 'no answer from the server'));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(reqid, { resolve, reject, timer, msgid: frame.msgid });
      this.sendFrame({ ...frame, reqid });
    });
  }

  /**
   * Sends a chat (6 or 10) through the outbox with a fresh `cmid`. Returns {cmid, stored}:
   * `stored` resolves {seq} once the server has stored it, however many reconnects that
   * takes, and rejects ChatError if the server refuses it (or the session ends first).
   */
  sendChat(frame) {
    const cmid = `${this.cmidPrefix}-${++this.cmidCounter}`;
    const stored = new Promise((resolve, reject) => {
      const item = { cmid, frame: { ...frame, cmid }, reqid: null, resolve, reject };
      this.outbox.push(item);
      if (this.isOnline()) this.transmit(item);
    });
    return { cmid, stored };
  }

  /** Notes that conversation `key` has been received up to `seq` (RECV, batched). */
  received(key, seq) {
    this.receipts.note(key, seq);
  }

  /** Fails every chat not yet stored (the session it belonged to is gone). */
  dropOutbox(why) {
    const items = this.outbox;
    this.outbox = [];
    for (const item of items) item.reject(new ChatError(0, `not sent: ${why}`));
  }

  isOnline() {
    return this.state === 'online' && this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  // --- internals -------------------------------------------------------------------------

  open() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) return Promise.resolve();
    if (this.opening) return this.opening;
    this.setStatus('connecting');
    this.opening = new Promise((resolve, reject) => {
      this.openingReject = reject;
      let ws;
      try {
        ws = new WebSocket(this.url);
      } catch (e) {
        this.opening = null;
        reject(new ChatError(0, `cannot connect: ${e.message}`));
        return;
      }
      this.ws = ws;
      ws.onopen = () => {
        this.opening = null;
        this.lastInput = Date.now();
        this.startHeartbeat();
        resolve();
      };
      ws.onmessage = (ev) => this.onMessage(ev.data);
      ws.onclose = () => {
        if (this.opening) {
          this.opening = null;
          reject(new ChatError(0, 'cannot reach the server'));
        }
        if (this.ws === ws) this.onClosed();
      };
    });
    return this.opening;
  }

  auth(frame, expect) {
    if (this.authWaiter) return Promise.reject(new ChatError(0, 'a login is in progress'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.authWaiter = null;
        reject(new ChatError(0, 'no answer from the server'));
      }, REQUEST_TIMEOUT_MS);
      this.authWaiter = {
        expect,
        resolve: (ack) => { clearTimeout(timer); resolve(ack); },
        reject: (err) => { clearTimeout(timer); reject(err); },
      };
      this.sendFrame(frame);
    });
  }

  onLoggedIn(ack) {
    this.me = ack.id;
    this.attempt = 0;
    this.synced = false;
    this.receipts.stop();
    this.setStatus('online');
    this.dispatchEvent(new CustomEvent('login', { detail: ack }));
    for (const item of this.outbox) this.transmit(item);
  }

  transmit(item) {
    const reqid = this.nextReqid++;
    item.reqid = reqid;
    this.pending.set(reqid, {
      msgid: item.frame.msgid,
      timer: null,
      resolve: (ack) => {
        this.outbox = this.outbox.filter((o) => o !== item);
        item.resolve({ seq: ack.seq });
      },
      reject: (err) => {
        if (err.errno === 0) return; // connection lost: stays in the outbox for the resume
        this.outbox = this.outbox.filter((o) => o !== item);
        item.reject(err);
      },
    });
    this.sendFrame({ ...item.frame, reqid });
  }

  onMessage(text) {
    this.lastInput = Date.now();
    if (this.debug) console.debug('<', text);
    let f;
    try {
      f = JSON.parse(text);
    } catch {
      console.warn('not JSON from the server', text);
      return;
    }
    if (!f || typeof f !== 'object') return;
    switch (f.msgid) {
      case MSG.LOGIN_ACK:
      case MSG.REG_ACK: {
        const w = this.authWaiter;
        if (!w || w.expect !== f.msgid) return;
        this.authWaiter = null;
        if (f.errno) w.reject(new ChatError(f.errno, f.errmsg, f.msgid - 1));
        else w.resolve(f);
        return;
      }
      case MSG.ONE_CHAT:
      case MSG.GROUP_CHAT:
        this.dispatchEvent(new CustomEvent('chat', { detail: { frame: f, live: this.synced } }));
        return;
      case MSG.SYNC_DONE:
        this.synced = true;
        this.dispatchEvent(new CustomEvent('syncdone', { detail: { count: f.count } }));
        this.receipts.start();
        return;
      case MSG.KICKED:
        this.ended = true;
        this.credentials = null;
        this.dispatchEvent(new CustomEvent('kicked', { detail: { errmsg: f.errmsg } }));
        this.shutdown();
        this.setStatus('ended', { reason: f.errmsg || 'logged in elsewhere' });
        return;
      case MSG.PRESENCE:
        this.dispatchEvent(new CustomEvent('presence', { detail: { id: f.id, state: f.state } }));
        return;
      case MSG.PONG:
        return;
      default:
        break;
    }
    const p = f.reqid !== undefined ? this.pending.get(f.reqid) : undefined;
    if (p) {
      this.pending.delete(f.reqid);
      clearTimeout(p.timer);
      if (f.msgid === MSG.ERROR) p.reject(new ChatError(f.errno, f.errmsg, f.request));
      else p.resolve(f);
    } else if (f.msgid === MSG.ERROR) {
      this.dispatchEvent(new CustomEvent('error', {
        detail: new ChatError(f.errno, f.errmsg, f.request),
      }));
    }
  }

  startHeartbeat() {
    clearInterval(this.heartbeat);
    let n = 0;
    let lastPing = Date.now();
    this.heartbeat = setInterval(() => {
      const ws = this.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) return;
      if (Date.now() - this.lastInput > this.deadAfterMs) {
        this.dropSocket(); // a dead connection may take minutes to report its close
        return;
      }
      if (Date.now() - lastPing >= this.pingEveryMs) {
        lastPing = Date.now();
        this.sendFrame({ msgid: MSG.PING, reqid: `hb-${++n}` });
      }
    }, 1000);
  }

  onClosed() {
    clearInterval(this.heartbeat);
    this.receipts.stop();
    this.ws = null;
    this.synced = false;
    const lost = new ChatError(0, 'the connection to the server was lost');
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(lost);
    }
    this.pending.clear();
    if (this.authWaiter) {
      const w = this.authWaiter;
      this.authWaiter = null;
      w.reject(lost);
    }
    if (this.ended) return;
    if (!this.credentials) {
      this.setStatus('offline');
      return;
    }
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    const delay = Math.round(base * (0.5 + Math.random() * 0.5));
    this.attempt += 1;
    this.setStatus('offline', { retryIn: delay });
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => this.resume(), delay);
  }

  async resume() {
    if (this.ended || !this.credentials) return;
    const { id, password } = this.credentials;
    try {
      await this.open();
      const ack = await this.auth(
        { msgid: MSG.LOGIN, id, password, sync: true, takeover: true },
        MSG.LOGIN_ACK,
      );
      this.onLoggedIn(ack);
    } catch (err) {
      if (err.errno === 1) {
        // The password no longer works: stop and let the user log in again.
        this.ended = true;
        this.credentials = null;
        this.shutdown();
        this.setStatus('ended', { reason: err.message });
        return;
      }
      // A socket that closed has scheduled the next attempt already (onClosed); an open one
      // (refused: 2, 108, 109; or no answer) is closed so that it does.
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.dropSocket();
    }
  }

  /** Gives up the current socket at once, as if it had closed (reconnects if logged in). */
  dropSocket() {
    const ws = this.ws;
    if (!ws) return;
    ws.onclose = null;
    ws.onmessage = null;
    ws.close();
    this.onClosed();
  }

  /** Closes the socket without a reconnect. */
  shutdown() {
    clearTimeout(this.reconnectTimer);
    this.receipts.stop();
    if (this.opening) {
      this.openingReject(new ChatError(0, 'the session has ended'));
      this.opening = null;
    }
    const ws = this.ws;
    this.ws = null;
    clearInterval(this.heartbeat);
    if (ws) {
      ws.onclose = null;
      ws.close();
    }
    this.synced = false;
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new ChatError(0, 'the session has ended'));
    }
    this.pending.clear();
    if (this.authWaiter) {
      const w = this.authWaiter;
      this.authWaiter = null;
      w.reject(new ChatError(0, 'the session has ended'));
    }
  }

  sendFrame(frame) {
    const text = JSON.stringify(frame);
    if (this.debug) console.debug('>', text);
    this.ws.send(text);
  }

  setStatus(state, extra = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent('status', { detail: { state, ...extra } }));
  }
}

function randomId() {
  const bytes = new Uint8Array(6);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
