// Test support: a real `huddle` process on an ephemeral port over a fresh
// SQLite file, HS256 tokens minted with node:crypto, and a helper that waits
// for one event with a timeout. Tests synchronise on events, never on sleeps.

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { HuddleClient } from '../src/index.js';
import type { HuddleClientOptions, HuddleEvents } from '../src/index.js';

export const SECRET = 'client-tests-secret';

/** The server binary: $HUDDLE_BIN, else the workspace's debug build. */
export const HUDDLE_BIN =
  process.env.HUDDLE_BIN ?? fileURLToPath(new URL('../../../../target/debug/huddle', import.meta.url));

/** How long a server gets to print its listening line. */
const START_TIMEOUT_MS = 15_000;
/** How long a stopped server gets to exit before SIGKILL. */
const STOP_TIMEOUT_MS = 5_000;

export interface ServerOptions {
  /** Extra HUDDLE_* settings. */
  env?: Record<string, string>;
  /** Serve the demo page and /demo/token. */
  demo?: boolean;
}

export class TestServer {
  private constructor(
    readonly port: number,
    readonly dir: string,
    private proc: ChildProcess,
    private readonly options: ServerOptions,
    private readonly logs: string[],
  ) {}

  static async start(options: ServerOptions = {}): Promise<TestServer> {
    const dir = mkdtempSync(join(tmpdir(), 'huddle-js-'));
    const logs: string[] = [];
    const { proc, port } = await launch(dir, 0, options, logs);
    return new TestServer(port, dir, proc, options, logs);
  }

  get wsUrl(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  get httpUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  /** The server's log so far (for failure messages). */
  get log(): string {
    return this.logs.join('');
  }

  /** Stops the process with `signal` and waits for it to exit. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await stopProcess(this.proc, signal);
  }

  /** Starts the server again on the same port and database. */
  async restart(): Promise<void> {
    const { proc } = await launch(this.dir, this.port, this.options, this.logs);
    this.proc = proc;
  }

  /** Freezes the process (a server that is alive for TCP but answers nothing). */
  pause(): void {
    this.proc.kill('SIGSTOP');
  }

  resume(): void {
    this.proc.kill('SIGCONT');
  }

  /** Stops the server and removes its database. */
  async dispose(): Promise<void> {
    try {
      this.proc.kill('SIGCONT');
    } catch {
      // already gone
    }
    await stopProcess(this.proc, 'SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** A token for `sub`, valid for `ttlSeconds`. */
  token(sub: string, options: { name?: string; ttlSeconds?: number } = {}): string {
    return mintToken(sub, options);
  }

  /** A client for this server (not yet connected); closed by `closeAll`. */
  client(token: HuddleClientOptions['token'], options: Partial<HuddleClientOptions> = {}): HuddleClient {
    const client = new HuddleClient({ url: this.wsUrl, token, requestTimeoutMs: 5_000, ...options });
    this.clients.push(client);
    return client;
  }

  private readonly clients: HuddleClient[] = [];

  closeClients(): void {
    for (const c of this.clients) c.close();
    this.clients.length = 0;
  }
}

async function launch(
  dir: string,
  port: number,
  options: ServerOptions,
  logs: string[],
): Promise<{ proc: ChildProcess; port: number }> {
  if (!existsSync(HUDDLE_BIN)) {
    throw new Error(`no server binary at ${HUDDLE_BIN}: run \`cargo build\` in the repository root (or set HUDDLE_BIN)`);
  }
  const args = ['serve'];
  if (options.demo === true) args.push('--demo');
  const proc = spawn(HUDDLE_BIN, args, {
    env: {
      PATH: process.env.PATH ?? '',
      HUDDLE_BIND: `127.0.0.1:${port}`,
      DATABASE_URL: join(dir, 'huddle.db'),
      HUDDLE_JWT_SECRET: SECRET,
      RUST_LOG: 'info',
      ...options.env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let buffer = '';
    let started = false;
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`huddle did not start within ${START_TIMEOUT_MS} ms:\n${buffer}`));
    }, START_TIMEOUT_MS);
    const onExit = (code: number | null, signal: string | null): void => {
      clearTimeout(timer);
      reject(new Error(`huddle exited (${code ?? signal}) before listening:\n${buffer}`));
    };
    proc.once('exit', onExit);
    proc.stderr?.setEncoding('utf8');
    proc.stderr?.on('data', (chunk: string) => {
      logs.push(chunk);
      if (started) return;
      buffer += chunk;
      const match = /listening on http:\/\/[^\s:]+:(\d+)/.exec(buffer);
      if (match?.[1] !== undefined) {
        started = true;
        clearTimeout(timer);
        proc.off('exit', onExit);
        resolve({ proc, port: Number(match[1]) });
      }
    });
  });
}

function stopProcess(proc: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_TIMEOUT_MS);
    proc.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    proc.kill(signal);
  });
}

function base64url(input: string | Buffer): string {
  return Buffer.from(input).toString('base64url');
}

/** An HS256 JWT signed with the test secret (or `secret`). */
export function mintToken(
  sub: string,
  options: { name?: string; ttlSeconds?: number; secret?: string } = {},
): string {
  const header = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const claims: Record<string, unknown> = {
    sub,
    exp: Math.floor(Date.now() / 1000) + (options.ttlSeconds ?? 3600),
    iat: Math.floor(Date.now() / 1000),
  };
  if (options.name !== undefined) claims.name = options.name;
  const body = base64url(JSON.stringify(claims));
  const signature = createHmac('sha256', options.secret ?? SECRET).update(`${header}.${body}`).digest('base64url');
  return `${header}.${body}.${signature}`;
}

/** The next `event` that satisfies `predicate`, or a rejection after `timeoutMs`. */
export function waitFor<K extends keyof HuddleEvents>(
  emitter: Pick<HuddleClient, 'on'>,
  event: K,
  predicate: (payload: HuddleEvents[K]) => boolean = () => true,
  timeoutMs = 5_000,
): Promise<HuddleEvents[K]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${String(event)} within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = emitter.on(event, (payload) => {
      if (!predicate(payload)) return;
      clearTimeout(timer);
      off();
      resolve(payload);
    });
  });
}

/** Collects every payload of `event` from now on. */
export function collect<K extends keyof HuddleEvents>(client: HuddleClient, event: K): HuddleEvents[K][] {
  const seen: HuddleEvents[K][] = [];
  client.on(event, (payload) => seen.push(payload));
  return seen;
}

/** Waits until `check()` holds, re-checking on every event of `client`. */
export function until(client: HuddleClient, check: () => boolean, timeoutMs = 5_000, what = 'condition'): Promise<void> {
  if (check()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`${what} not reached within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = client.onAny(() => {
      if (!check()) return;
      clearTimeout(timer);
      off();
      resolve();
    });
  });
}
