// Request/response matching. Every request gets an integer `ref`; its promise
// is settled exactly once: by the `ack` or `error` carrying that ref, by its
// timeout, or by the connection's loss (requests that cannot be retried) or
// the client's end. Requests made while the connection is down wait in an
// outbox and go out, in the order they were made, once the connection is
// back and the rooms have been joined again.

import { HuddleError } from './errors.js';
import { countJsonValues, MAX_FRAME_VALUES } from './protocol.js';
import type { AckData, IncomingFrame, OutgoingFrame, RequestData, RequestEvent } from './protocol.js';

/** Default time for a request to be answered. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/** How often a request refused with SERVER_BUSY / RATE_LIMITED is retried. */
const MAX_BUSY_RETRIES = 5;
/** Pause before such a retry when the server gives no `retry_after_ms`. */
const BUSY_RETRY_DELAY_MS = 1_000;

export interface RequestOptions {
  /** Overrides the client's request timeout for this request. */
  timeoutMs?: number;
  /**
   * Safe to send again after a reconnect (idempotent: joins, messages with a
   * `client_msg_id`, reads). Otherwise a loss of connection while it is in
   * flight rejects it with CONNECTION_LOST.
   */
  retry?: boolean;
  /**
   * Sent as soon as the socket is authenticated, before the rooms are joined
   * again (the joins themselves and what they need). Others wait for the rejoin.
   */
  early?: boolean;
  /**
   * What to do while there is no connection: `wait` (the default; the timeout
   * runs meanwhile), `hold` (wait without a timeout, which starts when the
   * request is sent), or `reject` at once with NOT_CONNECTED.
   */
  offline?: 'wait' | 'hold' | 'reject';
}

interface Pending {
  ref: number;
  event: RequestEvent;
  data: object;
  resolve: (value: unknown) => void;
  reject: (error: HuddleError) => void;
  timeoutMs: number;
  retry: boolean;
  early: boolean;
  offline: 'wait' | 'hold' | 'reject';
  timer: ReturnType<typeof setTimeout> | undefined;
  busyRetries: number;
}

export class RequestTracker {
  private nextRef = 1;
  /** Sent, awaiting their answer, by ref. */
  private readonly inflight = new Map<number, Pending>();
  /** Waiting for a connection (or for the rejoin), in ref order. */
  private queue: Pending[] = [];
  /** Refused with SERVER_BUSY / RATE_LIMITED, waiting to be sent again. */
  private readonly waitingBusy = new Set<Pending>();
  private connected = false;
  private gateOpen = false;
  /** Set once the client has stopped: every request fails with it. */
  private closedWith: HuddleError | null = null;

  constructor(
    private readonly send: (frame: OutgoingFrame) => boolean,
    private readonly defaultTimeoutMs: number = DEFAULT_REQUEST_TIMEOUT_MS,
  ) {}

  request<E extends RequestEvent>(event: E, data: RequestData<E>, options: RequestOptions = {}): Promise<AckData<E>> {
    return new Promise<AckData<E>>((resolve, reject) => {
      const p: Pending = {
        ref: this.nextRef++,
        event,
        data,
        resolve: resolve as (value: unknown) => void,
        reject,
        timeoutMs: options.timeoutMs ?? this.defaultTimeoutMs,
        retry: options.retry ?? false,
        early: options.early ?? false,
        offline: options.offline ?? 'wait',
        timer: undefined,
        busyRetries: 0,
      };
      if (this.closedWith !== null) {
        reject(this.closedWith);
        return;
      }
      if (countJsonValues({ event, data, ref: p.ref }, MAX_FRAME_VALUES) > MAX_FRAME_VALUES) {
        // The server would refuse it without a ref: this request would only time out, and be sent again.
        reject(new HuddleError('PAYLOAD_TOO_LARGE', `${event}: the frame would hold more than ${MAX_FRAME_VALUES} JSON values`, { event }));
        return;
      }
      if (this.canSend(p)) {
        this.transmit(p);
        return;
      }
      if (p.offline === 'reject' && !this.connected) {
        reject(new HuddleError('NOT_CONNECTED', `${event}: not connected`, { event }));
        return;
      }
      if (p.offline === 'wait') this.armTimer(p);
      this.queue.push(p);
    });
  }

  /** Settles the request a response frame answers. False if none matches. */
  settle(frame: IncomingFrame): boolean {
    if (typeof frame.ref !== 'number') return false;
    const p = this.inflight.get(frame.ref);
    if (p === undefined) return false;
    this.inflight.delete(frame.ref);
    if (frame.event === 'ack') {
      this.clearTimer(p);
      p.resolve(frame.data);
      return true;
    }
    const error = HuddleError.fromWire(frame.data, { event: p.event, ref: p.ref });
    if (p.retry && (error.code === 'SERVER_BUSY' || error.code === 'RATE_LIMITED') && p.busyRetries < MAX_BUSY_RETRIES) {
      p.busyRetries += 1;
      const wait = typeof error.details.retry_after_ms === 'number' ? error.details.retry_after_ms : BUSY_RETRY_DELAY_MS;
      this.waitingBusy.add(p);
      setTimeout(() => {
        if (!this.waitingBusy.has(p)) return; // timed out or failed meanwhile
        if (this.canSend(p)) this.transmit(p);
        else this.enqueue(p);
      }, wait);
      return true;
    }
    this.clearTimer(p);
    p.reject(error);
    return true;
  }

  /** The socket is authenticated: send what may go before the rejoin. */
  setConnected(): void {
    this.closedWith = null;
    this.connected = true;
    this.gateOpen = false;
    this.flush();
  }

  /** Rooms are joined again: everything else goes out, in order. */
  openGate(): void {
    if (!this.connected) return;
    this.gateOpen = true;
    this.flush();
  }

  /** The socket dropped: retry-safe requests go back to the outbox, the rest fail. */
  connectionLost(): void {
    this.connected = false;
    this.gateOpen = false;
    const inflight = [...this.inflight.values()];
    this.inflight.clear();
    for (const p of inflight) {
      if (p.retry) {
        if (p.offline === 'hold') this.clearTimer(p);
        this.queue.push(p);
      } else {
        this.clearTimer(p);
        p.reject(new HuddleError('CONNECTION_LOST', `${p.event}: connection lost before the answer`, { event: p.event, ref: p.ref }));
      }
    }
    this.queue.sort((a, b) => a.ref - b.ref);
  }

  /** The client stopped: every request, sent or waiting, fails with `error`. */
  fail(error: HuddleError): void {
    this.closedWith = error;
    this.connected = false;
    this.gateOpen = false;
    const all = [...this.inflight.values(), ...this.queue, ...this.waitingBusy];
    this.inflight.clear();
    this.queue = [];
    this.waitingBusy.clear();
    for (const p of all) {
      this.clearTimer(p);
      p.reject(error);
    }
  }

  /** Allows requests again after `fail()` (a new `connect()`). */
  reopen(): void {
    this.closedWith = null;
  }

  /** Number of requests not yet answered (sent or waiting). */
  get outstanding(): number {
    return this.inflight.size + this.queue.length + this.waitingBusy.size;
  }

  private canSend(p: Pending): boolean {
    return this.connected && (this.gateOpen || p.early);
  }

  private enqueue(p: Pending): void {
    this.waitingBusy.delete(p);
    this.queue.push(p);
    this.queue.sort((a, b) => a.ref - b.ref);
  }

  private flush(): void {
    const waiting = this.queue;
    this.queue = [];
    for (const p of waiting) {
      if (this.canSend(p)) this.transmit(p);
      else this.queue.push(p);
    }
  }

  private transmit(p: Pending): void {
    this.waitingBusy.delete(p);
    if (p.timer === undefined) this.armTimer(p);
    this.inflight.set(p.ref, p);
    // If the socket went away between the check and the send, the close
    // handler runs connectionLost(), which decides this request's fate.
    this.send({ event: p.event, data: p.data, ref: p.ref });
  }

  private armTimer(p: Pending): void {
    p.timer = setTimeout(() => {
      p.timer = undefined;
      this.inflight.delete(p.ref);
      this.queue = this.queue.filter((q) => q !== p);
      this.waitingBusy.delete(p);
      p.reject(new HuddleError('TIMEOUT', `${p.event}: no answer within ${p.timeoutMs} ms`, { event: p.event, ref: p.ref }));
    }, p.timeoutMs);
  }

  private clearTimer(p: Pending): void {
    if (p.timer !== undefined) clearTimeout(p.timer);
    p.timer = undefined;
  }
}
