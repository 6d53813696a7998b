// The demo page end to end: two browser contexts are two people on
// `huddle serve --demo`. They see each other, type into the document at the
// same time and end with the same text holding both edits, and each sees the
// other's cursor (with a name) move as the other types. The chat says who is
// typing. One goes offline, misses messages and edits, edits too, comes back,
// and is shown exactly what it missed, once, with both edits merged; the
// others see the cursor go and come back. The history shows the document at
// an older version. A third person who comes after one has left still sees
// that one's name, the rooms show how many people are in them, and a refused
// sign-in shows the server's reason.
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
/** Alice's first draft, then what each adds at the same time (Alice to line 1, Bob at the end). */
const DRAFT = 'Agenda\n1. ship the client\n';
const ALICE_ADDS = ' for Friday';
const BOB_ADDS = '2. Bob: fix the tests';
const MERGED = `Agenda${ALICE_ADDS}\n1. ship the client\n${BOB_ADDS}`;

/** Signs in with `name` and waits until the document and chat are loaded. */
async function signIn(page: Page, baseUrl: string, name: string): Promise<void> {
  await page.goto(`${baseUrl}/`);
  await page.fill('#name', name);
  await page.click('#join');
  await page.waitForSelector('#status[data-status="connected"]');
  await page.waitForSelector('#doc-text:not([disabled])');
  await page.waitForSelector(`#chat-members li:text-is("${name}")`);
}

/** The live document's text on `page`. */
function docText(page: Page): Promise<string> {
  return page.inputValue('#doc-text');
}

/** Waits until `page`'s document is exactly `text` and every local edit is stored. */
async function docIs(page: Page, text: string): Promise<void> {
  await page.waitForFunction(
    (t) => (document.getElementById('doc-text') as HTMLTextAreaElement).value === t && document.getElementById('doc-status')?.textContent?.startsWith('Saved'),
    text,
  );
}

/** Where `userId`'s cursor is drawn on `page`, once it is; its name label must say `name`. */
async function remoteCaret(page: Page, userId: string, name: string): Promise<{ x: number; y: number }> {
  const caret = page.locator(`#doc-cursors .remote-cursor[data-user-id="${userId}"] .remote-caret`);
  await caret.locator(`.remote-name:text-is("${name}")`).waitFor();
  const box = await caret.boundingBox();
  assert.ok(box !== null, `${name}'s cursor is visible`);
  return { x: box.x, y: box.y };
}

/** Waits until `userId`'s cursor on `page` is right of `from` (typing moved it), on the same line. */
async function caretMovedRight(page: Page, userId: string, from: { x: number; y: number }): Promise<void> {
  await page.waitForFunction(
    ([id, x, y]) => {
      const el = document.querySelector(`#doc-cursors .remote-cursor[data-user-id="${id}"] .remote-caret`);
      if (el === null) return false;
      const box = el.getBoundingClientRect();
      return box.x > x + 20 && Math.abs(box.y - y) < 2;
    },
    [userId, from.x, from.y] as const,
  );
}

/** Waits until the line under `page`'s chat says exactly `text` about who is typing. */
async function typingIs(page: Page, text: string): Promise<void> {
  await page.waitForFunction((t) => document.getElementById('chat-typing')?.textContent === t, text);
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
  /** The version Alice's draft made. */
  let draftVersion = 0;

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
      ['/editor.js', /javascript/],
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

  test('two people type at once: no conflict, one text, and each sees the other\'s cursor', async () => {
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

    // Alice writes a first draft; Bob sees it
    await a.fill('#doc-text', DRAFT);
    await docIs(a, DRAFT);
    await docIs(b, DRAFT);
    draftVersion = Number((await a.textContent('#doc-version'))?.replace(/^v/, ''));
    assert.ok(draftVersion > 0);

    // Alice goes to the end of the first line, Bob to the end of the text;
    // each sees the other's cursor, with the name
    await a.click('#doc-text');
    await a.keyboard.press('Control+Home');
    await a.keyboard.press('End');
    await b.click('#doc-text');
    await b.keyboard.press('Control+End');
    const aliceAt = await remoteCaret(b, 'alice', 'Alice');
    const bobAt = await remoteCaret(a, 'bob', 'Bob');
    assert.ok(bobAt.y > aliceAt.y, 'Bob is on a lower line than Alice');

    // both type at the same time, keystrokes interleaved
    await Promise.all([a.keyboard.type(ALICE_ADDS, { delay: 15 }), b.keyboard.type(BOB_ADDS, { delay: 15 })]);
    await docIs(a, MERGED);
    await docIs(b, MERGED);

    // the cursors followed the typing, each on its own line
    await caretMovedRight(b, 'alice', aliceAt);
    await caretMovedRight(a, 'bob', bobAt);
    // a selection is drawn too
    await b.keyboard.down('Shift');
    for (let i = 0; i < 'the tests'.length; i++) await b.keyboard.press('ArrowLeft');
    await b.keyboard.up('Shift');
    await a.waitForSelector('#doc-cursors .remote-selection');
    await a.screenshot({ path: `${RESULTS}alice-cursors.png` });
    await b.screenshot({ path: `${RESULTS}bob-cursors.png` });
  });

  test('the chat says who is typing, until they send or pause', async () => {
    await b.fill('#chat-input', 'Hi Alice, reading your agenda');
    await typingIs(a, 'Bob is typing…');
    assert.equal(await b.textContent('#chat-typing'), '', 'not about yourself');
    await b.press('#chat-input', 'Enter');
    await seesMessage(a, 'Hi Alice, reading your agenda');
    await typingIs(a, '');
    // typing, then a pause: it goes away by itself
    await a.type('#chat-input', 'hmm');
    await typingIs(b, 'Alice is typing…');
    await typingIs(b, '');
    await a.fill('#chat-input', '');
  });

  test('one goes offline, both edit, and the edits merge when it is back', async () => {
    const before = await messageTexts(b);

    // Bob goes offline; his cursor leaves Alice's window
    await bob.setOffline(true);
    await b.waitForSelector('#status:not([data-status="connected"])');
    await b.waitForSelector('#chat-offline:not([hidden])');
    await a.waitForSelector('#doc-cursors .remote-cursor[data-user-id="bob"]', { state: 'detached' });

    // meanwhile: Alice writes twice and edits; Bob writes and edits too
    await sendChat(a, 'Bob, are you there?');
    await sendChat(a, 'I added a second point');
    await seesMessage(a, 'I added a second point');
    await a.click('#doc-text');
    await a.keyboard.press('Control+Home');
    await a.keyboard.type('# ');
    await docIs(a, `# ${MERGED}`);
    await sendChat(b, 'typed while offline');
    await b.waitForSelector('#chat-messages li.pending');
    await b.click('#doc-text');
    await b.keyboard.press('Control+End');
    await b.keyboard.type(' (offline)');
    await b.waitForSelector('#doc-status:has-text("Offline: your edits are kept")');

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

    // both edits are in, in both windows, and Bob's cursor is back
    const merged = `# ${MERGED} (offline)`;
    await docIs(b, merged);
    await docIs(a, merged);
    await remoteCaret(a, 'bob', 'Bob');
    await a.screenshot({ path: `${RESULTS}alice-final.png` });
    await b.screenshot({ path: `${RESULTS}bob-final.png` });
  });

  test('the history shows the document at an older version', async () => {
    // Bob adds a line, one stored version per keystroke: more than a page of history
    let text = await docText(b);
    await b.click('#doc-text');
    await b.keyboard.press('Control+End');
    for (const key of '\nabcdefghijklmnopqrstuvwxyz') {
      await b.keyboard.type(key);
      text += key;
      await docIs(b, text);
    }
    await docIs(a, text);
    await a.click('#history-toggle');
    await a.waitForSelector('#history-list button');
    assert.equal(await a.getAttribute('#history-toggle', 'aria-expanded'), 'true');
    // The newest version first; the draft's is on an older page.
    const live = Number((await a.textContent('#doc-version'))?.replace(/^v/, ''));
    assert.equal(await a.getAttribute('#history-list li:first-child button', 'data-version'), String(live));
    const draft = a.locator(`#history-list button[data-version="${draftVersion}"]`);
    let pages = 1;
    for (; (await draft.count()) === 0 && pages < 10; pages++) {
      const shown = await a.locator('#history-list li').count();
      await a.click('#history-older');
      await a.waitForFunction((n) => document.querySelectorAll('#history-list li').length > n, shown);
    }
    assert.ok(pages > 1, 'the draft was not on the first page');
    await draft.click();
    await a.waitForSelector('#doc-old:not([hidden])');
    assert.equal(await a.inputValue('#doc-old'), DRAFT);
    assert.match((await a.textContent('#viewing-text')) ?? '', new RegExp(`^Version ${draftVersion} · Alice · .* · read-only$`));
    assert.equal(await a.getAttribute('#doc-old', 'readonly'), '');
    assert.equal(await a.isVisible('#doc-text'), false);
    await a.screenshot({ path: `${RESULTS}alice-history.png` });
    // Escape goes back to the live document, where nothing was lost
    await a.press('#doc-old', 'Escape');
    await a.waitForSelector('#doc-text:visible');
    assert.equal(await docText(a), await docText(b));
    await a.click('#history-toggle');
    await a.waitForSelector('#history', { state: 'hidden' });
  });

  test('someone who left is still shown by name', async () => {
    // Bob closes his window: he is no longer in the rooms' presence, and his cursor goes
    await b.close();
    await a.waitForSelector('#chat-members li:text-is("Bob")', { state: 'detached' });
    await a.waitForSelector('#doc-cursors .remote-cursor[data-user-id="bob"]', { state: 'detached' });
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
