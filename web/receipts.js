// Cumulative receipts (RECV, msgid 14, docs/PROTOCOL.md): per conversation, the highest seq
// this page has received. The server moves the user's cursor there, so a later sync login
// does not send those messages again. Sent in batches, as the protocol asks: once the
// login's backlog is in (SYNC_DONE), then 400 ms after a message arrives or at once after a
// hundred, and when the page is closed.

const FLUSH_MS = 400;
const BATCH = 100;

export class Receipts {
  /** `send(key, seq)` writes one RECV; called only while `ready`. */
  constructor(send) {
    this.send = send;
    this.due = new Map(); // conversation key -> highest seq not yet confirmed
    this.count = 0; // messages noted since the last flush
    this.timer = null;
    this.ready = false; // connected, and the login's backlog is in
  }

  /** Notes that conversation `key` was received up to `seq`. */
  note(key, seq) {
    if (!(seq > (this.due.get(key) || 0))) return;
    this.due.set(key, seq);
    this.count += 1;
    if (!this.ready) return;
    if (this.count >= BATCH) this.flush();
    else if (!this.timer) this.timer = setTimeout(() => this.flush(), FLUSH_MS);
  }

  /** From now on RECVs may be sent (after SYNC_DONE); sends what is due. */
  start() {
    this.ready = true;
    this.flush();
  }

  /** The connection is gone: keep what is due for the next session. */
  stop() {
    this.ready = false;
    clearTimeout(this.timer);
    this.timer = null;
  }

  flush() {
    clearTimeout(this.timer);
    this.timer = null;
    if (!this.ready) return;
    for (const [key, seq] of this.due) this.send(key, seq);
    this.due.clear();
    this.count = 0;
  }
}
