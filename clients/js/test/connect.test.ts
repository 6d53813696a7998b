// Connecting: first-frame auth, the session in the state, refusals.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { HuddleError } from '../src/index.js';
import { TestServer, mintToken, waitFor } from './helpers.js';

describe('connect', () => {
  let server: TestServer;
  before(async () => {
    server = await TestServer.start();
  });
  after(async () => {
    server.closeClients();
    await server.dispose();
  });

  test('authenticates with the first frame and exposes the session', async () => {
    const client = server.client(mintToken('alice', { name: 'Alice' }));
    const statuses: string[] = [];
    client.on('state', (s) => statuses.push(s.status));
    const data = await client.connect();
    assert.equal(data.user_id, 'alice');
    assert.equal(data.name, 'Alice');
    assert.equal(data.protocol, 1);
    assert.equal(client.state.status, 'connected');
    assert.equal(client.state.session?.userId, 'alice');
    assert.equal(client.state.session?.expiresAt, data.expires_at);
    assert.deepEqual(statuses, ['connecting', 'connected']);
    const serverTime = await client.ping();
    assert.match(serverTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    client.close();
    assert.equal(client.state.status, 'closed');
  });

  test('a refused token ends in an error, without reconnecting', async () => {
    const client = server.client(mintToken('mallory', { secret: 'not-the-secret' }));
    const reconnecting: unknown[] = [];
    client.on('reconnecting', (r) => reconnecting.push(r));
    const errorEvent = waitFor(client, 'error');
    await assert.rejects(client.connect(), (err: unknown) => err instanceof HuddleError && err.code === 'UNAUTHENTICATED');
    assert.equal((await errorEvent).code, 'UNAUTHENTICATED');
    assert.equal(client.state.status, 'closed');
    assert.deepEqual(reconnecting, []);
  });

  test('requests made before the connection wait for it', async () => {
    const client = server.client(mintToken('bob'));
    const pong = client.request('ping', {});
    await client.connect();
    assert.ok((await pong).server_time);
  });
});
