// The demo page end to end: two browser contexts are two people on
// `huddle serve --demo`. They see each other, share edits and chat; one goes
// offline, misses messages and edits, comes back, and is shown exactly what
// it missed, once, with the conflicting edit offered rather than lost. A
// third person who comes after one has left still sees that one's name, the
// rooms show how many people are in them, and a refused sign-in shows the
// server's reason.
//
// Chromium is Debian's (/usr/bin/chromium, or $CHROMIUM_PATH) driven by
// playwright-core; screenshots go to clients/js/test-results/.

import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';

import { chromium } from 'playwright-core';
import type { Browser, BrowserContext, Page } from 'playwright-core';

import { TestServer } from '../helpers.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];
const RESULTS = fileURLToPath(new URL('../../../test-results/', import.meta.url));
const DEMO_DIR = fileURLToPath(new URL('../../../../demo/', import.meta.url));
/** Longest wait for anything the page should show. */
const UI_TIMEOUT_MS = 10_000;

/** Signs in with `name` and waits until the document and chat are loaded. */
async function signIn(page: Page, baseUrl: string, name: string): Promise<void> {
  await page.goto(`${baseUrl}/`);
  await page.fill('#name', name);
  await page.click('#join');
  await page.waitForSelector('#status[data-status="connected"]');
  await page.waitForSelector('#doc-text:not([disabled])');
  await page.waitForSelector(`#chat-members li:text-is("${name}")`);
}

async function messageTexts(page: Page): Promise<string[]> {
  return page.$$eval('#chat-messages li[data-seq] .text', (els) => els.map((e) => e.textContent ?? ''));
}

async function sendChat(page: Page, text: string): Promise<void> {
  await page.fill('#chat-input', text);
  await page.press('#chat-input', 'Enter');
}

/** Waits until the page shows a confirmed message with `text`. */
async function seesMessage(page: Page, text: string): Promise<void> {
  await page.waitForFunction(
    (t) => [...document.querySelectorAll('#chat-messages li[data-seq] .text')].some((e) => e.textContent === t),
    text,
  );
}

describe('demo page', () => {
  let server: TestServer | undefined;
  let baseUrl: string;
  let browser: Browser;
  let alice: BrowserContext;
  let bob: BrowserContext;
  let a: Page;
  let b: Page;

  before(async () => {
    mkdirSync(RESULTS, { recursive: true });
    if (process.env.HUDDLE_DEMO_URL !== undefined) {
      baseUrl = process.env.HUDDLE_DEMO_URL.replace(/\/$/, '');
    } else {
      // A short heartbeat, so a connection cut by "offline" is reaped quickly.
      server = await TestServer.start({ demo: true, env: { HUDDLE_HEARTBEAT_MS: '2000' } });
      baseUrl = server.httpUrl;
    }
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    alice = await browser.newContext({ viewport: { width: 1100, height: 720 } });
    bob = await browser.newContext({ viewport: { width: 1100, height: 720 } });
    a = await alice.newPage();
    b = await bob.newPage();
    for (const page of [a, b]) page.setDefaultTimeout(UI_TIMEOUT_MS);
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  test('the demo endpoints exist only as the page needs them', async () => {
    const page = await fetch(`${baseUrl}/`);
    assert.equal(page.status, 200, 'GET / serves the demo page');
    assert.match(page.headers.get('content-type') ?? '', /text\/html/);
    for (const [path, type] of [
      ['/index.html', /html/],
      ['/app.js', /javascript/],
      ['/huddle.js', /javascript/],
      ['/style.css', /css/],
      ['/favicon.svg', /svg/],
    ] as const) {
      const res = await fetch(`${baseUrl}${path === '/index.html' ? '/' : path}`);
      assert.equal(res.status, 200, `GET ${path}`);
      assert.match(res.headers.get('content-type') ?? '', type, `${path} content type`);
      // The binary embeds the files when it is compiled.
      const onDisk = readFileSync(`${DEMO_DIR}${path.slice(1)}`, 'utf8');
      assert.ok((await res.text()) === onDisk, `${path} served differs from clients/demo${path}: rebuild the server (cargo build)`);
    }
    const token = await fetch(`${baseUrl}/demo/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Probe' }),
    });
    assert.equal(token.status, 200, 'POST /demo/token');
    const body = (await token.json()) as { token?: unknown; user_id?: unknown };
    assert.equal(typeof body.token, 'string');
    assert.equal(typeof body.user_id, 'string');
    const icon = await fetch(`${baseUrl}/favicon.ico`);
    assert.equal(icon.status, 200, 'GET /favicon.ico');
    assert.match(icon.headers.get('content-type') ?? '', /svg/);
  });

  test('a refused sign-in shows the server\'s reason', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(UI_TIMEOUT_MS);
    await page.goto(`${baseUrl}/`);
    await page.fill('#name', '!!!');
    await page.click('#join');
    await page.waitForSelector('#login-error:has-text("needs at least one letter or digit")');
    assert.equal(await page.textContent('#login-error'), 'Could not join: name needs at least one letter or digit');
    assert.equal(await page.isEnabled('#join'), true, 'the form can be sent again');
    await context.close();
  });

  test('two people edit, chat, and one of them recovers after going offline', async () => {
    // both join and see each other
    await signIn(a, baseUrl, 'Alice');
    await signIn(b, baseUrl, 'Bob');
    await a.waitForSelector('#doc-members li:text-is("Bob")');
    await a.waitForSelector('#chat-members li:text-is("Bob")');
    await b.waitForSelector('#doc-members li:text-is("Alice")');
    for (const page of [a, b]) {
      await page.waitForSelector('#doc-count:text-is("2 here")');
      await page.waitForSelector('#chat-count:text-is("2 here")');
    }

    // Alice types; Bob sees the text and the new version
    const startVersion = Number((await b.textContent('#doc-version'))?.replace(/^v/, ''));
    await a.fill('#doc-text', 'Agenda\n1. ship the client');
    await b.waitForFunction(() => (document.getElementById('doc-text') as HTMLTextAreaElement).value === 'Agenda\n1. ship the client');
    await b.waitForSelector(`#doc-version:text-is("v${startVersion + 1}")`);
    await a.waitForSelector(`#doc-version:text-is("v${startVersion + 1}")`);

    // Bob chats; Alice sees it
    await sendChat(b, 'Hi Alice, reading your agenda');
    await seesMessage(a, 'Hi Alice, reading your agenda');
    await seesMessage(b, 'Hi Alice, reading your agenda');
    const before = await messageTexts(b);

    // Bob goes offline
    await bob.setOffline(true);
    await b.waitForSelector('#status:not([data-status="connected"])');
    await b.waitForSelector('#chat-offline:not([hidden])');

    // meanwhile: Alice writes twice and edits; Bob writes and edits too
    await sendChat(a, 'Bob, are you there?');
    await sendChat(a, 'I added a second point');
    await seesMessage(a, 'I added a second point');
    await a.fill('#doc-text', 'Agenda\n1. ship the client\n2. alice: write the docs');
    await a.waitForSelector(`#doc-version:text-is("v${startVersion + 2}")`);
    await sendChat(b, 'typed while offline');
    await b.waitForSelector('#chat-messages li.pending');
    await b.fill('#doc-text', 'Agenda\n1. ship the client\n2. bob: fix the tests');

    // Bob comes back: exactly the missed messages, once, then his own
    await bob.setOffline(false);
    await b.waitForSelector('#status[data-status="connected"]', { timeout: 15_000 });
    await seesMessage(b, 'typed while offline');
    await seesMessage(a, 'typed while offline');
    await b.waitForFunction(() => document.querySelectorAll('#chat-messages li.pending').length === 0);
    const expected = [...before, 'Bob, are you there?', 'I added a second point', 'typed while offline'];
    assert.deepEqual(await messageTexts(b), expected);
    assert.deepEqual(await messageTexts(a), expected);
    const seqs = await b.$$eval('#chat-messages li[data-seq]', (els) => els.map((e) => Number((e as HTMLElement).dataset.seq)));
    assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), 'in seq order');
    assert.equal(new Set(seqs).size, seqs.length, 'no seq twice');

    // Bob's offline edit conflicts with Alice's: shown, not lost
    await b.waitForSelector('#conflict:not([hidden])');
    assert.match((await b.textContent('#conflict-theirs')) ?? '', /alice: write the docs/);
    assert.match((await b.textContent('#conflict-mine')) ?? '', /bob: fix the tests/);
    await a.screenshot({ path: `${RESULTS}alice.png` });
    await b.screenshot({ path: `${RESULTS}bob-conflict.png` });

    // Bob keeps his text; Alice gets it as the next version
    await b.click('#keep-mine');
    await b.waitForSelector('#conflict', { state: 'hidden' });
    await a.waitForFunction(() => (document.getElementById('doc-text') as HTMLTextAreaElement).value.includes('bob: fix the tests'));
    await a.waitForSelector(`#doc-version:text-is("v${startVersion + 3}")`);
    await b.waitForSelector(`#doc-version:text-is("v${startVersion + 3}")`);

    await a.screenshot({ path: `${RESULTS}alice-final.png` });
    await b.screenshot({ path: `${RESULTS}bob-final.png` });
  });

  test('someone who left is still shown by name', async () => {
    // Bob closes his window: he is no longer in the rooms' presence
    await b.close();
    await a.waitForSelector('#chat-members li:text-is("Bob")', { state: 'detached' });
    await a.waitForSelector('#chat-count:text-is("1 here")');
    // Carol comes later and reads Bob's messages and Bob's version
    const carol = await browser.newContext({ viewport: { width: 1100, height: 720 } });
    const c = await carol.newPage();
    c.setDefaultTimeout(UI_TIMEOUT_MS);
    await signIn(c, baseUrl, 'Carol');
    await c.waitForSelector('#chat-count:text-is("2 here")');
    await a.waitForSelector('#chat-count:text-is("2 here")');
    await seesMessage(c, 'Hi Alice, reading your agenda');
    await c.waitForFunction((t) => {
      const li = [...document.querySelectorAll('#chat-messages li[data-seq]')].find((e) => e.querySelector('.text')?.textContent === t);
      return li?.querySelector('.author')?.textContent === 'Bob';
    }, 'Hi Alice, reading your agenda');
    await c.waitForSelector('#doc-status:has-text("by Bob")');
    await c.screenshot({ path: `${RESULTS}carol.png` });
    await carol.close();
  });
});
