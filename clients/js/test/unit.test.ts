// Unit tests of the client's decisions, against a scripted fake socket:
// backoff, which close codes reconnect at once, the 4001 rule, request
// settlement, the per-chat delivery line (dedupe and gap filling), and the
// member-list rules of presence.ts.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { DEFAULT_RECONNECT, HuddleClient, HuddleError, TypedEmitter, applyDiff, backoffDelay, mergePage, withMember } from '../src/index.js';
import type { Member, Message } from '../src/index.js';
import { fakeServer } from './fake-socket.js';
import type { FakeServer } from './fake-socket.js';
import { collect, until, waitFor } from './helpers.js';

const FAST = { initialDelayMs: 10, maxDelayMs: 40, factor: 2, jitter: 0 };

function clientFor(server: FakeServer, options: Partial<ConstructorParameters<typeof HuddleClient>[0]> = {}): HuddleClient {
  return new HuddleClient({
    url: 'ws://fake/ws',
    token: 'token',
    WebSocket: server.WebSocket,
    reconnect: { ...FAST, maxAttempts: 5 },
    requestTimeoutMs: 200,
    ...options,
  });
}

function message(seq: number): Message {
  return { id: `m${seq}`, chat_id: 'c', seq, user_id: 'u', content: `#${seq}`, created_at: '2026-01-01T00:00:00.000Z' };
}

describe('backoff', () => {
  test('default delays grow from 1 s to 5 s', () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(DEFAULT_RECONNECT, n)), [1000, 2000, 4000, 5000, 5000, 5000]);
    assert.equal(DEFAULT_RECONNECT.maxAttempts, 5);
  });

  test('1001 and 4008 reconnect at once, then the delays grow', async () => {
    for (const code of [1001, 4008]) {
      const server = fakeServer({ script: (n) => (n === 0 || n >= 3 ? 'accept' : 'refuse') });
      const client = clientFor(server);
      await client.connect();
      const delays: (number | null)[] = [];
      client.on('reconnecting', (r) => delays.push(r.delayMs));
      const back = waitFor(client, 'connect');
      server.sockets[0]?.serverClose(code, 'bye');
      await back;
      assert.deepEqual(delays, [0, 20, 40], `close ${code}`);
      client.close();
    }
  });

  test('any other drop waits the initial delay first', async () => {
    const server = fakeServer();
    const client = clientFor(server);
    await client.connect();
    const retry = waitFor(client, 'reconnecting');
    server.sockets[0]?.serverClose(1011);
    assert.equal((await retry).delayMs, 10);
    await waitFor(client, 'connect');
    client.close();
  });

  test('a first connect that never succeeds rejects after maxAttempts', async () => {
    const server = fakeServer({ script: () => 'refuse' });
    const client = clientFor(server, { reconnect: { ...FAST, maxAttempts: 2 } });
    const attempts = collect(client, 'reconnecting');
    await assert.rejects(client.connect(), (e: unknown) => e instanceof HuddleError && e.code === 'MAX_RECONNECT_EXCEEDED');
    assert.equal(server.sockets.length, 3, 'the first try and two attempts');
    assert.deepEqual(attempts.map((a) => a.attempt), [1, 2]);
    assert.equal(client.state.status, 'closed');
  });

  test('maxAttempts: Infinity keeps trying past five', async () => {
    const server = fakeServer({ script: (n) => (n === 0 || n === 9 ? 'accept' : 'refuse') });
    const client = clientFor(server, { reconnect: { ...FAST, maxDelayMs: 10, maxAttempts: Infinity } });
    await client.connect();
    const attempts = collect(client, 'reconnecting');
    const back = waitFor(client, 'connect');
    server.sockets[0]?.serverClose(1006);
    await back;
    assert.equal(attempts.length, 9);
    assert.equal(attempts[8]?.maxAttempts, null);
    client.close();
  });
});

describe('the 4001 rule', () => {
  test('a fixed token is not retried', async () => {
    const server = fakeServer({ script: () => ({ refuseAuth: 'UNAUTHENTICATED' }) });
    const client = clientFor(server);
    await assert.rejects(client.connect(), (e: unknown) => e instanceof HuddleError && e.code === 'UNAUTHENTICATED');
    assert.equal(server.sockets.length, 1);
  });

  test('a provider is asked once more, then the client gives up', async () => {
    const server = fakeServer({ script: () => ({ refuseAuth: 'TOKEN_EXPIRED' }) });
    let calls = 0;
    const client = clientFor(server, {
      token: () => {
        calls += 1;
        return `t${calls}`;
      },
    });
    await assert.rejects(client.connect(), (e: unknown) => e instanceof HuddleError && e.code === 'TOKEN_EXPIRED');
    assert.equal(calls, 2);
    assert.deepEqual(server.sent.filter((f) => f.event === 'auth').map((f) => (f.data as { token: string }).token), ['t1', 't2']);
  });

  test('the allowance comes back after each successful connect', async () => {
    const server = fakeServer();
    let calls = 0;
    const client = clientFor(server, { token: () => `t${++calls}` });
    await client.connect();
    for (const n of [0, 1]) {
      const back = waitFor(client, 'connect');
      server.sockets[n]?.serverClose(4001);
      await back;
    }
    assert.equal(calls, 3);
    assert.equal(server.sockets.length, 3);
    client.close();
  });
});

describe('requests', () => {
  test('each promise settles once: ack, error, timeout, connection loss', async () => {
    const server = fakeServer({
      respond: (frame) => {
        if (frame.event === 'documents:update') return { event: 'error', data: { code: 'VERSION_CONFLICT', message: 'at 3', details: { current_version: 3 } } };
        if (frame.event === 'documents:create') return undefined; // never answered
        return { event: 'ack', data: { server_time: 'now' } };
      },
    });
    const client = clientFor(server);
    await client.connect();
    assert.equal(await client.ping(), 'now');
    await assert.rejects(client.updateDocument('d', 'x', 9), (e: unknown) => e instanceof HuddleError && e.code === 'VERSION_CONFLICT' && e.details.current_version === 3);
    await assert.rejects(client.createDocument('d'), (e: unknown) => e instanceof HuddleError && e.code === 'TIMEOUT');
    const lost = client.createDocument('e');
    server.sockets[0]?.serverClose(1006);
    await assert.rejects(lost, (e: unknown) => e instanceof HuddleError && e.code === 'CONNECTION_LOST');
    client.close();
    await assert.rejects(client.ping(), (e: unknown) => e instanceof HuddleError);
  });

  test('a frame the server would refuse for its JSON values is refused here, and not sent', async () => {
    const server = fakeServer({ respond: () => ({ event: 'ack', data: { chat: { id: 'c', private: true, created_by: 'u', created_at: 'now' } } }) });
    const client = clientFor(server);
    await client.connect();
    // The envelope (4), chat_id, private and members (3), and the members:
    // 99,993 names make exactly 100,000 values.
    const names = (n: number) => Array.from({ length: n }, (_, i) => `u${i}`);
    await assert.rejects(
      client.createChat('c', { private: true, members: names(99_994) }),
      (e: unknown) => e instanceof HuddleError && e.code === 'PAYLOAD_TOO_LARGE' && e.message.includes('100000 JSON values'),
    );
    assert.ok(!server.sent.some((f) => f.event === 'chat:create'), 'not sent');
    await client.createChat('c', { private: true, members: names(99_993) });
    assert.equal(server.sent.filter((f) => f.event === 'chat:create').length, 1);
    client.close();
  });

  test('a chat send lost with the connection is sent again with the same client_msg_id', async () => {
    let answered = 0;
    const server = fakeServer({
      respond: (frame, socket) => {
        if (frame.event === 'chat:join') return { event: 'ack', data: { room: 'chat:c', members: [], last_seq: 0, messages: [], recovered: false } };
        if (frame.event === 'chat:message') {
          if (socket === server.sockets[0]) return undefined; // the first connection dies before answering
          answered += 1;
          return { event: 'ack', data: { message: { ...message(1), client_msg_id: (frame.data as { client_msg_id: string }).client_msg_id } } };
        }
        return { event: 'ack', data: {} };
      },
    });
    const client = clientFor(server);
    await client.connect();
    await client.joinChat('c');
    const sending = client.sendMessage('c', 'hi');
    await until(client, () => server.sent.some((f) => f.event === 'chat:message'), 1_000, 'sent');
    server.sockets[0]?.serverClose(1006);
    const stored = await sending;
    assert.equal(answered, 1);
    const sends = server.sent.filter((f) => f.event === 'chat:message');
    assert.equal(sends.length, 2);
    const ids = sends.map((f) => (f.data as { client_msg_id: string }).client_msg_id);
    assert.equal(ids[0], ids[1]);
    assert.equal(stored.client_msg_id, ids[0]);
    // the rejoin went before the resend
    const events = server.sent.map((f) => f.event);
    assert.ok(events.lastIndexOf('chat:join') < events.lastIndexOf('chat:message'));
    client.close();
  });
});

describe('chat delivery', () => {
  test('duplicates are dropped and gaps are filled from history, in order', async () => {
    const server = fakeServer({
      respond: (frame) => {
        if (frame.event === 'chat:join') return { event: 'ack', data: { room: 'chat:c', members: [], last_seq: 1, messages: [message(1)], recovered: false } };
        if (frame.event === 'chat:history') {
          const { before_seq, limit } = frame.data as { before_seq: number; limit: number };
          const msgs = [];
          for (let s = Math.max(1, before_seq - limit); s < before_seq; s++) msgs.push(message(s));
          return { event: 'ack', data: { messages: msgs, has_more: false } };
        }
        return { event: 'ack', data: {} };
      },
    });
    const client = clientFor(server);
    await client.connect();
    const seen = collect(client, 'chat:message');
    await client.joinChat('c');
    const socket = server.sockets[0];
    for (const seq of [2, 2, 1, 5, 4, 6]) socket?.push({ event: 'chat:message', room: 'chat:c', data: { message: message(seq) } });
    await until(client, () => seen.length >= 6, 2_000, 'six messages');
    assert.deepEqual(seen.map((m) => m.message.seq), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(seen.map((m) => m.source), ['history', 'live', 'recovery', 'recovery', 'live', 'live']);
    const history = server.sent.filter((f) => f.event === 'chat:history');
    assert.deepEqual(history.map((f) => f.data), [{ chat_id: 'c', before_seq: 5, limit: 2 }]);
    client.close();
  });
});

describe('events', () => {
  test('typed listeners, once, and one ordered stream', () => {
    const emitter = new TypedEmitter<{ a: number; b: string }>();
    const stream: string[] = [];
    emitter.onAny((e) => stream.push(`${String(e.type)}:${String(e.payload)}`));
    const once: number[] = [];
    emitter.once('a', (n) => once.push(n));
    emitter.emit('a', 1);
    emitter.emit('b', 'x');
    emitter.emit('a', 2);
    assert.deepEqual(once, [1]);
    assert.deepEqual(stream, ['a:1', 'b:x', 'a:2']);
  });
});

describe('member lists', () => {
  const m = (id: string): Member => ({ user_id: id, connections: 1 });
  const ids = (list: readonly Member[]): string[] => list.map((x) => x.user_id);

  test('joins keep user id order and happen once; diffs are set operations', () => {
    assert.deepEqual(ids(withMember([m('a'), m('c')], 'b', 'B')), ['a', 'b', 'c']);
    assert.deepEqual(ids(withMember([m('a')], 'a', undefined)), ['a']);
    const next = applyDiff([m('a'), m('b'), m('d')], { joined: [{ user_id: 'c', name: 'C' }, { user_id: 'a' }], left: ['b', 'x'] });
    assert.deepEqual(ids(next), ['a', 'c', 'd']);
    assert.equal(next[1]?.name, 'C');
  });

  test('a page is the truth for its range of user ids', () => {
    const known = [m('a'), m('c'), m('e'), m('g'), m('k')];
    // After "a", up to its last user "f": c is gone, d and f are there; g and k are outside.
    const page = { members: [m('d'), m('e'), m('f')], has_more: true, member_count: 9 };
    assert.deepEqual(ids(mergePage(known, page, 'a')), ['a', 'd', 'e', 'f', 'g', 'k']);
    // The last page runs to the end of the room.
    const last = { members: [m('h')], has_more: false, member_count: 4 };
    assert.deepEqual(ids(mergePage(known, last, 'f')), ['a', 'c', 'e', 'h']);
    assert.deepEqual(ids(mergePage(known, { members: [], has_more: false, member_count: 0 }, undefined)), []);
  });
});
