// The web client in a real browser (Debian's chromium, driven by playwright-core), against a
// cluster behind nginx started by tests/browser.rs. Environment:
//   CHAT_WEB_URL         the page, e.g. http://127.0.0.1:PORT/ (nginx)
//   CHAT_SCREENSHOTS     folder for the screenshots (default ../../target/browser-screenshots)
//   CHAT_CLUSTER_NODES   comma-separated node ids the cluster panel must list
//   CHROMIUM             the browser (default /usr/bin/chromium)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  NODES, PAGE, tag, shot, newPage, register, login, open, message, send, seen, unread,
  addFriend, inBrowser,
} from './helpers.mjs';

test('two users chat in the browser through the cluster', { timeout: 150000 }, async () => {
  await inBrowser('scenario', async (browser) => {
    const alice = `alice-${tag}`;
    const bob = `bob-${tag}`;
    const pa = await newPage(browser);
    const pb = await newPage(browser);

    // Register both; a taken name (names compare case-insensitively) is refused, clearly.
    const aliceId = await register(pa, alice, 'pw-alice');
    await pb.fill('#login-user', alice.toUpperCase());
    await pb.fill('#login-password', 'another');
    await pb.click('#register-btn');
    await pb.locator('#login-error', { hasText: 'Registration refused' }).waitFor();
    const bobId = await register(pb, bob, 'pw-bob');
    assert.notEqual(aliceId, bobId);

    // The cluster panel lists both servers with their online counts.
    for (const node of NODES) {
      await pa.locator(`#cluster-servers li[data-node="${node}"] .count`).waitFor();
    }
    if (NODES.length) {
      assert.equal(await pa.locator('#cluster-servers li').count(), NODES.length);
      assert.match(await pa.locator('#cluster-node').textContent(), /connected to|answered by/);
    }

    // Friends both ways; an unknown id gets errno 106's sentence.
    await pa.fill('#add-friend-id', '987654');
    await pa.click('#add-friend-form button');
    await pa.locator('#sidebar-error', { hasText: 'No such user or group' }).waitFor();
    await addFriend(pa, bobId);

    // 1:1 both ways; bob, who has not added alice yet, sees her under "Other chats" with an
    // unread count; markup in a message stays text.
    await send(pa, 'hello bob');
    const xss = '<img src=x onerror="window.__xss=1"> <b>not bold</b>';
    await send(pa, xss);
    await pb.locator(`#other-list li[data-key="u:${aliceId}"] .badge`, { hasText: '2' }).waitFor();
    await addFriend(pb, aliceId); // opens the conversation
    await seen(pb, 'hello bob');
    await seen(pb, xss);
    assert.equal(await pb.evaluate(() => window.__xss), undefined, 'no markup ran');
    assert.equal(await pb.locator('#message-list b').count(), 0);
    assert.equal(await unread(pb, `u:${aliceId}`), 0, 'opening clears the count');
    // A chat the server refuses (over --max-message, 64 KiB) is marked, with its errno's
    // sentence, and can be dismissed.
    await pa.fill('#compose-input', 'é'.repeat(40000)); // 80,000 bytes
    await pa.press('#compose-input', 'Enter');
    const failed = pa.locator('#message-list li.msg.failed');
    await failed.waitFor();
    assert.match(await failed.locator('.meta').textContent(), /not sent: A field is missing/);
    await failed.locator('.dismiss').click();
    await failed.waitFor({ state: 'detached' });
    await send(pb, 'hi alice');
    await seen(pa, 'hi alice');
    // Bob's name was learnt from his message (ADD_FRIEND tells no name).
    await pa.locator(`#friend-list li[data-key="u:${bobId}"] .name`, { hasText: bob }).waitFor();

    // A group: alice creates it, bob joins by id, both chat.
    await pa.fill('#create-group-name', `team-${tag}`);
    await pa.fill('#create-group-desc', 'browser test');
    await pa.click('#create-group-form button');
    await pa.locator('#conv-title', { hasText: `team-${tag}` }).waitFor();
    const sub = await pa.locator('#conv-sub').textContent();
    const groupId = Number(/group #(\d+)/.exec(sub)[1]);
    await pb.fill('#join-group-id', `#${groupId}`);
    await pb.click('#join-group-form button');
    await pb.locator(`#group-list li[data-key="g:${groupId}"]`).waitFor();
    await send(pb, 'hi team');
    await seen(pa, 'hi team');
    await send(pa, 'welcome to the team');
    await seen(pb, 'welcome to the team');
    await pb.click('#members-btn');
    await pb.locator('#members-panel li', { hasText: alice }).waitFor();
    await pb.locator('#members-panel li', { hasText: bob }).waitFor();
    await shot(pa, 'group-chat');

    // Bob closes the page (once it has confirmed what it got: RECV goes out in batches);
    // what alice sends meanwhile is there when he comes back.
    await pb.waitForFunction(() => window.clusterchat.conn.receipts.due.size === 0);
    await pb.context().close();
    // Presence: bob has added alice, so the server pushes his PRESENCE (23) to her page
    // (and MEMBERS of the groups they share refreshes it every 30 s as a fallback).
    const bobDot = pa.locator(`#friend-list li[data-key="u:${bobId}"] .dot`);
    await pa.locator(`#friend-list li[data-key="u:${bobId}"] .dot.offline`).waitFor();
    await open(pa, `u:${bobId}`);
    for (let i = 1; i <= 3; i++) await send(pa, `while you were away ${i}`);
    await open(pa, `g:${groupId}`);
    await send(pa, 'group news while away');
    const pb2 = await newPage(browser);
    await login(pb2, bob, 'pw-bob');
    await pb2.locator('#banner', { hasText: 'arrived while you were away' }).waitFor();
    await pa.locator(`#friend-list li[data-key="u:${bobId}"] .dot.online`).waitFor();
    assert.equal(await bobDot.getAttribute('title'), 'online');
    await pb2.locator(`li[data-key="u:${aliceId}"] .badge`, { hasText: '3' }).waitFor();
    await pb2.locator(`li[data-key="g:${groupId}"] .badge`, { hasText: '1' }).waitFor();
    await open(pb2, `u:${aliceId}`);
    for (let i = 1; i <= 3; i++) await seen(pb2, `while you were away ${i}`);
    await seen(pb2, 'hello bob');
    await shot(pb2, 'back-after-away');

    // A dropped connection: the page reconnects and resumes; nothing is lost or doubled,
    // neither what came in meanwhile nor what bob typed while offline.
    // (The page's reconnect is held until alice has sent, so that she sends into the gap.)
    await pb2.evaluate(() => {
      const c = window.clusterchat.conn;
      c.heldResume = c.resume;
      c.resume = () => {};
      c.ws.close();
    });
    await pb2.locator('#conn-status.offline').waitFor();
    await open(pa, `u:${bobId}`);
    await send(pa, 'sent during the drop');
    await pb2.fill('#compose-input', 'typed while offline');
    await pb2.press('#compose-input', 'Enter');
    await pb2.evaluate(() => {
      const c = window.clusterchat.conn;
      c.resume = c.heldResume;
      c.resume();
    });
    await pb2.locator('#conn-status.online').waitFor();
    await seen(pb2, 'sent during the drop');
    await seen(pb2, 'typed while offline');
    await seen(pa, 'typed while offline');
    await pb2.waitForTimeout(1000); // let any duplicate arrive before counting
    for (const t of ['sent during the drop', 'typed while offline', 'hello bob']) {
      await seen(pb2, t, 1);
    }
    await shot(pb2, 'desktop');

    // Heartbeat: the page PINGs, and a connection that falls silent (here: the page stops
    // hearing it) is given up and replaced. Shortened from 20 s / 45 s for the test.
    await pb2.evaluate(() => {
      const c = window.clusterchat.conn;
      c.pingEveryMs = 1000;
      c.deadAfterMs = 4000;
      window.silentSocket = c.ws;
      c.ws.onmessage = null;
    });
    await pb2.waitForFunction(() => {
      const c = window.clusterchat.conn;
      return c.ws !== window.silentSocket && c.isOnline();
    });
    await pb2.locator('#conn-status.online').waitFor();
    assert.ok(pb2.logs.some((l) => l.includes('> {"msgid":20,')), 'a PING was sent');
    await send(pa, 'after the silence');
    await seen(pb2, 'after the silence');

    // Scroll-back: more than a page of messages, then a fresh page shows the newest page and
    // loads the older ones when scrolled to the top.
    for (let i = 1; i <= PAGE + 5; i++) await send(pa, `bulk ${i}`);
    await pa.context().close();
    const pa2 = await newPage(browser);
    await login(pa2, `#${aliceId}`, 'pw-alice');
    await open(pa2, `u:${bobId}`);
    await seen(pa2, `bulk ${PAGE + 5}`);
    assert.equal(await pa2.locator('#message-list li.msg').count(), PAGE);
    assert.equal(await message(pa2, 'hello bob').count(), 0, 'older not loaded yet');
    await pa2.locator('#load-older').waitFor();
    await pa2.locator('#messages').evaluate((el) => { el.scrollTop = 0; });
    await seen(pa2, 'bulk 1');
    await pa2.locator('#messages').evaluate((el) => { el.scrollTop = 0; });
    await seen(pa2, 'hello bob');
    await pa2.locator('#history-start').waitFor();
    // hello + markup, hi alice, 3 while away, drop + offline, after the silence, the bulk.
    const total = 2 + 1 + 3 + 2 + 1 + PAGE + 5;
    assert.equal(await pa2.locator('#message-list li.msg').count(), total);
    const seqs = await pa2.locator('#message-list li.msg').evaluateAll(
      (els) => els.map((e) => Number(e.dataset.seq)),
    );
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'in seq order');
    assert.equal(new Set(seqs).size, seqs.length, 'no seq twice');
    await shot(pa2, 'scroll-back');

    // Phone width: the list, then one conversation with a back button.
    await pa2.setViewportSize({ width: 375, height: 740 });
    await pa2.click('#back-btn');
    await pa2.locator('#friend-list').waitFor({ state: 'visible' });
    await shot(pa2, 'phone-list');
    await open(pa2, `u:${bobId}`);
    assert.ok(await pa2.locator('#back-btn').isVisible());
    const width = await pa2.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 375, `no horizontal scrolling at 375 px (${width})`);
    await shot(pa2, 'phone-conversation');

    for (const p of [pa2, pb2]) assert.deepEqual(p.errors, [], 'no script errors');
  });
});
