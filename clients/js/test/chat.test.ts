// Chats: join, presence, send and receive, history, idempotent sends.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { HuddleError } from '../src/index.js';
import { TestServer, collect, mintToken, until, waitFor } from './helpers.js';

describe('chat', () => {
  let server: TestServer;
  before(async () => {
    server = await TestServer.start();
  });
  after(async () => {
    server.closeClients();
    await server.dispose();
  });

  test('two users join, see each other, and exchange messages once each', async () => {
    const alice = server.client(mintToken('alice', { name: 'Alice' }));
    const bob = server.client(mintToken('bob', { name: 'Bob' }));
    await Promise.all([alice.connect(), bob.connect()]);

    const joined = waitFor(alice, 'room_joined', (r) => r.room === 'chat:general');
    const aliceJoin = await alice.joinChat('general');
    assert.equal(aliceJoin.room, 'chat:general');
    assert.equal(aliceJoin.last_seq, 0);
    assert.equal((await joined).rejoin, false);

    // alice sees bob arrive
    const bobArrives = waitFor(alice, 'user:joined', (u) => u.user_id === 'bob');
    await bob.joinChat('general');
    assert.equal((await bobArrives).name, 'Bob');
    const room = alice.state.rooms['chat:general'];
    assert.equal(room?.status, 'joined');
    assert.deepEqual(room?.members.map((m) => m.user_id).sort(), ['alice', 'bob']);

    // alice sends; both receive it exactly once, after the ack
    const aliceSeen = collect(alice, 'chat:message');
    const bobSeen = collect(bob, 'chat:message');
    const sent = await alice.sendMessage('general', 'hello bob');
    assert.equal(sent.seq, 1);
    assert.equal(sent.user_id, 'alice');
    assert.ok(sent.client_msg_id);
    await until(bob, () => bobSeen.length === 1, 5_000, 'bob receives');
    await until(alice, () => aliceSeen.length === 1, 5_000, 'alice receives her own');
    assert.equal(bobSeen[0]?.message.content, 'hello bob');
    assert.equal(bobSeen[0]?.source, 'live');
    assert.equal(bob.state.rooms['chat:general']?.kind === 'chat' && bob.state.rooms['chat:general'].lastSeq, 1);

    // bob answers
    await bob.sendMessage('general', 'hi alice');
    await until(alice, () => aliceSeen.length === 2, 5_000, 'alice receives the answer');
    assert.deepEqual(aliceSeen.map((m) => m.message.seq), [1, 2]);

    // bob leaves: alice sees it
    const bobLeaves = waitFor(alice, 'user:left', (u) => u.user_id === 'bob');
    await bob.leaveChat('general');
    await bobLeaves;
    assert.equal(bob.state.rooms['chat:general'], undefined);
    assert.deepEqual(alice.state.rooms['chat:general']?.members.map((m) => m.user_id), ['alice']);
  });

  test('a late joiner gets the history as events, in order', async () => {
    const carol = server.client(mintToken('carol'));
    await carol.connect();
    await carol.joinChat('history-room');
    for (let i = 1; i <= 5; i++) await carol.sendMessage('history-room', `m${i}`);

    const dave = server.client(mintToken('dave'));
    await dave.connect();
    const seen = collect(dave, 'chat:message');
    const ack = await dave.joinChat('history-room');
    assert.equal(ack.last_seq, 5);
    await until(dave, () => seen.length === 5, 5_000, 'history announced');
    assert.deepEqual(seen.map((m) => m.message.content), ['m1', 'm2', 'm3', 'm4', 'm5']);
    assert.ok(seen.every((m) => m.source === 'history'));

    const page = await dave.history('history-room', { beforeSeq: 4, limit: 2 });
    assert.deepEqual(page.messages.map((m) => m.seq), [2, 3]);
    assert.equal(page.has_more, true);
  });

  test('the same client_msg_id is stored once', async () => {
    const erin = server.client(mintToken('erin'));
    await erin.connect();
    await erin.joinChat('idem');
    const first = await erin.sendMessage('idem', 'once', { clientMsgId: 'fixed-id-1' });
    const again = await erin.sendMessage('idem', 'once', { clientMsgId: 'fixed-id-1' });
    assert.equal(again.seq, first.seq);
    assert.equal(again.id, first.id);
    const page = await erin.history('idem');
    assert.equal(page.messages.length, 1);
  });

  test('protocol errors reject the request with their code', async () => {
    const frank = server.client(mintToken('frank'));
    await frank.connect();
    await assert.rejects(
      frank.sendMessage('never-joined', 'x'),
      (err: unknown) => err instanceof HuddleError && err.code === 'NOT_JOINED' && err.event === 'chat:message',
    );
    await assert.rejects(
      frank.history('no-such-chat'),
      (err: unknown) => err instanceof HuddleError && err.code === 'NOT_FOUND',
    );
    await assert.rejects(
      frank.request('chat:history', { chat_id: 'general', limit: 101 }),
      (err: unknown) => err instanceof HuddleError && err.code === 'INVALID_INPUT' && err.details.field === 'limit',
    );
    assert.equal(frank.state.status, 'connected');
  });
});
