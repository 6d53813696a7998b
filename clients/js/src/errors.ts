// One error type for everything the library rejects or reports: the server's
// protocol errors keep their code and details; failures the client detects by
// itself (timeouts, lost connections, giving up) get codes of their own that
// can never collide with the server's.

import type { ErrorDetails, Ref, ServerErrorCode, WireError } from './protocol.js';

export type ClientErrorCode =
  /** No `ack` or `error` arrived within the request's timeout. */
  | 'TIMEOUT'
  /** The connection dropped while a request that cannot be retried was in flight. */
  | 'CONNECTION_LOST'
  /** A request that needs a live connection was made without one (e.g. `ping`). */
  | 'NOT_CONNECTED'
  /** Every configured reconnect attempt failed. */
  | 'MAX_RECONNECT_EXCEEDED'
  /** `close()` was called, or the client gave up; nothing more will be sent. */
  | 'CLIENT_CLOSED'
  /** The token provider threw or returned something that is not a token. */
  | 'TOKEN_PROVIDER_FAILED';

/** A server code we know, a client code, or a code from a newer server. */
export type ErrorCode = ServerErrorCode | ClientErrorCode | (string & {});

export class HuddleError extends Error {
  readonly code: ErrorCode;
  readonly details: ErrorDetails;
  /** The request event that failed, when the error answers a request. */
  readonly event?: string;
  /** The `ref` of the request it answers. */
  readonly ref?: Ref;
  /** The room an unsolicited error is about (e.g. access revoked). */
  readonly room?: string;

  constructor(
    code: ErrorCode,
    message: string,
    extra: { details?: ErrorDetails; event?: string; ref?: Ref; room?: string; cause?: unknown } = {},
  ) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = 'HuddleError';
    this.code = code;
    this.details = extra.details ?? {};
    if (extra.event !== undefined) this.event = extra.event;
    if (extra.ref !== undefined) this.ref = extra.ref;
    if (extra.room !== undefined) this.room = extra.room;
  }

  /** Builds the error from an `error` frame's `data`. */
  static fromWire(data: Record<string, unknown>, extra: { event?: string; ref?: Ref; room?: string } = {}): HuddleError {
    const wire = data as Partial<WireError>;
    const code = typeof wire.code === 'string' ? wire.code : 'INTERNAL_ERROR';
    const message = typeof wire.message === 'string' ? wire.message : code;
    const details = typeof wire.details === 'object' && wire.details !== null ? wire.details : {};
    return new HuddleError(code, message, { ...extra, details });
  }
}

/** True for errors whose request may be sent again as is. */
export function isRetryable(error: HuddleError): boolean {
  return error.code === 'SERVER_BUSY' || error.code === 'RATE_LIMITED';
}
