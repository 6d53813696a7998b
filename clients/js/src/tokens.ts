// The token manager: where the JWT comes from, when it is refreshed, and what
// a 4001 means. A fixed token can only be used until it expires; a provider
// (sync or async function) is asked for a new one before `expires_at`, and
// once more when the server refuses the connection with 4001.

import { HuddleError } from './errors.js';

/** A JWT, or a function that returns a fresh one (possibly asynchronously). */
export type TokenSource = string | (() => string | Promise<string>);

/**
 * Refresh this long before `expires_at`. A token whose whole remaining life is
 * shorter is refreshed at half of it, so short tokens do not spin.
 */
export const DEFAULT_REFRESH_BEFORE_MS = 60_000;
/** Pause before retrying a refresh that failed, at most. */
const REFRESH_RETRY_MS = 5_000;
/** Longest delay `setTimeout` accepts (about 24.8 days). */
const MAX_TIMER_MS = 2_147_483_647;

export interface TokenHooks {
  /** Sends `auth:refresh`; resolves with the new `expires_at`. */
  refresh(token: string): Promise<string>;
  /** A refresh failed (the connection keeps its old token until it expires). */
  onError(error: HuddleError): void;
}

export class TokenManager {
  private token: string | null;
  private expiresAtMs: number | null = null;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** True once a 4001 has been answered with a fresh token, until the next connect. */
  private authRetryUsed = false;
  private refreshing = false;

  constructor(
    private readonly source: TokenSource,
    private readonly refreshBeforeMs: number,
    private readonly hooks: TokenHooks,
  ) {
    this.token = typeof source === 'string' ? source : null;
  }

  get hasProvider(): boolean {
    return typeof this.source === 'function';
  }

  /** The token for the next connection attempt. */
  async forConnect(): Promise<string> {
    const expired = this.expiresAtMs !== null && this.expiresAtMs <= Date.now();
    if (this.token === null || (expired && this.hasProvider)) return this.fromProvider();
    return this.token;
  }

  /** Authenticated: remember the expiry and plan the refresh. */
  connected(expiresAt: string): void {
    this.authRetryUsed = false;
    this.expiresAt(expiresAt);
  }

  /** A `session_update` or refresh ack moved the expiry. */
  expiresAt(expiresAt: string): void {
    const ms = Date.parse(expiresAt);
    this.expiresAtMs = Number.isNaN(ms) ? null : ms;
    this.schedule();
  }

  disconnected(): void {
    this.cancel();
  }

  /**
   * The server closed with 4001. True when a fresh token was obtained and one
   * more attempt is worth making; false when the client should give up.
   */
  async recoverFromAuthFailure(): Promise<boolean> {
    if (!this.hasProvider || this.authRetryUsed) return false;
    this.authRetryUsed = true;
    try {
      await this.fromProvider();
      return true;
    } catch {
      return false;
    }
  }

  cancel(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    this.cancel();
    if (!this.hasProvider || this.expiresAtMs === null) return;
    const remaining = this.expiresAtMs - Date.now();
    const delay = Math.max(0, remaining - this.refreshBeforeMs, remaining / 2);
    this.timer = setTimeout(() => void this.refresh(), Math.min(delay, MAX_TIMER_MS));
  }

  private async refresh(): Promise<void> {
    this.timer = undefined;
    if (this.refreshing) return;
    this.refreshing = true;
    try {
      const token = await this.fromProvider();
      const expiresAt = await this.hooks.refresh(token);
      this.expiresAt(expiresAt);
    } catch (err) {
      const error =
        err instanceof HuddleError
          ? err
          : new HuddleError('TOKEN_PROVIDER_FAILED', `token refresh failed: ${String(err)}`, { cause: err });
      // Without a connection there is nothing to refresh: the next connect
      // takes a fresh token from the provider anyway.
      const offline = error.code === 'CONNECTION_LOST' || error.code === 'NOT_CONNECTED' || error.code === 'CLIENT_CLOSED';
      if (!offline) this.hooks.onError(error);
      // Try again while the old token still has time left; the connection
      // itself ends at expiry, and reconnecting asks the provider anyway.
      const remaining = this.expiresAtMs === null ? 0 : this.expiresAtMs - Date.now();
      if (remaining > 1_000 && !offline) {
        this.cancel();
        this.timer = setTimeout(() => void this.refresh(), Math.min(REFRESH_RETRY_MS, remaining / 2));
      }
    } finally {
      this.refreshing = false;
    }
  }

  private async fromProvider(): Promise<string> {
    if (typeof this.source === 'string') return this.source;
    let token: unknown;
    try {
      token = await this.source();
    } catch (err) {
      throw new HuddleError('TOKEN_PROVIDER_FAILED', `token provider failed: ${String(err)}`, { cause: err });
    }
    if (typeof token !== 'string' || token === '') {
      throw new HuddleError('TOKEN_PROVIDER_FAILED', 'token provider returned no token');
    }
    this.token = token;
    return token;
  }
}
