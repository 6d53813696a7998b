// Tokens: refresh before expiry, expiry without a provider, and the one
// fresh token asked for after a 4001.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { HuddleError } from '../src/index.js';
import { TestServer, mintToken, waitFor } from './helpers.js';

/** Resolves once the wall clock is past `ms` (the scenario needs time to pass, not a sync point). */
function clockPast(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms - Date.now())));
}

describe('tokens', () => {
  let server: TestServer;
  before(async () => {
    // No leeway: a token is refused the second its exp passes.
    server = await TestServer.start({ env: { HUDDLE_JWT_LEEWAY_S: '0' } });
  });
  after(async () => {
    server.closeClients();
    await server.dispose();
  });

  test('refreshes with auth:refresh before expires_at and outlives the first token', async () => {
    const issued: number[] = [];
    const provider = async (): Promise<string> => {
      const ttl = issued.length === 0 ? 2 : 3600;
      issued.push(ttl);
      return mintToken('rita', { ttlSeconds: ttl });
    };
    const client = server.client(provider, { refreshBeforeMs: 1_500 });
    const disconnects: unknown[] = [];
    client.on('disconnect', (d) => disconnects.push(d));
    const connected = await client.connect();
    const firstExpiry = Date.parse(connected.expires_at);

    const update = await waitFor(client, 'session_update', () => true, 5_000);
    assert.ok(Date.now() < firstExpiry, 'refreshed before the old token expired');
    assert.ok(Date.parse(update.expires_at) > Date.now() + 3_000_000);
    assert.equal(client.state.session?.expiresAt, update.expires_at);
    assert.deepEqual(issued, [2, 3600]);

    // past the first token's expiry the connection is still the same one
    await clockPast(firstExpiry + 1_000);
    assert.ok(await client.ping());
    assert.deepEqual(disconnects, []);
    assert.equal(client.state.session?.sessionId, connected.session_id);
  });

  test('a fixed token that expires ends the connection with TOKEN_EXPIRED', async () => {
    const client = server.client(mintToken('sam', { ttlSeconds: 1 }));
    await client.connect();
    const expired = waitFor(client, 'error', (e) => e.code === 'TOKEN_EXPIRED', 5_000);
    const down = waitFor(client, 'disconnect', () => true, 5_000);
    await expired;
    const info = await down;
    assert.equal(info.code, 4001);
    assert.equal(info.willReconnect, false);
    await waitFor(client, 'state', (s) => s.status === 'closed', 5_000).catch(() => undefined);
    assert.equal(client.state.status, 'closed');
  });

  test('after a 4001 the provider is asked once for a fresh token', async () => {
    let calls = 0;
    const client = server.client(async () => {
      calls += 1;
      return calls === 1 ? mintToken('tia', { secret: 'stale-secret' }) : mintToken('tia');
    });
    const connected = await client.connect();
    assert.equal(connected.user_id, 'tia');
    assert.equal(calls, 2);
  });

  test('a provider that keeps failing is asked twice, then the client gives up', async () => {
    let calls = 0;
    const client = server.client(async () => {
      calls += 1;
      return mintToken('uma', { secret: 'wrong' });
    });
    await assert.rejects(client.connect(), (err: unknown) => err instanceof HuddleError && err.code === 'UNAUTHENTICATED');
    assert.equal(calls, 2);
    assert.equal(client.state.status, 'closed');
  });
});
