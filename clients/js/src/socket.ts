// The socket manager: one WebSocket at a time, authenticated by its first
// frame, kept alive with `ping` requests, and replaced after every drop with
// growing delays, except after 4001 (the token is refused; see tokens.ts).
// It knows nothing of rooms or requests: it hands authenticated frames up
// and reports connects, drops and the moment it gives up.

import { HuddleError } from './errors.js';
import { CloseCode, parseFrame } from './protocol.js';
import type { ConnectData, IncomingFrame, OutgoingFrame } from './protocol.js';
import type { TokenManager } from './tokens.js';

/** The part of the WebSocket interface the client uses (browsers, Node >= 22, `ws`). */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface ReconnectOptions {
  /** Delay before the first attempt after a drop. Default 1000 ms. */
  initialDelayMs: number;
  /** The delay grows by `factor` up to this. Default 5000 ms. */
  maxDelayMs: number;
  /** Default 2. */
  factor: number;
  /** Attempts after one drop before giving up; `Infinity` retries forever. Default 5. */
  maxAttempts: number;
  /**
   * Fraction of each delay taken off at random (0 to 1) so that many clients
   * dropped together do not return together. Default 0.2.
   */
  jitter: number;
}

export const DEFAULT_RECONNECT: ReconnectOptions = {
  initialDelayMs: 1_000,
  maxDelayMs: 5_000,
  factor: 2,
  maxAttempts: 5,
  jitter: 0.2,
};

/** Time for the socket to open and the server to answer `auth`. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** Time for a `ping` to be answered before the server is declared dead. */
export const DEFAULT_PING_TIMEOUT_MS = 10_000;
/** Bounds for the ping interval taken from `connect.heartbeat_ms`. */
const MIN_PING_INTERVAL_MS = 1_000;
const MAX_PING_INTERVAL_MS = 30_000;
/** Close code the client uses for a socket it abandons (no close frame seen). */
const ABANDONED = CloseCode.Abnormal;

/** The delay before attempt `attempt` (1-based); no jitter. */
export function backoffDelay(options: ReconnectOptions, attempt: number): number {
  const grown = options.initialDelayMs * Math.pow(options.factor, Math.max(0, attempt - 1));
  return Math.min(options.maxDelayMs, grown);
}

export interface SocketOptions {
  url: string;
  WebSocket: WebSocketConstructor;
  reconnect: ReconnectOptions;
  connectTimeoutMs: number;
  /** Fixed ping interval; by default `connect.heartbeat_ms`, within 1 to 30 s. */
  pingIntervalMs: number | undefined;
  pingTimeoutMs: number;
}

export interface SocketHooks {
  onConnect(data: ConnectData): void;
  onFrame(frame: IncomingFrame): void;
  /** An authenticated connection ended. */
  onDisconnect(code: number, reason: string, willReconnect: boolean): void;
  onReconnecting(attempt: number, delayMs: number | null): void;
  /** The client stops: auth refused for good, or out of attempts. */
  onGiveUp(error: HuddleError): void;
  /** Sends a `ping` request; its rejection with TIMEOUT drops the socket. */
  ping(timeoutMs: number): Promise<unknown>;
}

type Phase = 'idle' | 'opening' | 'authenticating' | 'connected' | 'waiting' | 'stopped';

export class SocketManager {
  private ws: WebSocketLike | null = null;
  private phase: Phase = 'idle';
  /** Attempts since the last successful connect. */
  private attempts = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  private pingTimer: ReturnType<typeof setInterval> | undefined;
  private pingInFlight = false;
  /** The `error` the server sent before closing (why a 4001 happened). */
  private lastServerError: HuddleError | null = null;
  /** Next attempt goes without delay (after 1001 / 4008, or a fresh token). */
  private immediate = false;
  private readonly onOnline = (): void => this.retryNow();
  private readonly onOffline = (): void => this.networkLost();

  constructor(
    private readonly options: SocketOptions,
    private readonly tokens: TokenManager,
    private readonly hooks: SocketHooks,
  ) {}

  get isConnected(): boolean {
    return this.phase === 'connected';
  }

  /** Starts connecting (again, after a stop). */
  start(): void {
    if (this.phase !== 'idle' && this.phase !== 'stopped') return;
    this.attempts = 0;
    this.immediate = false;
    this.listenToNetwork(true);
    void this.attempt();
  }

  /** Closes for good with 1000; no reconnect. */
  stop(): void {
    const wasConnected = this.phase === 'connected';
    this.phase = 'stopped';
    this.clearTimers();
    this.listenToNetwork(false);
    const ws = this.ws;
    this.ws = null;
    if (ws !== null) {
      detach(ws);
      try {
        ws.close(CloseCode.Normal, 'client closed');
      } catch {
        // already closing
      }
    }
    if (wasConnected) this.hooks.onDisconnect(CloseCode.Normal, 'client closed', false);
  }

  /** Sends one frame on the authenticated socket; false if there is none. */
  send(frame: OutgoingFrame): boolean {
    if (this.phase !== 'connected' || this.ws === null) return false;
    try {
      this.ws.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  /** Makes the pending reconnect attempt now instead of after its delay. */
  reconnectNow(): void {
    this.retryNow();
  }

  /** Drops the current socket as if the network failed, then reconnects. */
  drop(reason = 'dropped by the client'): void {
    if (this.ws !== null) this.abandon(this.ws, ABANDONED, reason);
  }

  private async attempt(): Promise<void> {
    this.retryTimer = undefined;
    this.phase = 'opening';
    let token: string;
    try {
      token = await this.tokens.forConnect();
    } catch (err) {
      if (this.phase !== 'opening') return; // stopped meanwhile
      const error = err instanceof HuddleError ? err : new HuddleError('TOKEN_PROVIDER_FAILED', String(err));
      this.lastServerError = error;
      this.failedAttempt(CloseCode.Abnormal, error.message);
      return;
    }
    if (this.phase !== 'opening') return;
    this.lastServerError = null;
    let ws: WebSocketLike;
    try {
      ws = new this.options.WebSocket(this.options.url);
    } catch (err) {
      this.failedAttempt(CloseCode.Abnormal, String(err));
      return;
    }
    this.ws = ws;
    this.connectTimer = setTimeout(() => this.abandon(ws, ABANDONED, 'connect timeout'), this.options.connectTimeoutMs);
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.phase = 'authenticating';
      ws.send(JSON.stringify({ event: 'auth', data: { token }, ref: 'auth' }));
    };
    ws.onmessage = (event) => {
      if (this.ws !== ws || typeof event.data !== 'string') return;
      const frame = parseFrame(event.data);
      if (frame !== null) this.receive(frame);
    };
    ws.onclose = (event) => this.closed(ws, event.code, event.reason);
    // Browsers follow an error with a close event, but some implementations
    // (Node 20's) only report the error when the connection is refused and
    // leave the socket CONNECTING forever: an error ends the socket here.
    ws.onerror = () => this.abandon(ws, ABANDONED, 'socket error');
  }

  private receive(frame: IncomingFrame): void {
    if (this.phase === 'connected') {
      this.hooks.onFrame(frame);
      if (this.ws !== null && isAuthEnd(frame)) {
        // The server closes with 4001 right after this error; act on the
        // error rather than wait for the close handshake to finish.
        this.lastServerError = HuddleError.fromWire(frame.data);
        this.abandon(this.ws, CloseCode.Unauthenticated, String(frame.data.code));
      }
      return;
    }
    if (frame.event === 'connect') {
      const data = frame.data as unknown as ConnectData;
      clearTimeout(this.connectTimer);
      this.phase = 'connected';
      this.attempts = 0;
      this.immediate = false;
      this.tokens.connected(data.expires_at);
      this.startPing(data.heartbeat_ms);
      this.hooks.onConnect(data);
    } else if (frame.event === 'error') {
      // Before `connect` only the refusal of our `auth` can arrive, and a
      // 4001 close follows it (1008 for LIMIT_EXCEEDED).
      this.lastServerError = HuddleError.fromWire(frame.data, { event: 'auth' });
      if (this.ws !== null && isAuthEnd(frame)) this.abandon(this.ws, CloseCode.Unauthenticated, String(frame.data.code));
    }
  }

  /** Forgets a socket without waiting for its close event, then handles the close. */
  private abandon(ws: WebSocketLike, code: number, reason: string): void {
    if (this.ws !== ws) return;
    detach(ws);
    try {
      ws.close();
    } catch {
      // not open yet or already closing
    }
    this.closed(ws, code, reason);
  }

  private closed(ws: WebSocketLike, code: number, reason: string): void {
    if (this.ws !== ws) return;
    detach(ws);
    this.ws = null;
    this.clearTimers();
    const wasConnected = this.phase === 'connected';
    if (this.phase === 'stopped') return;

    if (code === CloseCode.Unauthenticated) {
      if (wasConnected) this.hooks.onDisconnect(code, reason, this.tokens.hasProvider);
      this.phase = 'waiting';
      void this.tokens.recoverFromAuthFailure().then((fresh) => {
        if (this.phase !== 'waiting') return;
        if (fresh) {
          this.immediate = true;
          this.scheduleAttempt();
        } else {
          this.giveUp(this.lastServerError ?? new HuddleError('UNAUTHENTICATED', reason || 'authentication refused'));
        }
      });
      return;
    }

    if (code === CloseCode.GoingAway || code === CloseCode.SlowConsumer) this.immediate = true;
    const willReconnect = this.attempts < this.options.reconnect.maxAttempts;
    if (wasConnected) this.hooks.onDisconnect(code, reason, willReconnect);
    this.failedAttempt(code, reason);
  }

  private failedAttempt(code: number, reason: string): void {
    this.phase = 'waiting';
    if (this.attempts >= this.options.reconnect.maxAttempts) {
      const max = this.options.reconnect.maxAttempts;
      this.giveUp(
        new HuddleError('MAX_RECONNECT_EXCEEDED', `gave up after ${max} reconnect attempts (last close ${code}${reason ? `: ${reason}` : ''})`, {
          details: { attempts: max, last_close_code: code },
        }),
      );
      return;
    }
    this.scheduleAttempt();
  }

  private scheduleAttempt(): void {
    if (isOffline()) {
      // No network: attempts would fail at once and use up the budget.
      // The `online` event resumes (see retryNow).
      this.hooks.onReconnecting(this.attempts + 1, null);
      return;
    }
    this.attempts += 1;
    const { reconnect } = this.options;
    let delay = 0;
    if (!this.immediate) {
      delay = backoffDelay(reconnect, this.attempts);
      delay -= delay * reconnect.jitter * Math.random();
      delay = Math.round(delay);
    }
    this.immediate = false;
    this.hooks.onReconnecting(this.attempts, delay);
    this.retryTimer = setTimeout(() => void this.attempt(), delay);
  }

  /** The network came back: skip the remaining wait. */
  private retryNow(): void {
    if (this.phase !== 'waiting') return;
    if (this.retryTimer !== undefined) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      this.attempts = Math.max(0, this.attempts - 1);
    }
    this.immediate = true;
    this.scheduleAttempt();
  }

  /** The browser says the network is gone: do not wait for a ping to find out. */
  private networkLost(): void {
    if (this.ws !== null) this.abandon(this.ws, ABANDONED, 'network offline');
  }

  private giveUp(error: HuddleError): void {
    this.phase = 'stopped';
    this.clearTimers();
    this.listenToNetwork(false);
    this.hooks.onGiveUp(error);
  }

  private startPing(heartbeatMs: number): void {
    const interval =
      this.options.pingIntervalMs ??
      Math.min(MAX_PING_INTERVAL_MS, Math.max(MIN_PING_INTERVAL_MS, Number.isFinite(heartbeatMs) ? heartbeatMs : MAX_PING_INTERVAL_MS));
    const ws = this.ws;
    this.pingInFlight = false;
    this.pingTimer = setInterval(() => {
      if (this.pingInFlight || this.ws !== ws || ws === null) return;
      this.pingInFlight = true;
      this.hooks.ping(this.options.pingTimeoutMs).then(
        () => {
          this.pingInFlight = false;
        },
        (err: unknown) => {
          this.pingInFlight = false;
          if (err instanceof HuddleError && err.code === 'TIMEOUT' && this.ws === ws) {
            this.abandon(ws, CloseCode.HeartbeatTimeout, 'ping timeout');
          }
        },
      );
    }, interval);
  }

  private clearTimers(): void {
    clearTimeout(this.connectTimer);
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    this.connectTimer = undefined;
    this.retryTimer = undefined;
    this.pingTimer = undefined;
  }

  private listenToNetwork(on: boolean): void {
    const target = globalThis as { addEventListener?: (t: string, l: () => void) => void; removeEventListener?: (t: string, l: () => void) => void };
    if (typeof target.addEventListener !== 'function' || typeof target.removeEventListener !== 'function') return;
    if (on) {
      target.addEventListener('online', this.onOnline);
      target.addEventListener('offline', this.onOffline);
    } else {
      target.removeEventListener('online', this.onOnline);
      target.removeEventListener('offline', this.onOffline);
    }
  }
}

/** An unsolicited `error` that announces a 4001 close. */
function isAuthEnd(frame: IncomingFrame): boolean {
  if (frame.event !== 'error' || (frame.ref !== undefined && frame.ref !== 'auth')) return false;
  return frame.data.code === 'UNAUTHENTICATED' || frame.data.code === 'TOKEN_EXPIRED';
}

function detach(ws: WebSocketLike): void {
  ws.onopen = null;
  ws.onmessage = null;
  ws.onclose = null;
  ws.onerror = null;
}

/** True only where the platform says so (browsers); Node has no such notion. */
function isOffline(): boolean {
  const nav = (globalThis as { navigator?: { onLine?: unknown } }).navigator;
  return nav !== undefined && nav.onLine === false;
}
