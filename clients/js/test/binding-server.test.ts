// The document binding against the real server: editors typing at once
// converge on the server's content, a whole-content update from a plain
// client merges in, and a connection lost mid-typing applies every edit
// exactly once. (binding.test.ts drives the hard cases with a scripted
// server; here the server is the real one.)

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { applyOp } from '../src/index.js';
import type { DocumentBinding, HuddleClient, TextOp } from '../src/index.js';
import { TestServer, mintToken } from './helpers.js';

const API_KEY = 'binding-tests-api-key';
const QUICK = { initialDelayMs: 50, maxDelayMs: 200, maxAttempts: Infinity, jitter: 0 };

/** A small deterministic generator (the tests must fail the same way twice). */
function random(seed: number): (n: number) => number {
  let state = seed >>> 0;
  return (n: number) => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state % n;
  };
}

const WORDS = ['a', 'bc', 'é', '🙂', ' ', 'xyz'];

/** One random edit of the binding's current text: an insert or a delete. */
function randomEdit(doc: DocumentBinding, next: (n: number) => number): void {
  const length = [...doc.text].length;
  const at = next(length + 1);
  if (length > at && next(3) === 0) {
    doc.delete(at, 1 + next(Math.min(3, length - at)));
  } else {
    doc.insert(at, WORDS[next(WORDS.length)] ?? 'a');
  }
}

/** Resolves once `check` holds, looked at after every event of any client. */
function whenAll(clients: HuddleClient[], check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  if (check()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const offs: (() => void)[] = [];
    const done = (error?: Error): void => {
      clearTimeout(timer);
      for (const off of offs) off();
      if (error === undefined) resolve();
      else reject(error);
    };
    const timer = setTimeout(() => done(new Error(`${what} not reached within ${timeoutMs} ms`)), timeoutMs);
    for (const c of clients) {
      offs.push(
        c.onAny(() => {
          if (check()) done();
        }),
      );
    }
  });
}

/** Settled: no edit pending, every binding at the same version with the same text. */
function converged(docs: DocumentBinding[]): boolean {
  const [first, ...rest] = docs;
  if (first === undefined || first.pending) return false;
  return rest.every((d) => !d.pending && d.version === first.version && d.text === first.text);
}

/** Lets the event loop run (frames flow) between bursts of typing. */
function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

describe('document binding against the server', () => {
  let server: TestServer;
  before(async () => {
    server = await TestServer.start({
      env: { HUDDLE_RATE_PER_SECOND: '10000', HUDDLE_RATE_BURST: '10000', HUDDLE_API_KEY: API_KEY },
    });
  });
  after(async () => {
    server.closeClients();
    await server.dispose();
  });

  /** The document as stored, its history, and the history replayed from version 0. */
  async function stored(
    id: string,
    initial: string,
  ): Promise<{ content: string; version: number; replayed: string; changes: { ops: TextOp; user_id: string }[] }> {
    const headers = { authorization: `Bearer ${API_KEY}` };
    const doc = (await (await fetch(`${server.httpUrl}/api/documents/${id}`, { headers })).json()) as {
      document: { content: string; version: number };
    };
    let replayed = initial;
    let after = 0;
    const changes: { ops: TextOp; user_id: string }[] = [];
    for (;;) {
      const url = `${server.httpUrl}/api/documents/${id}/history?after_version=${after}&limit=1000`;
      const page = (await (await fetch(url, { headers })).json()) as {
        changes: { version: number; ops: TextOp; user_id: string }[];
        has_more: boolean;
      };
      for (const change of page.changes) {
        assert.equal(change.version, after + 1);
        replayed = applyOp(replayed, change.ops);
        after = change.version;
        changes.push(change);
      }
      if (!page.has_more) break;
    }
    return { content: doc.document.content, version: doc.document.version, replayed, changes };
  }

  test('two editors typing at once converge on what the server stored', async () => {
    const alice = server.client(mintToken('alice'));
    const bob = server.client(mintToken('bob'));
    await Promise.all([alice.connect(), bob.connect()]);
    await alice.createDocument('pad', { content: 'hello' });
    await alice.shareDocument('pad', 'bob', 'editor');
    const a = await alice.openDocument('pad');
    const b = await bob.openDocument('pad');
    const next = random(7);
    for (let i = 0; i < 150; i++) {
      randomEdit(a, next);
      randomEdit(b, next);
      if (i % 5 === 0) await turn();
    }
    await whenAll([alice, bob], () => converged([a, b]), 'convergence');
    assert.ok((a.version ?? 0) > 1, 'several versions were made');
    const { content, version, replayed, changes } = await stored('pad', 'hello');
    assert.equal(content, a.text);
    assert.equal(version, a.version);
    assert.equal(replayed, a.text);
    assert.deepEqual(new Set(changes.map((c) => c.user_id)), new Set(['alice', 'bob']));
  });

  test('a whole-content update from another client merges with the edits in flight', async () => {
    const alice = server.client(mintToken('alice'));
    const bob = server.client(mintToken('bob'));
    const carol = server.client(mintToken('carol'));
    await Promise.all([alice.connect(), bob.connect(), carol.connect()]);
    await alice.createDocument('mixed', { content: 'one two three' });
    await alice.shareDocument('mixed', 'bob', 'editor');
    await alice.shareDocument('mixed', 'carol', 'editor');
    const a = await alice.openDocument('mixed');
    const b = await bob.openDocument('mixed');
    const next = random(11);
    for (let i = 0; i < 40; i++) {
      randomEdit(a, next);
      randomEdit(b, next);
      if (i === 20) {
        // Carol replaces the whole content, as a plain client does,
        // retrying on VERSION_CONFLICT while the others type.
        let version = (await carol.joinDocument('mixed')).document.version;
        for (;;) {
          try {
            await carol.updateDocument('mixed', 'REPLACED', version + 1);
            break;
          } catch (err) {
            const current = (err as { details?: { current_version?: number } }).details?.current_version;
            assert.equal(typeof current, 'number', String(err));
            version = current as number;
          }
        }
      }
      await turn();
    }
    await whenAll([alice, bob], () => converged([a, b]), 'convergence');
    const { content, replayed, changes } = await stored('mixed', 'one two three');
    assert.equal(content, a.text);
    assert.equal(replayed, a.text);
    // Recorded as the operation that replaces the whole content.
    assert.ok(changes.some((c) => c.user_id === 'carol' && c.ops[0] === 'REPLACED'), JSON.stringify(changes));
  });

  test('a connection lost while typing: every edit is applied exactly once', async () => {
    const alice = server.client(mintToken('alice'), { reconnect: QUICK });
    const bob = server.client(mintToken('bob'));
    await Promise.all([alice.connect(), bob.connect()]);
    await alice.createDocument('lost', { content: '' });
    await alice.shareDocument('lost', 'bob', 'editor');
    const a = await alice.openDocument('lost');
    const b = await bob.openDocument('lost');
    let connects = 0;
    alice.on('connect', () => (connects += 1));
    for (let round = 0; round < 5; round++) {
      // An operation in flight, then the connection goes; more typing
      // while it is away.
      a.insert(0, `<${round}>`);
      alice.drop();
      a.insert([...a.text].length, `[${round}]`);
      b.insert(0, `{${round}}`);
      await whenAll([alice, bob], () => converged([a, b]), `round ${round}`);
    }
    assert.equal(connects, 5, 'alice reconnected after every drop');
    for (let round = 0; round < 5; round++) {
      for (const mark of [`<${round}>`, `[${round}]`, `{${round}}`]) {
        assert.equal(a.text.split(mark).length - 1, 1, `${mark} once in ${a.text}`);
      }
    }
    const { content, replayed } = await stored('lost', '');
    assert.equal(content, a.text);
    assert.equal(replayed, a.text);
  });
});

describe('document binding against a server that keeps little history', () => {
  let server: TestServer;
  before(async () => {
    server = await TestServer.start({ env: { HUDDLE_MAX_RECOVERY: '2' } });
  });
  after(async () => {
    server.closeClients();
    await server.dispose();
  });

  test('offline edits survive a rejoin that cannot recover', async () => {
    // Alice reconnects only when told to, so the others' edits certainly
    // happen while she is away.
    const alice = server.client(mintToken('alice'), { reconnect: { ...QUICK, initialDelayMs: 60_000, maxDelayMs: 60_000 } });
    const bob = server.client(mintToken('bob'));
    await Promise.all([alice.connect(), bob.connect()]);
    await alice.createDocument('far', { content: 'base' });
    await alice.shareDocument('far', 'bob', 'editor');
    const a = await alice.openDocument('far');
    const b = await bob.openDocument('far');
    alice.drop();
    a.insert(0, 'A1 ');
    a.insert([...a.text].length, ' A2');
    // More versions than the server replays (max_recovery = 2).
    for (let i = 0; i < 5; i++) {
      b.insert(2, `b${i}`);
      await whenAll([bob], () => !b.pending, `bob's edit ${i}`);
    }
    const resync: string[] = [];
    a.on('change', (c) => resync.push(c.source));
    alice.reconnectNow();
    await whenAll([alice, bob], () => converged([a, b]), 'convergence');
    assert.ok(resync.includes('resync'), `the binding reloaded: ${resync.join(',')}`);
    for (const mark of ['A1 ', ' A2', 'b0', 'b4']) {
      assert.equal(a.text.split(mark).length - 1, 1, `${mark} once in ${a.text}`);
    }
  });
});
