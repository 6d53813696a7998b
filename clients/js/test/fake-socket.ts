// A scripted stand-in for a WebSocket, for unit tests of the client's logic
// without a server: each new socket asks `script` how to behave, and frames
// the client sends are answered by `respond`.

import type { IncomingFrame, OutgoingFrame } from '../src/protocol.js';
import type { WebSocketConstructor, WebSocketLike } from '../src/socket.js';

export type Behaviour = 'accept' | 'refuse' | { refuseAuth: string };

export interface FakeServer {
  /** How the n-th socket (0-based) behaves. */
  script: (n: number) => Behaviour;
  /** Answer to a request; `undefined` sends nothing. */
  respond: (frame: OutgoingFrame, socket: FakeSocket) => Omit<IncomingFrame, 'ref'> | undefined;
  sockets: FakeSocket[];
  /** Every frame the client sent, all sockets together. */
  sent: OutgoingFrame[];
  WebSocket: WebSocketConstructor;
}

export class FakeSocket implements WebSocketLike {
  readyState = 0;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  closedByClient = false;

  constructor(private readonly server: FakeServer, behaviour: Behaviour) {
    queueMicrotask(() => {
      if (behaviour === 'refuse') {
        this.readyState = 3;
        this.onerror?.({});
        this.onclose?.({ code: 1006, reason: '' });
        return;
      }
      this.readyState = 1;
      this.onopen?.({});
    });
    this.behaviour = behaviour;
  }

  private readonly behaviour: Behaviour;

  send(data: string): void {
    const frame = JSON.parse(data) as OutgoingFrame;
    this.server.sent.push(frame);
    if (frame.event === 'auth') {
      if (typeof this.behaviour === 'object') {
        this.push({ event: 'error', ref: 'auth', data: { code: this.behaviour.refuseAuth, message: 'refused' } });
        this.serverClose(4001, 'unauthenticated');
      } else {
        this.push({
          event: 'connect',
          ref: 'auth',
          data: {
            session_id: `s${this.server.sockets.indexOf(this)}`,
            user_id: 'u',
            expires_at: new Date(Date.now() + 3_600_000).toISOString(),
            heartbeat_ms: 25_000,
            protocol: 1,
          },
        });
      }
      return;
    }
    const answer = this.server.respond(frame, this);
    if (answer !== undefined) this.push(frame.ref === undefined ? answer : { ...answer, ref: frame.ref });
  }

  close(): void {
    this.closedByClient = true;
    this.readyState = 3;
  }

  /** The server sends a frame. */
  push(frame: IncomingFrame): void {
    queueMicrotask(() => {
      if (this.readyState === 1) this.onmessage?.({ data: JSON.stringify(frame) });
    });
  }

  /** The server closes the connection. */
  serverClose(code: number, reason = ''): void {
    queueMicrotask(() => {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.onclose?.({ code, reason });
    });
  }
}

export function fakeServer(options: Partial<Pick<FakeServer, 'script' | 'respond'>> = {}): FakeServer {
  const server: FakeServer = {
    script: options.script ?? (() => 'accept'),
    respond: options.respond ?? ((frame) => ({ event: 'ack', data: frame.event === 'ping' ? { server_time: new Date().toISOString() } : {} })),
    sockets: [],
    sent: [],
    WebSocket: undefined as unknown as WebSocketConstructor,
  };
  server.WebSocket = class {
    constructor() {
      const socket = new FakeSocket(server, server.script(server.sockets.length));
      server.sockets.push(socket);
      return socket;
    }
  } as unknown as WebSocketConstructor;
  return server;
}
