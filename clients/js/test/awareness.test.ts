// Awareness against the real server, in both room kinds: a state set by one
// connection reaches the others (coalesced by the server), is listed in a
// newcomer's join ack, is cleared when its connection leaves or drops, and
// is set again by the client after it reconnects.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import type { HuddleClient, RoomName } from '../src/index.js';
import { TestServer, collect, mintToken, until } from './helpers.js';

function states(client: HuddleClient, room: RoomName): unknown[] {
  return client.awareness(room).map((e) => ({ user_id: e.user_id, state: e.state }));
}

describe('awareness', () => {
  let server: TestServer;
  before(async () => {
    server = await TestServer.start();
  });
  after(async () => {
    server.closeClients();
    await server.dispose();
  });

  for (const kind of ['chat', 'document'] as const) {
    test(`${kind}: set, coalesced, listed at join, cleared on leave and drop, set again after a reconnect`, async () => {
      const id = `aw-${kind}`;
      const room: RoomName = `${kind}:${id}`;
      const alice = server.client(mintToken('alice'));
      const bob = server.client(mintToken('bob'));
      await Promise.all([alice.connect(), bob.connect()]);
      const join = async (c: HuddleClient): Promise<void> => {
        if (kind === 'chat') await c.joinChat(id);
        else await c.joinDocument(id);
      };
      if (kind === 'document') {
        await alice.createDocument(id, { content: 'x' });
        await alice.shareDocument(id, 'bob', 'editor');
        await alice.shareDocument(id, 'carol', 'viewer');
      }
      await join(alice);
      await join(bob);

      // A burst: each set resolves once the server has it (or a newer one);
      // bob ends with the last state, after a few pushes at most.
      const pushes = collect(bob, 'awareness');
      await Promise.all(Array.from({ length: 20 }, (_, n) => alice.setAwareness(room, { cursor: n })));
      await until(bob, () => JSON.stringify(states(bob, room)) === JSON.stringify([{ user_id: 'alice', state: { cursor: 19 } }]), 5_000, 'bob sees the last state');
      assert.ok(pushes.length <= 10, `${pushes.length} pushes for 20 sets`);
      assert.deepEqual(alice.awareness(room), [], 'nobody else set a state');

      // A newcomer finds it in its join ack.
      const carol = server.client(mintToken('carol'));
      await carol.connect();
      await join(carol);
      assert.deepEqual(states(carol, room), [{ user_id: 'alice', state: { cursor: 19 } }]);

      // A dropped connection clears it; the client sets it again once back.
      const aliceSession = alice.state.session?.sessionId;
      alice.drop();
      await until(bob, () => bob.awareness(room).length === 0, 5_000, 'cleared on drop');
      await until(
        bob,
        () => bob.awareness(room).some((e) => e.user_id === 'alice' && e.session_id !== aliceSession),
        10_000,
        'set again after the reconnect',
      );
      assert.deepEqual(states(bob, room), [{ user_id: 'alice', state: { cursor: 19 } }]);

      // Leaving clears it.
      if (kind === 'chat') await alice.leaveChat(id);
      else await alice.leaveDocument(id);
      await until(carol, () => carol.awareness(room).length === 0, 5_000, 'cleared on leave');
      for (const c of [alice, bob, carol]) c.close();
    });
  }
});
