// Reconnecting: the server goes away (killed, shut down, frozen) and comes
// back on the same port and database. Nothing acknowledged is lost, nothing
// is announced twice, and sends made meanwhile go out once after the rejoin.

import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';

import { HuddleError } from '../src/index.js';
import type { HuddleClient, Message } from '../src/index.js';
import { TestServer, collect, mintToken, until, waitFor } from './helpers.js';

/** Fast, deterministic delays for tests. */
const QUICK = { initialDelayMs: 100, maxDelayMs: 400, maxAttempts: Infinity, jitter: 0 };

function seqs(events: { message: Message }[]): number[] {
  return events.map((e) => e.message.seq);
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

describe('reconnect', () => {
  let server: TestServer | undefined;
  afterEach(async () => {
    server?.closeClients();
    await server?.dispose();
    server = undefined;
  });

  test('after the server is killed: missed messages are recovered once, queued sends stored once', async () => {
    server = await TestServer.start();
    // alice waits a minute before retrying, until the test says "now": so
    // the messages below are certainly sent while she is away.
    const alice = server.client(mintToken('alice'), { reconnect: { ...QUICK, initialDelayMs: 60_000, maxDelayMs: 60_000 } });
    const bob = server.client(mintToken('bob'), { reconnect: QUICK });
    await Promise.all([alice.connect(), bob.connect()]);
    await alice.joinChat('ops');
    await bob.joinChat('ops');
    const aliceSeen = collect(alice, 'chat:message');
    const bobSeen = collect(bob, 'chat:message');
    for (let i = 1; i <= 3; i++) await bob.sendMessage('ops', `before ${i}`);
    await until(alice, () => aliceSeen.length === 3, 5_000, 'alice has 1..3');

    // the server dies without a word
    const aliceDown = waitFor(alice, 'disconnect');
    const bobDown = waitFor(bob, 'disconnect');
    await server.kill('SIGKILL');
    assert.equal((await aliceDown).willReconnect, true);
    await bobDown;
    assert.equal(alice.state.status, 'reconnecting');
    assert.equal(alice.state.rooms['chat:ops']?.status, 'rejoining');

    // bob writes while offline: the sends wait
    const offline = [bob.sendMessage('ops', 'offline 1'), bob.sendMessage('ops', 'offline 2')];
    await until(bob, () => bob.state.rooms['chat:ops']?.kind === 'chat' && bob.state.rooms['chat:ops'].pending === 2, 2_000, 'pending 2');

    await server.restart();
    const bobBack = await waitFor(bob, 'room_joined', (r) => r.room === 'chat:ops' && r.rejoin, 10_000);
    assert.equal(bobBack.kind, 'chat');
    const stored = await Promise.all(offline);
    assert.deepEqual(stored.map((m) => m.seq), [4, 5]);

    // and a newcomer writes too, all while alice is still away
    const carol = server.client(mintToken('carol'));
    await carol.connect();
    await carol.joinChat('ops');
    await carol.sendMessage('ops', 'from carol');
    assert.equal(alice.state.status, 'reconnecting');

    alice.reconnectNow();
    await until(alice, () => aliceSeen.length >= 6, 10_000, 'alice recovers 4..6');
    assert.deepEqual(seqs(aliceSeen), range(1, 6));
    assert.deepEqual(aliceSeen.slice(3).map((m) => m.source), ['recovery', 'recovery', 'recovery']);
    assert.deepEqual(aliceSeen.map((m) => m.message.content), ['before 1', 'before 2', 'before 3', 'offline 1', 'offline 2', 'from carol']);
    await until(bob, () => bobSeen.length >= 6, 5_000, 'bob has 1..6');
    assert.deepEqual(seqs(bobSeen), range(1, 6));

    // one more live message shows nothing was left behind or doubled
    await carol.sendMessage('ops', 'after');
    await until(alice, () => aliceSeen.length >= 7, 5_000, 'alice live again');
    assert.deepEqual(seqs(aliceSeen), range(1, 7));
    const history = await alice.history('ops', { limit: 100 });
    assert.deepEqual(history.messages.map((m) => m.seq), range(1, 7));
    assert.equal(alice.state.rooms['chat:ops']?.kind === 'chat' && alice.state.rooms['chat:ops'].pending, 0);
  });

  test('a send in flight when the server dies is stored exactly once', async () => {
    server = await TestServer.start();
    const dan = server.client(mintToken('dan'), { reconnect: QUICK });
    await dan.connect();
    await dan.joinChat('race');
    const seen = collect(dan, 'chat:message');
    // The kill races the commit: either the server stored it (the retry
    // finds it by client_msg_id) or it did not (the retry stores it).
    const sending = dan.sendMessage('race', 'in flight');
    await server.kill('SIGKILL');
    await server.restart();
    const message = await sending;
    assert.equal(message.seq, 1);
    await until(dan, () => seen.length === 1, 5_000, 'announced once');
    const history = await dan.history('race');
    assert.deepEqual(history.messages.map((m) => m.content), ['in flight']);
  });

  test('a graceful shutdown (1001) reconnects at once, documents are reloaded', async () => {
    server = await TestServer.start();
    const eve = server.client(mintToken('eve'), { reconnect: { ...QUICK, initialDelayMs: 60_000, maxDelayMs: 60_000 } });
    const other = server.client(mintToken('other'));
    await Promise.all([eve.connect(), other.connect()]);
    await eve.createDocument('notes', { content: 'first' });
    await eve.shareDocument('notes', 'other', 'editor');
    await eve.joinDocument('notes');

    const down = waitFor(eve, 'disconnect');
    const retry = waitFor(eve, 'reconnecting');
    await server.kill('SIGTERM');
    assert.equal((await down).code, 1001);
    // "reconnect now": no 60 s wait, the first attempt goes at once
    assert.equal((await retry).delayMs, 0);

    await server.restart();
    // The document changed while eve was away; if her first attempt raced
    // the restart, a retry is made now rather than in a minute.
    const editor = server.client(mintToken('other'));
    await editor.connect();
    assert.equal(await editor.updateDocument('notes', 'changed while away', 1), 1);
    eve.reconnectNow();
    const rejoined = await waitFor(eve, 'room_joined', (r) => r.room === 'document:notes' && r.rejoin, 10_000);
    assert.equal(rejoined.kind === 'document' && rejoined.document.content, 'changed while away');
    const room = eve.state.rooms['document:notes'];
    assert.ok(room?.kind === 'document' && room.version === 1 && room.status === 'joined');
    // an edit based on the reloaded version goes through
    assert.equal(await eve.updateDocument('notes', 'eve again', 2), 2);
  });

  test('a frozen server is noticed by ping and the client comes back', async () => {
    server = await TestServer.start();
    const fay = server.client(mintToken('fay'), {
      reconnect: QUICK,
      pingIntervalMs: 200,
      pingTimeoutMs: 300,
      connectTimeoutMs: 500,
    });
    await fay.connect();
    await fay.joinChat('ping');
    const down = waitFor(fay, 'disconnect', () => true, 5_000);
    server.pause();
    assert.equal((await down).code, 4000);
    server.resume();
    await waitFor(fay, 'room_joined', (r) => r.rejoin, 10_000);
    assert.equal(fay.state.status, 'connected');
  });

  test('gives up after the configured attempts with MAX_RECONNECT_EXCEEDED', async () => {
    server = await TestServer.start();
    const gus = server.client(mintToken('gus'), {
      reconnect: { initialDelayMs: 50, maxDelayMs: 100, factor: 2, maxAttempts: 3, jitter: 0 },
    });
    await gus.connect();
    await gus.joinChat('lonely');
    const attempts: (number | null)[] = [];
    gus.on('reconnecting', (r) => attempts.push(r.delayMs));
    const gaveUp = waitFor(gus, 'error', (e) => e.code === 'MAX_RECONNECT_EXCEEDED', 10_000);
    await server.kill('SIGKILL');
    const queued = gus.sendMessage('lonely', 'never delivered');
    const error = await gaveUp;
    assert.deepEqual(attempts, [50, 100, 100]);
    assert.equal(error.details.attempts, 3);
    assert.equal(gus.state.status, 'closed');
    assert.equal(gus.state.error?.code, 'MAX_RECONNECT_EXCEEDED');
    await assert.rejects(queued, (err: unknown) => err instanceof HuddleError && err.code === 'MAX_RECONNECT_EXCEEDED');
    // new requests fail at once rather than waiting forever
    await assert.rejects(gus.sendMessage('lonely', 'x'), (err: unknown) => err instanceof HuddleError);
  });
});

export type { HuddleClient };
