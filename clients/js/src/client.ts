// HuddleClient: the one object an application holds. It wires the parts
// together and owns the order of things after a connect:
//   socket authenticated -> `connect` announced -> rooms joined again (their
//   requests go first) -> everything queued meanwhile is sent, in order.
// Each part lives in its own file; this one only connects them.

import { DocumentBinding } from './binding.js';
import { HuddleError } from './errors.js';
import { TypedEmitter } from './events.js';
import type { AnyEvent, HuddleEvents, Listener } from './events.js';
import { MessageManager } from './messages.js';
import type { HistoryOptions, SendOptions } from './messages.js';
import type {
  AckData,
  AwarenessEntry,
  AwarenessState,
  Chat,
  ChatJoinAck,
  ConnectData,
  Document,
  DocumentJoinAck,
  HistoryAck,
  IncomingFrame,
  Member,
  Message,
  PresencePage,
  RequestData,
  RequestEvent,
  Role,
  RoomName,
  SessionUpdateData,
} from './protocol.js';
import { DEFAULT_REQUEST_TIMEOUT_MS, RequestTracker } from './requests.js';
import type { RequestOptions } from './requests.js';
import { RoomManager } from './rooms.js';
import { DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_PING_TIMEOUT_MS, DEFAULT_RECONNECT, SocketManager } from './socket.js';
import type { ReconnectOptions, WebSocketConstructor } from './socket.js';
import { StateStore } from './state.js';
import type { ClientState } from './state.js';
import { DEFAULT_REFRESH_BEFORE_MS, TokenManager } from './tokens.js';
import type { TokenSource } from './tokens.js';

export interface HuddleClientOptions {
  /**
   * `ws://host/ws`, or an `http(s)://host` base to which `/ws` is added.
   * In a browser it defaults to the page's own host.
   */
  url?: string;
  /** A JWT, or a (possibly async) function returning a fresh one. */
  token: TokenSource;
  /** Reconnect policy; `maxAttempts: Infinity` retries forever. */
  reconnect?: Partial<ReconnectOptions>;
  /** Time for any request to be answered. Default 10 s. */
  requestTimeoutMs?: number;
  /** Time for the socket to open and authenticate. Default 10 s. */
  connectTimeoutMs?: number;
  /** `ping` interval; default the server's `heartbeat_ms` (1 to 30 s). */
  pingIntervalMs?: number;
  /** A `ping` unanswered this long drops the socket. Default 10 s. */
  pingTimeoutMs?: number;
  /** Refresh the token this long before it expires. Default 60 s. */
  refreshBeforeMs?: number;
  /** WebSocket implementation where the platform has none (Node < 22: the `ws` package). */
  WebSocket?: WebSocketConstructor;
}

export class HuddleClient {
  private readonly emitter = new TypedEmitter<HuddleEvents>();
  private readonly store: StateStore;
  private readonly requests: RequestTracker;
  private readonly tokens: TokenManager;
  private readonly socket: SocketManager;
  private readonly rooms: RoomManager;
  private readonly messages: MessageManager;
  private readonly maxAttempts: number;
  /** Counts connections, so a rejoin finishing late cannot open a newer connection's gate. */
  private generation = 0;
  private connecting: { promise: Promise<ConnectData>; resolve: (d: ConnectData) => void; reject: (e: HuddleError) => void } | null =
    null;
  private lastConnect: ConnectData | null = null;
  /** Open document bindings, by document id. */
  private readonly bindings = new Map<string, DocumentBinding>();

  constructor(options: HuddleClientOptions) {
    const reconnect: ReconnectOptions = { ...DEFAULT_RECONNECT, ...options.reconnect };
    this.maxAttempts = reconnect.maxAttempts;
    this.store = new StateStore((state, room) => {
      if (room !== null) this.emitter.emit('room_state', room);
      this.emitter.emit('state', state);
    });
    this.requests = new RequestTracker(
      (frame) => this.socket.send(frame),
      options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
    );
    const request = this.request.bind(this);
    this.tokens = new TokenManager(options.token, options.refreshBeforeMs ?? DEFAULT_REFRESH_BEFORE_MS, {
      refresh: async (token) => (await request('auth:refresh', { token }, { early: true, offline: 'reject' })).expires_at,
      onError: (error) => this.reportError(error),
    });
    this.rooms = new RoomManager(request, this.store, (event, payload) => this.emitter.emit(event, payload));
    this.messages = new MessageManager(request, this.rooms, () => this.store.get().session?.userId);
    this.socket = new SocketManager(
      {
        url: resolveUrl(options.url),
        WebSocket: options.WebSocket ?? defaultWebSocket(),
        reconnect,
        connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
        pingIntervalMs: options.pingIntervalMs,
        pingTimeoutMs: options.pingTimeoutMs ?? DEFAULT_PING_TIMEOUT_MS,
      },
      this.tokens,
      {
        onConnect: (data) => this.connected(data),
        onFrame: (frame) => this.frame(frame),
        onDisconnect: (code, reason, willReconnect) => this.disconnected(code, reason, willReconnect),
        onReconnecting: (attempt, delayMs) => {
          this.store.patch({ status: 'reconnecting', reconnectAttempt: attempt });
          this.emitter.emit('reconnecting', {
            attempt,
            maxAttempts: Number.isFinite(this.maxAttempts) ? this.maxAttempts : null,
            delayMs,
          });
        },
        onGiveUp: (error) => this.gaveUp(error),
        ping: (timeoutMs) => request('ping', {}, { early: true, offline: 'reject', timeoutMs }),
      },
    );
  }

  // ---- connection --------------------------------------------------------------

  /** Connects (and keeps reconnecting); resolves on the first `connect`. */
  connect(): Promise<ConnectData> {
    if (this.connecting !== null) return this.connecting.promise;
    if (this.socket.isConnected && this.lastConnect !== null) return Promise.resolve(this.lastConnect);
    let resolve!: (d: ConnectData) => void;
    let reject!: (e: HuddleError) => void;
    const promise = new Promise<ConnectData>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.connecting = { promise, resolve, reject };
    this.requests.reopen();
    this.store.patch({ status: 'connecting', error: null, reconnectAttempt: 0 });
    this.socket.start();
    return promise;
  }

  /** Closes the connection for good; pending requests fail with CLIENT_CLOSED. */
  close(): void {
    const error = new HuddleError('CLIENT_CLOSED', 'the client was closed');
    this.socket.stop();
    this.tokens.cancel();
    this.requests.fail(error);
    this.rooms.onClosed(error);
    this.connecting?.reject(error);
    this.connecting = null;
    this.store.patch({ status: 'closed', session: null });
  }

  /**
   * Drops the socket as a network failure would; the client reconnects and
   * recovers by itself. Meant for tests and demonstrations.
   */
  drop(): void {
    this.socket.drop();
  }

  /**
   * Skips the wait before the next reconnect attempt (a "retry now" button).
   * After the client gave up, starts connecting again.
   */
  reconnectNow(): void {
    if (this.store.get().status === 'closed') {
      void this.connect().catch(() => undefined);
      return;
    }
    this.socket.reconnectNow();
  }

  // ---- state and events ----------------------------------------------------------

  /** The current snapshot (immutable; a new object after every change). */
  get state(): ClientState {
    return this.store.get();
  }

  on<K extends keyof HuddleEvents>(event: K, listener: Listener<HuddleEvents[K]>): () => void {
    return this.emitter.on(event, listener);
  }

  off<K extends keyof HuddleEvents>(event: K, listener: Listener<HuddleEvents[K]>): void {
    this.emitter.off(event, listener);
  }

  once<K extends keyof HuddleEvents>(event: K, listener: Listener<HuddleEvents[K]>): () => void {
    return this.emitter.once(event, listener);
  }

  /** Every event as one stream of `{type, payload}`. */
  onAny(listener: Listener<AnyEvent<HuddleEvents>>): () => void {
    return this.emitter.onAny(listener);
  }

  /** The next `event` whose payload satisfies `predicate`, or a rejection after `timeoutMs`. */
  waitFor<K extends keyof HuddleEvents>(
    event: K,
    predicate?: (payload: HuddleEvents[K]) => boolean,
    timeoutMs?: number,
  ): Promise<HuddleEvents[K]> {
    return this.emitter.waitFor(event, predicate, timeoutMs);
  }

  // ---- rooms -------------------------------------------------------------------------

  /** Joins a document room; it is joined again (and reloaded) after every reconnect. */
  joinDocument(documentId: string): Promise<DocumentJoinAck> {
    return this.rooms.joinDocument(documentId);
  }

  leaveDocument(documentId: string): Promise<void> {
    return this.rooms.leaveDocument(documentId);
  }

  /**
   * Joins a document and keeps its text in step with the other editors by
   * operational transformation (see DocumentBinding). Resolves once the
   * content has arrived; the same binding for the same id until it is closed.
   */
  openDocument(documentId: string): Promise<DocumentBinding> {
    let binding = this.bindings.get(documentId);
    if (binding === undefined) {
      binding = new DocumentBinding(documentId, {
        request: this.request.bind(this),
        rooms: this.rooms,
        onRoomState: (listener) => this.emitter.on('room_state', listener),
        leave: (id) => this.rooms.leaveDocument(id),
        userId: () => this.store.get().session?.userId,
        forget: (b) => {
          if (this.bindings.get(b.id) === b) this.bindings.delete(b.id);
        },
      });
      if (binding.status !== 'closed') this.bindings.set(documentId, binding);
    }
    return binding.ready;
  }

  /** Joins a chat; after a reconnect it rejoins from the last seq seen. */
  joinChat(chatId: string): Promise<ChatJoinAck> {
    return this.rooms.joinChat(chatId);
  }

  leaveChat(chatId: string): Promise<void> {
    return this.rooms.leaveChat(chatId);
  }

  // ---- presence ------------------------------------------------------------------------

  /**
   * One page of a joined room's users (`document:<id>` or `chat:<id>`), in
   * user id order, after `afterUserId`; `limit` 1 to 1000, default 100. The
   * page is merged into `state.rooms[room].members`.
   */
  presenceList(room: RoomName, options?: { afterUserId?: string; limit?: number }): Promise<PresencePage> {
    return this.rooms.presenceList(room, options);
  }

  /**
   * Every user present in a joined room: pages `presence:list` to the end
   * (`pageSize` users a request, 1 to 1000). A join lists only the first
   * users of a large room; call this when the whole list is wanted (to show
   * it, say), and `state.rooms[room].members` holds it from then on.
   */
  async loadMembers(room: RoomName, pageSize = 1000): Promise<readonly Member[]> {
    let after: string | undefined;
    for (;;) {
      const page = await this.rooms.presenceList(room, after === undefined ? { limit: pageSize } : { afterUserId: after, limit: pageSize });
      after = page.members[page.members.length - 1]?.user_id;
      if (!page.has_more || after === undefined) break;
    }
    return this.store.room(room)?.members ?? [];
  }

  // ---- awareness -----------------------------------------------------------------------

  /**
   * Shares this connection's state in a joined room (`document:<id>` or
   * `chat:<id>`): a cursor, a selection, typing. `null` clears it. The
   * latest state wins; it is set again after every reconnect.
   */
  setAwareness(room: RoomName, state: AwarenessState | null): Promise<void> {
    return this.rooms.awareness.set(room, state);
  }

  /** The other connections' states in a room (also in `state.rooms[room].awareness`). */
  awareness(room: RoomName): readonly AwarenessEntry[] {
    return this.rooms.awareness.others(room);
  }

  // ---- content -------------------------------------------------------------------------

  sendMessage(chatId: string, content: string, options?: SendOptions): Promise<Message> {
    return this.messages.sendMessage(chatId, content, options);
  }

  updateDocument(documentId: string, content: string, version: number): Promise<number> {
    return this.messages.updateDocument(documentId, content, version);
  }

  createDocument(documentId: string, fields?: { title?: string; content?: string }): Promise<Document> {
    return this.messages.createDocument(documentId, fields);
  }

  shareDocument(documentId: string, userId: string, role: Role | 'none'): Promise<void> {
    return this.messages.shareDocument(documentId, userId, role);
  }

  createChat(chatId: string, options?: { private?: boolean; members?: string[] }): Promise<Chat> {
    return this.messages.createChat(chatId, options);
  }

  history(chatId: string, options?: HistoryOptions): Promise<HistoryAck> {
    return this.messages.history(chatId, options);
  }

  /** Round trip to the server; rejects at once when not connected. */
  async ping(timeoutMs?: number): Promise<string> {
    const options: RequestOptions = { offline: 'reject', early: true };
    if (timeoutMs !== undefined) options.timeoutMs = timeoutMs;
    return (await this.request('ping', {}, options)).server_time;
  }

  /** Any request of the protocol, typed by its event. */
  request<E extends RequestEvent>(event: E, data: RequestData<E>, options?: RequestOptions): Promise<AckData<E>> {
    return this.requests.request(event, data, options);
  }

  // ---- wiring --------------------------------------------------------------------------------

  private connected(data: ConnectData): void {
    const generation = ++this.generation;
    this.lastConnect = data;
    const session = {
      sessionId: data.session_id,
      userId: data.user_id,
      expiresAt: data.expires_at,
      heartbeatMs: data.heartbeat_ms,
      rooms: [],
      ...(data.name === undefined ? {} : { name: data.name }),
    };
    this.store.patch({ status: 'connected', session, reconnectAttempt: 0, error: null });
    this.requests.setConnected();
    this.emitter.emit('connect', data);
    this.connecting?.resolve(data);
    this.connecting = null;
    void this.rooms.onConnected().then(() => {
      if (generation === this.generation && this.socket.isConnected) this.requests.openGate();
    });
  }

  private frame(frame: IncomingFrame): void {
    if ((frame.event === 'ack' || frame.event === 'error') && frame.ref !== undefined && this.requests.settle(frame)) return;
    if (frame.event === 'session_update') {
      const data = frame.data as unknown as SessionUpdateData;
      this.tokens.expiresAt(data.expires_at);
      const session = this.store.get().session;
      if (session !== null) this.store.patch({ session: { ...session, expiresAt: data.expires_at, rooms: data.rooms } });
      this.emitter.emit('session_update', data);
      return;
    }
    if (this.rooms.handlePush(frame)) return;
    if (frame.event === 'error') {
      this.reportError(HuddleError.fromWire(frame.data, frame.ref === undefined ? {} : { ref: frame.ref }));
      return;
    }
    const push: HuddleEvents['push'] = { event: frame.event, data: frame.data };
    if (frame.room !== undefined) push.room = frame.room;
    this.emitter.emit('push', push);
  }

  private disconnected(code: number, reason: string, willReconnect: boolean): void {
    this.generation++;
    this.requests.connectionLost();
    this.rooms.onDisconnected();
    this.tokens.disconnected();
    if (willReconnect) this.store.patch({ status: 'reconnecting' });
    this.emitter.emit('disconnect', { code, reason, willReconnect });
  }

  private gaveUp(error: HuddleError): void {
    this.tokens.cancel();
    this.requests.fail(error);
    this.rooms.onGaveUp(error);
    this.store.patch({ status: 'closed', session: null, error });
    this.emitter.emit('error', error);
    this.connecting?.reject(error);
    this.connecting = null;
  }

  private reportError(error: HuddleError): void {
    this.store.patch({ error });
    this.emitter.emit('error', error);
  }
}

/** Shorthand for `new HuddleClient(options)`. */
export function createClient(options: HuddleClientOptions): HuddleClient {
  return new HuddleClient(options);
}

function resolveUrl(url: string | undefined): string {
  if (url === undefined) {
    const loc = (globalThis as { location?: { protocol: string; host: string } }).location;
    if (loc === undefined) throw new TypeError('HuddleClient: `url` is required outside a browser');
    return `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/ws`;
  }
  if (/^https?:\/\//.test(url)) {
    const ws = url.replace(/^http/, 'ws');
    return new URL(ws).pathname === '/' ? ws.replace(/\/?$/, '/ws') : ws;
  }
  return url;
}

function defaultWebSocket(): WebSocketConstructor {
  const ctor = (globalThis as { WebSocket?: unknown }).WebSocket;
  if (typeof ctor !== 'function') {
    throw new TypeError('HuddleClient: no global WebSocket; pass one as `options.WebSocket` (e.g. from the `ws` package)');
  }
  return ctor as WebSocketConstructor;
}
