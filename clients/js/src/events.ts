// The event stream: a small typed emitter and the map of every event the
// client announces. Listeners are typed per event; `onAny` sees all of them
// in order as one stream of `{type, payload}` records.

import type { HuddleError } from './errors.js';
import type {
  ConnectData,
  Document,
  Member,
  Message,
  PushMap,
  Role,
  RoomName,
  SessionUpdateData,
} from './protocol.js';
import type { ClientState, RoomState } from './state.js';

export interface DisconnectInfo {
  code: number;
  reason: string;
  /** False when the client stops here (4001 without a fresh token, `close()`). */
  willReconnect: boolean;
}

export interface ReconnectingInfo {
  /** 1 for the first attempt after a drop. */
  attempt: number;
  /** `null` when unlimited. */
  maxAttempts: number | null;
  /** `null` while the platform reports no network: the attempt waits for it. */
  delayMs: number | null;
}

/**
 * Where a chat message came from: `history` (the page a first join returns),
 * `live` (a push), or `recovery` (missed while disconnected, replayed by a
 * `since_seq` join or fetched to fill a gap). Every message is announced once.
 */
export type MessageSource = 'history' | 'live' | 'recovery';

export type RoomJoined =
  | {
      kind: 'document';
      room: RoomName;
      id: string;
      document: Document;
      role: Role;
      /** The first users by id (at most the server's `presence_max_listed`). */
      members: Member[];
      /** Users present, listed or not. */
      memberCount: number;
      /** True when this is the automatic rejoin after a reconnect. */
      rejoin: boolean;
      /** True when a `since_version` rejoin returned every missed change (bound documents). */
      recovered: boolean;
    }
  | {
      kind: 'chat';
      room: RoomName;
      id: string;
      members: Member[];
      memberCount: number;
      lastSeq: number;
      recovered: boolean;
      rejoin: boolean;
    };

export type RoomPush<E extends keyof PushMap> = PushMap[E] & { room: RoomName };

export interface HuddleEvents {
  connect: ConnectData;
  disconnect: DisconnectInfo;
  reconnecting: ReconnectingInfo;
  session_update: SessionUpdateData;
  room_joined: RoomJoined;
  room_state: RoomState;
  state: ClientState;
  error: HuddleError;
  'chat:message': RoomPush<'chat:message'> & { source: MessageSource };
  'documents:updated': RoomPush<'documents:updated'>;
  /** Another editor's operation, as the server applied it (a DocumentBinding applies it for you). */
  'documents:op': RoomPush<'documents:op'>;
  /** Another connection set or cleared (`state: null`) its awareness state. */
  awareness: RoomPush<'awareness'>;
  'user:joined': RoomPush<'user:joined'>;
  'user:left': RoomPush<'user:left'>;
  /** Presence of a large room, batched (instead of `user:joined` / `user:left`); the room's state has it applied. */
  'presence:diff': RoomPush<'presence:diff'>;
  /** A push this version of the library does not know (forward compatibility). */
  push: { event: string; room?: string; data: Record<string, unknown> };
}

export type Listener<T> = (payload: T) => void;

/** One record of the single event stream. */
export type AnyEvent<M> = { [K in keyof M]: { type: K; payload: M[K] } }[keyof M];

export class TypedEmitter<M extends object> {
  private readonly listeners = new Map<keyof M, Set<Listener<never>>>();
  private readonly anyListeners = new Set<Listener<AnyEvent<M>>>();

  /** Adds a listener; returns the function that removes it. */
  on<K extends keyof M>(event: K, listener: Listener<M[K]>): () => void {
    let set = this.listeners.get(event);
    if (set === undefined) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(listener as Listener<never>);
    return () => this.off(event, listener);
  }

  off<K extends keyof M>(event: K, listener: Listener<M[K]>): void {
    this.listeners.get(event)?.delete(listener as Listener<never>);
  }

  once<K extends keyof M>(event: K, listener: Listener<M[K]>): () => void {
    const off = this.on(event, (payload) => {
      off();
      listener(payload);
    });
    return off;
  }

  /** Every event, in the order emitted. */
  onAny(listener: Listener<AnyEvent<M>>): () => void {
    this.anyListeners.add(listener);
    return () => this.anyListeners.delete(listener);
  }

  /**
   * Resolves with the next payload of `event` that satisfies `predicate`,
   * rejects after `timeoutMs`.
   */
  waitFor<K extends keyof M>(
    event: K,
    predicate: (payload: M[K]) => boolean = () => true,
    timeoutMs = 10_000,
  ): Promise<M[K]> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${String(event)}`));
      }, timeoutMs);
      const off = this.on(event, (payload) => {
        if (!predicate(payload)) return;
        clearTimeout(timer);
        off();
        resolve(payload);
      });
    });
  }

  emit<K extends keyof M>(event: K, payload: M[K]): void {
    const set = this.listeners.get(event);
    if (set !== undefined) {
      for (const listener of [...set]) this.call(listener as Listener<M[K]>, payload);
    }
    const record = { type: event, payload } as AnyEvent<M>;
    for (const listener of [...this.anyListeners]) this.call(listener, record);
  }

  // A throwing listener must not break the client or the other listeners;
  // its exception is reported the way the platform reports uncaught errors.
  private call<T>(listener: Listener<T>, payload: T): void {
    try {
      listener(payload);
    } catch (err) {
      queueMicrotask(() => {
        throw err;
      });
    }
  }
}
