// Documents: create, join, update, and the version conflict.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { HuddleError } from '../src/index.js';
import { TestServer, mintToken, waitFor } from './helpers.js';

describe('documents', () => {
  let server: TestServer;
  before(async () => {
    server = await TestServer.start();
  });
  after(async () => {
    server.closeClients();
    await server.dispose();
  });

  test('edits propagate and a stale edit is a VERSION_CONFLICT', async () => {
    const alice = server.client(mintToken('alice'));
    const bob = server.client(mintToken('bob'));
    await Promise.all([alice.connect(), bob.connect()]);

    const doc = await alice.createDocument('plan', { title: 'Plan', content: 'v0' });
    assert.equal(doc.version, 0);
    await alice.shareDocument('plan', 'bob', 'editor');

    const aliceJoin = await alice.joinDocument('plan');
    assert.equal(aliceJoin.role, 'owner');
    const bobJoin = await bob.joinDocument('plan');
    assert.equal(bobJoin.role, 'editor');
    assert.equal(bob.state.rooms['document:plan']?.kind === 'document' && bob.state.rooms['document:plan'].version, 0);

    // alice edits; bob is told
    const bobSees = waitFor(bob, 'documents:updated', (u) => u.document.version === 1);
    assert.equal(await alice.updateDocument('plan', 'alice was here', 1), 1);
    const update = await bobSees;
    assert.equal(update.document.content, 'alice was here');
    assert.equal(update.user_id, 'alice');
    const bobRoom = bob.state.rooms['document:plan'];
    assert.equal(bobRoom?.kind, 'document');
    if (bobRoom?.kind === 'document') {
      assert.equal(bobRoom.version, 1);
      assert.equal(bobRoom.document?.content, 'alice was here');
    }
    const aliceRoom = alice.state.rooms['document:plan'];
    assert.ok(aliceRoom?.kind === 'document' && aliceRoom.version === 1 && aliceRoom.document?.content === 'alice was here');

    // both edit version 1 at once: exactly one wins
    const results = await Promise.allSettled([
      alice.updateDocument('plan', 'from alice', 2),
      bob.updateDocument('plan', 'from bob', 2),
    ]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    assert.equal(won.length, 1);
    assert.equal(lost.length, 1);
    const error = lost[0]?.reason as unknown;
    assert.ok(error instanceof HuddleError);
    assert.equal(error.code, 'VERSION_CONFLICT');
    assert.equal(error.details.current_version, 2);
  });

  test('joining a document without access is refused and recorded in the state', async () => {
    const owner = server.client(mintToken('owner'));
    const stranger = server.client(mintToken('stranger'));
    await Promise.all([owner.connect(), stranger.connect()]);
    await owner.createDocument('secret');
    await assert.rejects(
      stranger.joinDocument('secret'),
      (err: unknown) => err instanceof HuddleError && err.code === 'PERMISSION_DENIED',
    );
    const room = stranger.state.rooms['document:secret'];
    assert.equal(room?.status, 'error');
    assert.equal(room?.error?.code, 'PERMISSION_DENIED');
    await assert.rejects(
      stranger.joinDocument('missing'),
      (err: unknown) => err instanceof HuddleError && err.code === 'NOT_FOUND',
    );
  });

  test('revoking access removes the member from the room', async () => {
    const owner = server.client(mintToken('owner2'));
    const guest = server.client(mintToken('guest2'));
    await Promise.all([owner.connect(), guest.connect()]);
    await owner.createDocument('shared');
    await owner.shareDocument('shared', 'guest2', 'viewer');
    await owner.joinDocument('shared');
    await guest.joinDocument('shared');
    const denied = waitFor(guest, 'error', (e) => e.code === 'PERMISSION_DENIED');
    const left = waitFor(owner, 'user:left', (u) => u.user_id === 'guest2');
    await owner.shareDocument('shared', 'guest2', 'none');
    assert.equal((await denied).room, 'document:shared');
    await left;
    assert.equal(guest.state.rooms['document:shared']?.status, 'error');
    assert.equal(guest.state.status, 'connected');
  });
});
