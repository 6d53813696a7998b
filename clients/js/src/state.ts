// What the client knows right now: connection status, session, and per-room
// members, last seq, document version, loading and error. Snapshots are
// immutable: every change builds a new object and is announced, so a UI can
// compare by reference and never sees a half-applied update.

import type { HuddleError } from './errors.js';
import type { AwarenessEntry, Document, Member, Role, RoomName } from './protocol.js';

export type ConnectionStatus =
  /** Not started yet (`connect()` not called). */
  | 'idle'
  /** First connection attempt in progress. */
  | 'connecting'
  /** Authenticated; requests flow. */
  | 'connected'
  /** Dropped; waiting for or making the next attempt. */
  | 'reconnecting'
  /** Stopped for good: `close()`, gave up, or authentication refused. */
  | 'closed';

export interface Session {
  sessionId: string;
  userId: string;
  name?: string;
  /** RFC 3339, the current token's expiry. */
  expiresAt: string;
  heartbeatMs: number;
  /** Rooms the server says this connection has joined (from `session_update`). */
  rooms: RoomName[];
}

export type RoomStatus =
  /** First join in flight. */
  | 'joining'
  | 'joined'
  /** Connection lost; the room will be joined again after the reconnect. */
  | 'rejoining'
  /** Left by request (announced once, then removed from the state). */
  | 'left'
  /** Join refused or access revoked; not joined, not retried. */
  | 'error';

interface RoomBase {
  room: RoomName;
  id: string;
  status: RoomStatus;
  /**
   * Users known to be present, in user id order: the join ack's (at most the
   * server's `presence_max_listed`), those presence pushes announced since,
   * and pages loaded with `presenceList` / `loadMembers`.
   */
  members: readonly Member[];
  /** Users present, listed in `members` or not (the server's `member_count`). */
  memberCount: number;
  /** The other connections' awareness states, as of the last join and the pushes since. */
  awareness: readonly AwarenessEntry[];
  /** True while a join or rejoin is in flight. */
  loading: boolean;
  error: HuddleError | null;
}

export interface ChatRoomState extends RoomBase {
  kind: 'chat';
  /** Highest seq announced; `null` before the first join. */
  lastSeq: number | null;
  /** Messages sent but not yet acknowledged (queued while offline included). */
  pending: number;
}

export interface DocumentRoomState extends RoomBase {
  kind: 'document';
  /** The latest document known (content included); `null` before the first join. */
  document: Document | null;
  version: number | null;
  role: Role | null;
}

export type RoomState = ChatRoomState | DocumentRoomState;

export interface ClientState {
  status: ConnectionStatus;
  session: Session | null;
  /** Attempts made since the last successful connect (0 while connected). */
  reconnectAttempt: number;
  /** The last error announced on the client (not per request). */
  error: HuddleError | null;
  rooms: Readonly<Record<string, RoomState>>;
}

export type ConnectionPatch = Partial<Omit<ClientState, 'rooms'>>;

/** Holds the snapshot and announces every change through `announce`. */
export class StateStore {
  private current: ClientState = {
    status: 'idle',
    session: null,
    reconnectAttempt: 0,
    error: null,
    rooms: {},
  };

  constructor(private readonly announce: (state: ClientState, changedRoom: RoomState | null) => void) {}

  get(): ClientState {
    return this.current;
  }

  room(room: string): RoomState | undefined {
    return this.current.rooms[room];
  }

  patch(patch: ConnectionPatch): void {
    let changed = false;
    for (const key of Object.keys(patch) as (keyof ConnectionPatch)[]) {
      if (this.current[key] !== patch[key]) changed = true;
    }
    if (!changed) return;
    this.current = freeze({ ...this.current, ...patch });
    this.announce(this.current, null);
  }

  /** Replaces one room's state; `undefined` removes it. */
  setRoom(room: string, next: RoomState | undefined): void {
    const rooms: Record<string, RoomState> = { ...this.current.rooms };
    if (next === undefined) {
      if (!(room in rooms)) return;
      delete rooms[room];
    } else {
      rooms[room] = freeze(next);
    }
    this.current = freeze({ ...this.current, rooms: freeze(rooms) });
    if (next !== undefined) this.announce(this.current, rooms[room] ?? null);
    else this.announce(this.current, null);
  }

  /** Applies `change` to a room that exists; does nothing otherwise. */
  updateRoom<S extends RoomState>(room: string, change: (prev: S) => S): void {
    const prev = this.current.rooms[room] as S | undefined;
    if (prev === undefined) return;
    this.setRoom(room, change(prev));
  }
}

function freeze<T extends object>(value: T): T {
  return Object.freeze(value);
}

