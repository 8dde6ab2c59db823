// Helpers of the browser scenarios: a page per user, the form and list actions, waits that
// assert counts, and screenshots. Environment: see scenario.test.mjs.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const BASE = process.env.CHAT_WEB_URL;
const SHOTS = process.env.CHAT_SCREENSHOTS ||
  fileURLToPath(new URL('../../target/browser-screenshots', import.meta.url));
export const NODES = (process.env.CHAT_CLUSTER_NODES || '').split(',').filter(Boolean);
const WAIT = 20000; // ms for any one thing to show up
export const PAGE = 30; // the client's HISTORY page (web/app.js)
export const tag = Math.random().toString(36).slice(2, 6);
const pages = []; // every page opened, for the screenshots of a failure

export async function shot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

export async function newPage(browser, viewport = { width: 1100, height: 760 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  pages.push(page);
  page.setDefaultTimeout(WAIT);
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.errors = errors;
  page.logs = [];
  page.on('console', (m) => page.logs.push(`${m.type()}: ${m.text()}`));
  await page.goto(BASE);
  await page.evaluate(() => { window.clusterchat.conn.debug = true; });
  return page;
}

/** Registers through the form; returns the new id (the page is then logged in). */
export async function register(page, name, password) {
  await page.fill('#login-user', name);
  await page.fill('#login-password', password);
  await page.click('#register-btn');
  await page.locator('#chat-view').waitFor({ state: 'visible' });
  const me = await page.locator('#me').textContent();
  const m = /\(#(\d+)\)$/.exec(me);
  assert.ok(m, `#me shows the id: ${me}`);
  return Number(m[1]);
}

export async function login(page, ident, password) {
  await page.fill('#login-user', ident);
  await page.fill('#login-password', password);
  await page.click('#login-btn');
  await page.locator('#chat-view').waitFor({ state: 'visible' });
  await page.locator('#conn-status.online').waitFor();
}

export async function open(page, key) {
  await page.click(`li[data-key="${key}"]`);
  await page.locator('#conv-pane').waitFor({ state: 'visible' });
}

export function message(page, text) {
  return page.locator('#message-list .text').getByText(text, { exact: true });
}

/** Sends through the compose box and waits until the server has stored it (seq shown). */
export async function send(page, text) {
  await page.fill('#compose-input', text);
  await page.press('#compose-input', 'Enter');
  const text_ = page.locator('.text').getByText(text, { exact: true });
  await page.locator('#message-list li.msg.mine:not(.pending)', { has: text_ }).waitFor();
}

export async function seen(page, text, times = 1) {
  await message(page, text).first().waitFor();
  assert.equal(await message(page, text).count(), times, `"${text}" shown ${times} time(s)`);
}

export async function unread(page, key) {
  const badge = page.locator(`li[data-key="${key}"] .badge`);
  if ((await badge.count()) === 0) return 0;
  return Number(await badge.textContent());
}

export async function addFriend(page, id) {
  await page.fill('#add-friend-id', String(id));
  await page.click('#add-friend-form button');
  await page.locator(`#friend-list li[data-key="u:${id}"]`).waitFor();
}

/** Starts Debian's chromium headless (CHROMIUM overrides the path). */
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    // As root in a container, and quiet: no calls home (this machine's network is closed).
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/**
 * Runs `scenario(browser)` in a fresh browser; on failure, screenshots every open page as
 * failure-<name>-<i>.png and prints its console (every frame: debug is on) before rethrowing.
 */
export async function inBrowser(name, scenario) {
  assert.ok(BASE, 'CHAT_WEB_URL is set');
  const browser = await launch();
  try {
    await scenario(browser);
  } catch (err) {
    for (const [i, p] of pages.entries()) {
      if (!p.isClosed()) await shot(p, `failure-${name}-${i}`).catch(() => {});
      if (p.logs.length) console.error(`page ${i} console:\n${p.logs.join('\n')}`);
    }
    throw err;
  } finally {
    pages.length = 0;
    await browser.close();
  }
}
