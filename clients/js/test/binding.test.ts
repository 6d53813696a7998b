// The document binding (classic OT client) and awareness, against the fake
// socket: a small scripted server keeps the document as PROTOCOL.md says
// (`documents:op` transformed over the versions after its base, `op_id`
// idempotent, pushes before the sender's ack, `since_version` joins with
// `changes` / `recovered`, whole-content updates recorded as the operation
// replacing the content), and each test drives the hard cases by hand.

import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';

import { HuddleClient, HuddleError, applyOp, normalizeOp, replaceAllOp, transformOp } from '../src/index.js';
import type { DocumentBinding, DocumentChange, TextChange, TextOp } from '../src/index.js';
import type { IncomingFrame, OutgoingFrame } from '../src/protocol.js';
import { fakeServer } from './fake-socket.js';
import type { FakeServer, FakeSocket } from './fake-socket.js';
import { until } from './helpers.js';

const DOC = 'plan';
const ROOM = 'document:plan';
const FAST = { initialDelayMs: 5, maxDelayMs: 20, factor: 2, jitter: 0, maxAttempts: Infinity };

interface OpRequest {
  document_id: string;
  base_version: number;
  ops: TextOp;
  op_id?: string;
}

interface Held {
  frame: OutgoingFrame;
  socket: FakeSocket;
}

/** The document side of a server, as the contract describes it. */
class DocServer {
  content: string;
  version = 0;
  readonly history: DocumentChange[] = [];
  private readonly acks = new Map<string, { document_id: string; version: number; ops: TextOp }>();
  /** Operations received and not answered yet (see `hold`). */
  readonly held: Held[] = [];
  /** Keep `documents:op` requests unanswered until `release`. */
  hold = false;
  /** Versions a `since_version` join may replay; beyond that `recovered: false`. */
  maxRecovery = 1000;
  /** Oldest base version an operation may have (older: VERSION_CONFLICT). */
  oldestBase = 0;
  /** Refuse every operation with this error. */
  refuse: { code: string; message: string } | null = null;
  accepting = true;
  readonly fake: FakeServer;
  private readonly watchers: { event: string; resolve: (frame: OutgoingFrame) => void }[] = [];

  constructor(content: string, private readonly awarenessList: unknown[] = []) {
    this.content = content;
    this.fake = fakeServer({
      script: () => (this.accepting ? 'accept' : 'refuse'),
      respond: (frame, socket) => this.respond(frame, socket),
    });
  }

  /** Every frame of `event` the client sent. */
  sent(event: string): OutgoingFrame[] {
    return this.fake.sent.filter((f) => f.event === event);
  }

  /** The next frame of `event` the client sends. */
  next(event: string): Promise<OutgoingFrame> {
    return new Promise((resolve) => this.watchers.push({ event, resolve }));
  }

  get socket(): FakeSocket {
    const s = this.fake.sockets[this.fake.sockets.length - 1];
    assert.ok(s !== undefined);
    return s;
  }

  /** Another editor's operation on the current version: committed and pushed. */
  remoteOp(ops: TextOp, user = 'bob'): void {
    this.commit(ops, user);
    this.pushAll({ event: 'documents:op', room: ROOM, data: { document_id: DOC, version: this.version, ops, user_id: user } });
  }

  /** Another editor's whole-content `documents:update`. */
  remoteUpdate(content: string, user = 'bob'): void {
    this.commit(replaceAllOp(this.content, content), user);
    const document = { id: DOC, title: '', content: this.content, version: this.version, updated_at: 'now', updated_by: user };
    this.pushAll({ event: 'documents:updated', room: ROOM, data: { document, user_id: user } });
  }

  /** Answers the held operations in order; `lose` commits them without answering (the ack is lost). */
  release(options: { lose?: boolean } = {}): void {
    for (const { frame, socket } of this.held.splice(0)) {
      const answer = this.applyOp(frame.data as OpRequest);
      if (options.lose !== true) socket.push({ ...answer, ref: frame.ref as number });
    }
  }

  private respond(frame: OutgoingFrame, socket: FakeSocket): Omit<IncomingFrame, 'ref'> | undefined {
    const found = this.watchers.findIndex((w) => w.event === frame.event);
    if (found >= 0) this.watchers.splice(found, 1)[0]?.resolve(frame);
    switch (frame.event) {
      case 'documents:join':
        return { event: 'ack', data: this.joinAck(frame.data as { since_version?: number }) };
      case 'documents:op': {
        const data = frame.data as OpRequest;
        if (this.refuse !== null) return { event: 'error', data: this.refuse };
        const done = data.op_id === undefined ? undefined : this.acks.get(data.op_id);
        if (done !== undefined) return { event: 'ack', data: done };
        if (this.hold) {
          this.held.push({ frame, socket });
          return undefined;
        }
        return this.applyOp(data);
      }
      case 'documents:history': {
        const { after_version = 0, limit = 100 } = frame.data as { after_version?: number; limit?: number };
        const changes = this.history.filter((c) => c.version > after_version).slice(0, limit);
        return { event: 'ack', data: { changes, has_more: this.history.filter((c) => c.version > after_version).length > limit } };
      }
      default:
        return { event: 'ack', data: frame.event === 'ping' ? { server_time: 'now' } : {} };
    }
  }

  private joinAck(data: { since_version?: number }): Record<string, unknown> {
    const document = { id: DOC, title: '', content: this.content, version: this.version, updated_at: 'now', updated_by: 'alice' };
    const ack: Record<string, unknown> = { room: ROOM, role: 'editor', document, members: [], awareness: this.awarenessList };
    if (data.since_version !== undefined) {
      const since = data.since_version;
      const recovered = since <= this.version && this.version - since <= this.maxRecovery;
      ack.recovered = recovered;
      if (recovered) ack.changes = this.history.filter((c) => c.version > since);
    }
    return ack;
  }

  private applyOp(data: OpRequest): Omit<IncomingFrame, 'ref'> {
    if (data.base_version > this.version || data.base_version < this.oldestBase) {
      return {
        event: 'error',
        data: { code: 'VERSION_CONFLICT', message: `document ${DOC} is at version ${this.version}`, details: { current_version: this.version } },
      };
    }
    let ops = normalizeOp(data.ops);
    for (const c of this.history) if (c.version > data.base_version) ops = transformOp(ops, c.ops, 'right');
    this.commit(ops, 'u');
    const ack = { document_id: DOC, version: this.version, ops };
    if (data.op_id !== undefined) this.acks.set(data.op_id, ack);
    return { event: 'ack', data: ack };
  }

  private commit(ops: TextOp, user: string): void {
    this.content = applyOp(this.content, ops);
    this.version += 1;
    this.history.push({ version: this.version, ops, user_id: user, created_at: 'now' });
  }

  private pushAll(frame: IncomingFrame): void {
    for (const s of this.fake.sockets) if (s.readyState === 1) s.push(frame);
  }
}

let clients: HuddleClient[] = [];
afterEach(() => {
  for (const c of clients) c.close();
  clients = [];
});

/** A connected client of the fake server (closed after the test). */
async function connected(server: DocServer): Promise<HuddleClient> {
  const client = new HuddleClient({ url: 'ws://fake/ws', token: 't', WebSocket: server.fake.WebSocket, reconnect: FAST, requestTimeoutMs: 2_000 });
  clients.push(client);
  await client.connect();
  return client;
}

async function open(server: DocServer): Promise<{ client: HuddleClient; doc: DocumentBinding; changes: TextChange[] }> {
  const client = await connected(server);
  const doc = await client.openDocument(DOC);
  const changes: TextChange[] = [];
  doc.on('change', (c) => changes.push(c));
  return { client, doc, changes };
}

/** Waits until the binding is in step with the server and has nothing pending. */
async function converged(client: HuddleClient, doc: DocumentBinding, server: DocServer): Promise<void> {
  await until(client, () => !doc.pending && doc.version === server.version && doc.status === 'live', 2_000, 'in step with the server');
  assert.equal(doc.text, server.content);
}

function opFrames(server: DocServer): OpRequest[] {
  return server.sent('documents:op').map((f) => f.data as OpRequest);
}

describe('document binding', () => {
  test('a local edit is sent with base_version and op_id, and acknowledged', async () => {
    const server = new DocServer('hello');
    const { client, doc } = await open(server);
    assert.equal(doc.text, 'hello');
    assert.equal(doc.version, 0);
    const synced = new Promise((resolve) => doc.once('synced', resolve));
    doc.insert(5, ' world');
    assert.equal(doc.text, 'hello world');
    assert.equal(doc.pending, true);
    assert.deepEqual(await synced, { version: 1 });
    const [sent] = opFrames(server);
    assert.equal(sent?.base_version, 0);
    assert.deepEqual(sent?.ops, [5, ' world']);
    assert.ok(typeof sent?.op_id === 'string' && sent.op_id.length <= 64);
    await converged(client, doc, server);
    // The room's state follows the server's text.
    const room = client.state.rooms[ROOM];
    assert.ok(room?.kind === 'document' && room.version === 1 && room.document?.content === 'hello world');
  });

  test('edits made while an operation is in flight wait in one buffer', async () => {
    const server = new DocServer('abc');
    const { client, doc } = await open(server);
    server.hold = true;
    doc.insert(3, 'd');
    doc.insert(4, 'e');
    doc.delete(0, 1);
    doc.setText('😀' + doc.text);
    assert.equal(doc.text, '😀bcde');
    assert.equal(opFrames(server).length, 1, 'one operation in flight');
    server.hold = false;
    const second = server.next('documents:op');
    server.release();
    const buffered = (await second).data as OpRequest;
    assert.equal(buffered.base_version, 1);
    assert.deepEqual(buffered.ops, ['😀', { d: 1 }, 3, 'e']);
    await converged(client, doc, server);
    assert.equal(server.content, '😀bcde');
  });

  test("another editor's operation is transformed over the pending edits (committed first wins the tie)", async () => {
    const server = new DocServer('hello');
    const { client, doc, changes } = await open(server);
    server.hold = true;
    doc.insert(5, ' world'); // in flight
    doc.insert(0, '>'); // buffered
    server.remoteOp([5, '!']); // bob, at the same place, committed first
    await until(client, () => doc.version === 1, 2_000, 'bob integrated');
    assert.equal(doc.text, '>hello! world');
    assert.deepEqual(changes.map((c) => [c.source, c.userId, c.ops]), [['remote', 'bob', [6, '!']]]);
    server.hold = false;
    server.release();
    await converged(client, doc, server);
    assert.equal(server.content, '>hello! world');
    // Our in-flight operation was rebased by the server exactly as we did.
    assert.deepEqual(server.history[1]?.ops, [6, ' world']);
  });

  test('a whole-content update arriving with pending edits', async () => {
    const server = new DocServer('draft');
    const { client, doc, changes } = await open(server);
    server.hold = true;
    doc.insert(5, ' one'); // in flight
    doc.insert(0, '# '); // buffered
    server.remoteUpdate('final text');
    await until(client, () => doc.version === 1, 2_000, 'update integrated');
    // The server records the update as "replace everything": pending
    // inserts survive after the new content, as the server will place them.
    assert.equal(doc.text, 'final text#  one');
    assert.equal(changes[0]?.source, 'remote');
    assert.equal(applyOp('# draft one', changes[0]?.ops ?? []), doc.text);
    server.hold = false;
    server.release();
    await converged(client, doc, server);
  });

  test('reconnect: an operation committed before the drop is resent with its op_id and not applied twice', async () => {
    const server = new DocServer('hi');
    const { client, doc } = await open(server);
    server.hold = true;
    doc.insert(2, ' there');
    await until(client, () => server.held.length === 1, 2_000, 'held');
    server.remoteOp(['>> ']); // bob edits too
    server.release({ lose: true }); // committed, ack lost with the connection
    server.hold = false;
    const rejoin = server.next('documents:join');
    server.socket.serverClose(1006);
    const join = (await rejoin).data as { since_version?: number };
    assert.equal(join.since_version, 1, "bob's version, the last integrated; ours (2) is among the changes");
    await converged(client, doc, server);
    assert.equal(doc.text, '>> hi there');
    const sends = opFrames(server);
    assert.equal(sends.length, 2);
    assert.equal(sends[0]?.op_id, sends[1]?.op_id);
    assert.equal(server.history.length, 2, 'stored once');
    // The rejoin went before the resend.
    const events = server.fake.sent.map((f) => f.event);
    assert.ok(events.lastIndexOf('documents:join') < events.lastIndexOf('documents:op'));
  });

  test('reconnect: an operation lost before the server saw it is committed once after the rejoin', async () => {
    const server = new DocServer('x');
    const { client, doc } = await open(server);
    server.hold = true;
    doc.insert(1, 'y');
    await until(client, () => server.held.length === 1, 2_000, 'held');
    server.held.splice(0); // never processed
    server.hold = false;
    server.socket.serverClose(1006);
    doc.insert(2, 'z'); // typed while offline
    await converged(client, doc, server);
    assert.equal(server.content, 'xyz');
    assert.equal(server.history.length, 2);
  });

  test('rejoin with recovered: false rebases the pending edits onto the fresh content', async () => {
    const server = new DocServer('one two three');
    const { client, doc, changes } = await open(server);
    server.accepting = false;
    server.socket.serverClose(1006);
    await until(client, () => doc.status === 'recovering', 2_000, 'offline');
    doc.insert(3, ' and a half'); // offline edit
    server.maxRecovery = 1;
    server.remoteOp([{ d: 3 }]); // " two three"
    server.remoteOp(['zero']); // "zero two three"
    server.accepting = true;
    client.reconnectNow();
    await converged(client, doc, server);
    // The changes in between are unknown; their difference ("one" became
    // "zero") stands in for them and the offline insert follows it.
    assert.equal(doc.text, 'zero and a half two three');
    const resync = changes.filter((c) => c.source === 'resync');
    assert.equal(resync.length, 1);
    assert.equal(applyOp('one and a half two three', resync[0]?.ops ?? []), doc.text);
    const join = server.sent('documents:join').at(-1)?.data as { since_version?: number };
    assert.equal(join.since_version, 0);
  });

  test('recovered: false with an operation in flight: its fate is asked first, the fresh content includes it once', async () => {
    const server = new DocServer('abc');
    const { client, doc } = await open(server);
    server.hold = true;
    doc.insert(3, 'D');
    await until(client, () => server.held.length === 1, 2_000, 'held');
    server.release({ lose: true });
    server.hold = false;
    server.accepting = false;
    server.socket.serverClose(1006);
    await until(client, () => doc.status === 'recovering', 2_000, 'offline');
    server.maxRecovery = 0;
    server.remoteOp(['_']); // while we are away: no push
    server.accepting = true;
    client.reconnectNow();
    await converged(client, doc, server);
    assert.equal(doc.text, '_abcD');
    assert.equal(server.history.length, 2);
    assert.equal((server.sent('documents:join').at(-1)?.data as { since_version?: number }).since_version, 0);
  });

  test('VERSION_CONFLICT on an operation: reload, rebase, send again with a new op_id', async () => {
    const server = new DocServer('base');
    const { client, doc } = await open(server);
    server.hold = true;
    doc.insert(4, '+mine');
    await until(client, () => server.held.length === 1, 2_000, 'held');
    server.remoteOp(['theirs ']);
    server.oldestBase = 1; // the server can no longer rebase from version 0
    server.hold = false;
    const reload = server.next('documents:join');
    server.release();
    const join = (await reload).data as { since_version?: number };
    assert.equal(join.since_version, undefined, 'a plain join for the current content');
    await converged(client, doc, server);
    assert.equal(doc.text, 'theirs base+mine');
    const sends = opFrames(server);
    assert.notEqual(sends[0]?.op_id, sends.at(-1)?.op_id);
    assert.equal(sends.at(-1)?.base_version, 1);
  });

  test('an operation refused outright is undone and reported with what was dropped', async () => {
    const server = new DocServer('read only');
    const { client, doc, changes } = await open(server);
    server.refuse = { code: 'PERMISSION_DENIED', message: 'viewers may not edit' };
    const refused = new Promise<HuddleError>((resolve) => doc.once('error', resolve));
    doc.insert(0, 'x');
    const error = await refused;
    assert.equal(error.code, 'PERMISSION_DENIED');
    assert.equal(error.room, ROOM);
    assert.deepEqual(error.details.dropped, ['x']);
    assert.equal(doc.text, 'read only');
    assert.deepEqual(changes.map((c) => [c.source, c.ops]), [['rejected', [{ d: 1 }]]]);
    assert.equal(doc.pending, false);
    await converged(client, doc, server);
  });

  test('a missing version is fetched with documents:history', async () => {
    const server = new DocServer('a');
    const { client, doc } = await open(server);
    // Version 1 happens without a push (e.g. our own documents:update).
    server.history.push({ version: 1, ops: [1, 'b'], user_id: 'u', created_at: 'now' });
    server.content = 'ab';
    server.version = 1;
    const history = server.next('documents:history');
    server.remoteOp([2, 'c']);
    assert.deepEqual((await history).data, { document_id: DOC, after_version: 0, limit: 1 });
    await converged(client, doc, server);
    assert.equal(doc.text, 'abc');
  });

  test('binding a document the client has joined already starts from a fresh join', async () => {
    const server = new DocServer('shared');
    const client = await connected(server);
    await client.joinDocument(DOC);
    server.remoteOp([6, '!']); // not applied to the room's state by a plain join
    const doc = await client.openDocument(DOC);
    assert.equal(server.sent('documents:join').length, 2);
    assert.equal(doc.text, 'shared!');
    assert.equal(await client.openDocument(DOC), doc, 'one binding per document');
    doc.insert(0, '> ');
    await converged(client, doc, server);
  });

  test('a refused join rejects openDocument', async () => {
    const server = new DocServer('secret');
    const respond = server.fake.respond;
    server.fake.respond = (frame, socket) =>
      frame.event === 'documents:join' ? { event: 'error', data: { code: 'PERMISSION_DENIED', message: 'no access' } } : respond(frame, socket);
    const client = await connected(server);
    await assert.rejects(client.openDocument(DOC), (e: unknown) => e instanceof HuddleError && e.code === 'PERMISSION_DENIED');
    server.fake.respond = respond;
    const doc = await client.openDocument(DOC);
    assert.equal(doc.text, 'secret');
  });

  test('positions are code points: emoji and other astral characters count once', async () => {
    const server = new DocServer('😀😀');
    const { client, doc } = await open(server);
    doc.insert(1, '𝄞');
    assert.equal(doc.text, '😀𝄞😀');
    server.remoteOp([2, { d: 1 }]);
    await converged(client, doc, server);
    assert.equal(doc.text, '😀𝄞');
    assert.throws(() => doc.insert(3, 'x'), (e: unknown) => e instanceof HuddleError && e.code === 'INVALID_INPUT');
    assert.throws(() => doc.insert(0, '\ud800'), (e: unknown) => e instanceof HuddleError && e.code === 'INVALID_INPUT');
  });

  test('setText with the caret places an ambiguous edit where it was typed', async () => {
    const server = new DocServer('aa');
    const { client, doc } = await open(server);
    assert.deepEqual(doc.setText('aaa', 2), [1, 'a']);
    await converged(client, doc, server);
    assert.deepEqual(server.history[0]?.ops, [1, 'a']);
  });

  test('cursors: shared on the server text, placed over later versions and pending edits', async () => {
    const server = new DocServer('hello');
    const { client, doc } = await open(server);
    server.hold = true;
    doc.insert(5, ' world'); // in flight
    // Our caret after our pending insert is shared as where the insert was made.
    assert.deepEqual(doc.sharedPosition(11), { version: 0, position: 5 });
    assert.deepEqual(doc.sharedPosition(2), { version: 0, position: 2 });
    // Bob shared his caret at 5 on version 0, then typed there.
    server.remoteOp([5, '!'], 'bob');
    await until(client, () => doc.version === 1, 2_000, 'bob integrated');
    assert.equal(doc.text, 'hello! world');
    assert.equal(doc.localPosition({ version: 0, position: 5 }, 'bob'), 6, "bob's insert moves bob's cursor");
    assert.equal(doc.localPosition({ version: 0, position: 5 }, 'carol'), 5, "and leaves carol's before it");
    assert.equal(doc.localPosition({ version: 0, position: 2 }, 'bob'), 2);
    assert.equal(doc.localPosition({ version: 1, position: 6 }, 'carol'), 6, 'before our pending insert');
    assert.equal(doc.localPosition({ version: 2, position: 0 }, 'carol'), null, 'a version not integrated yet');
    assert.equal(doc.localPosition({ version: 1, position: 99 }, 'carol'), 6, 'past the end: the end');
    server.hold = false;
    server.release();
    await converged(client, doc, server);
    // Our operation is version 2 now; carol's cursor at the end of version 1 stays before it.
    assert.equal(doc.localPosition({ version: 1, position: 6 }, 'carol'), 6);
    assert.deepEqual(doc.sharedPosition(12), { version: 2, position: 12 });
  });

  test('closing leaves the room and reports unacknowledged edits', async () => {
    const server = new DocServer('z');
    const { client, doc } = await open(server);
    server.hold = true;
    doc.insert(1, '!');
    const closed = new Promise<{ dropped: TextOp }>((resolve) => doc.once('closed', resolve));
    await doc.close();
    assert.deepEqual((await closed).dropped, [1, '!']);
    assert.equal(doc.status, 'closed');
    assert.equal(server.sent('documents:leave').length, 1);
    assert.throws(() => doc.insert(0, 'x'), (e: unknown) => e instanceof HuddleError && e.code === 'NOT_JOINED');
    // Opening again makes a new binding.
    const again = await client.openDocument(DOC);
    assert.notEqual(again, doc);
    assert.equal(again.text, 'z');
  });
});

describe('awareness', () => {
  test('states from the join and pushes; ours is set, cleared, and set again after a reconnect', async () => {
    const server = new DocServer('text', [{ session_id: 's9', user_id: 'bob', state: { cursor: 1 } }]);
    const { client, doc } = await open(server);
    assert.deepEqual(doc.awareness, [{ session_id: 's9', user_id: 'bob', state: { cursor: 1 } }]);
    const seen: number[] = [];
    doc.on('awareness', (list) => seen.push(list.length));
    server.socket.push({ event: 'awareness', room: ROOM, data: { session_id: 's8', user_id: 'carol', state: { cursor: 3 } } });
    server.socket.push({ event: 'awareness', room: ROOM, data: { session_id: 's9', user_id: 'bob', state: null } });
    await until(client, () => seen.length === 2, 2_000, 'two pushes');
    assert.deepEqual(client.awareness(ROOM), [{ session_id: 's8', user_id: 'carol', state: { cursor: 3 } }]);
    assert.deepEqual(seen, [2, 1]);

    await doc.setAwareness({ cursor: 2 });
    await client.setAwareness(ROOM, null);
    await doc.setAwareness({ cursor: 4 });
    assert.deepEqual(server.sent('awareness:set').map((f) => f.data), [
      { room: ROOM, state: { cursor: 2 } },
      { room: ROOM, state: null },
      { room: ROOM, state: { cursor: 4 } },
    ]);

    // The server forgets us with the connection: the state is set again.
    const again = server.next('awareness:set');
    server.socket.serverClose(1006);
    assert.deepEqual((await again).data, { room: ROOM, state: { cursor: 4 } });
    // The rejoin's list replaced the old one.
    assert.deepEqual(client.awareness(ROOM), [{ session_id: 's9', user_id: 'bob', state: { cursor: 1 } }]);
    await assert.rejects(client.setAwareness('chat:nowhere', {}), (e: unknown) => e instanceof HuddleError && e.code === 'NOT_JOINED');
  });

  test('the latest state wins: one request in flight per room', async () => {
    const server = new DocServer('t');
    const { doc } = await open(server);
    const sets = [doc.setAwareness({ n: 1 }), doc.setAwareness({ n: 2 }), doc.setAwareness({ n: 3 })];
    await Promise.all(sets);
    assert.deepEqual(server.sent('awareness:set').map((f) => (f.data as { state: { n: number } }).state.n), [1, 3]);
  });
});
