// Presence of a large room against the real server: `member_count`, acks that
// list only the first users, `presence:diff` applied to the room's members,
// and `presence:list` paged on demand. The server runs with a tiny threshold
// and interval so that a handful of clients make a "large" room.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import type { HuddleClient } from '../src/index.js';
import { TestServer, collect, mintToken, until } from './helpers.js';

const ROOM = 'chat:lobby';

function ids(client: HuddleClient): string[] {
  return (client.state.rooms[ROOM]?.members ?? []).map((m) => m.user_id);
}

function count(client: HuddleClient): number | undefined {
  return client.state.rooms[ROOM]?.memberCount;
}

describe('presence in a large room', () => {
  let server: TestServer;
  before(async () => {
    server = await TestServer.start({
      env: { HUDDLE_PRESENCE_MAX_INSTANT: '3', HUDDLE_PRESENCE_MAX_LISTED: '5', HUDDLE_PRESENCE_INTERVAL_MS: '200' },
    });
  });
  after(async () => {
    server.closeClients();
    await server.dispose();
  });

  test('member_count, diffs applied to the members, and paging with presence:list', async () => {
    const watcher = server.client(mintToken('a-watcher'));
    await watcher.connect();
    const diffs = collect(watcher, 'presence:diff');
    const first = await watcher.joinChat('lobby');
    assert.equal(first.member_count, 1);
    assert.equal(count(watcher), 1);

    // Six more users: the first two arrive as user:joined (3 present is the
    // threshold), the others in presence:diff batches.
    const users = ['u1', 'u2', 'u3', 'u4', 'u5', 'u6'];
    const others: HuddleClient[] = [];
    for (const user of users) {
      const c = server.client(mintToken(user, { name: user.toUpperCase() }));
      await c.connect();
      const ack = await c.joinChat('lobby');
      assert.ok(ack.members.length <= 5, 'acks list at most presence_max_listed users');
      assert.equal(ack.member_count, others.length + 2);
      assert.equal(count(c), ack.member_count);
      others.push(c);
    }
    const everyone = ['a-watcher', ...users];
    await until(watcher, () => count(watcher) === 7 && ids(watcher).length === 7, 5_000, 'the watcher sees everyone');
    assert.deepEqual(ids(watcher), everyone, 'in user id order');
    assert.ok(diffs.length > 0, 'above the threshold presence came in diffs');
    assert.ok(diffs.every((d) => d.room === ROOM && d.left.length === 0));
    assert.equal(watcher.state.rooms[ROOM]?.members.find((m) => m.user_id === 'u5')?.name, 'U5');

    // A latecomer's ack lists five users; it pages the rest on demand.
    const late = server.client(mintToken('z-late'));
    await late.connect();
    const ack = await late.joinChat('lobby');
    assert.deepEqual(ack.members.map((m) => m.user_id), ['a-watcher', 'u1', 'u2', 'u3', 'u4']);
    assert.equal(ack.member_count, 8);
    const page = await late.presenceList(ROOM, { afterUserId: 'u1', limit: 3 });
    assert.deepEqual(page.members.map((m) => m.user_id), ['u2', 'u3', 'u4']);
    assert.equal(page.has_more, true);
    assert.equal(page.member_count, 8);
    assert.deepEqual(ids(late), ['a-watcher', 'u1', 'u2', 'u3', 'u4'], 'the page is merged into the members');
    const all = await late.loadMembers(ROOM, 3);
    assert.deepEqual(all.map((m) => m.user_id), [...everyone, 'z-late']);

    // Leaving, in a batch too: the watcher's and the latecomer's lists follow.
    for (const c of others.splice(2)) c.close();
    const remaining = ['a-watcher', 'u1', 'u2', 'z-late'];
    for (const c of [watcher, late]) {
      await until(c, () => count(c) === 4 && ids(c).join() === remaining.join(), 5_000, 'the leaves are applied');
    }
    assert.ok(diffs.some((d) => d.left.length > 0));

    // Not joined: refused by the server, named by the room.
    await assert.rejects(watcher.presenceList('chat:elsewhere'), (e: { code?: string }) => e.code === 'NOT_JOINED');
  });
});

describe('a crowd in one batch', () => {
  let server: TestServer;
  before(async () => {
    server = await TestServer.start({
      env: { HUDDLE_PRESENCE_MAX_INSTANT: '1', HUDDLE_PRESENCE_MAX_LISTED: '1', HUDDLE_PRESENCE_INTERVAL_MS: '500' },
    });
  });
  after(async () => {
    server.closeClients();
    await server.dispose();
  });

  test('a truncated diff empties the list, keeps the count, and paging restores it', async () => {
    const watcher = server.client(mintToken('a-watcher'));
    await watcher.connect();
    await watcher.joinChat('lobby');
    const diffs = collect(watcher, 'presence:diff');
    for (const user of ['u1', 'u2', 'u3']) {
      const c = server.client(mintToken(user));
      await c.connect();
      await c.joinChat('lobby');
    }
    await until(watcher, () => diffs.length > 0, 5_000, 'the batch arrives');
    // u1 opened the batch; three users are more than presence_max_listed (1).
    assert.deepEqual(diffs[0], { joined: [], left: [], member_count: 4, truncated: true, room: ROOM });
    assert.equal(count(watcher), 4);
    assert.deepEqual(ids(watcher), [], 'who is there is not known any more');
    const all = await watcher.loadMembers(ROOM);
    assert.deepEqual(all.map((m) => m.user_id), ['a-watcher', 'u1', 'u2', 'u3']);
  });
});
