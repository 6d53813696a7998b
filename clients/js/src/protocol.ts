// The wire types of protocol version 1 (docs/protocol.md), as TypeScript
// sees them. Nothing in this file does I/O: it names the frames, the records
// inside them, and which ack answers which request, so the rest of the
// library can stay typed end to end.

import type { TextOp } from './ot.js';

/** The protocol version this library speaks (`connect.protocol`). */
export const PROTOCOL_VERSION = 1;

/**
 * JSON values one frame may hold (docs/protocol.md, section 8): the server
 * refuses a frame with more while it parses it, without `ref`, so the
 * client checks before sending and refuses such a request itself.
 */
export const MAX_FRAME_VALUES = 100_000;

/**
 * Counts the JSON values of `value` as the server does (every number,
 * string, boolean, null, array and object, nested ones too; keys do not
 * count), stopping once the count passes `limit`.
 */
export function countJsonValues(value: unknown, limit: number): number {
  let count = 0;
  const stack: unknown[] = [value];
  while (stack.length > 0 && count <= limit) {
    const v = stack.pop();
    if (v === undefined) continue; // dropped by JSON.stringify
    count += 1;
    if (Array.isArray(v)) {
      for (const item of v) stack.push(item === undefined ? null : item);
    } else if (v !== null && typeof v === 'object') {
      for (const item of Object.values(v)) stack.push(item);
    }
  }
  return count;
}

/** A request correlation id. The library only ever sends integers. */
export type Ref = string | number;

export type RoomKind = 'document' | 'chat';
/** `document:<id>` or `chat:<id>`. */
export type RoomName = `${RoomKind}:${string}`;

/** Error codes the server sends (docs/protocol.md, "Errors"). */
export type ServerErrorCode =
  | 'UNAUTHENTICATED'
  | 'TOKEN_EXPIRED'
  | 'PERMISSION_DENIED'
  | 'NOT_FOUND'
  | 'INVALID_INPUT'
  | 'ALREADY_EXISTS'
  | 'VERSION_CONFLICT'
  | 'NOT_JOINED'
  | 'RATE_LIMITED'
  | 'LIMIT_EXCEEDED'
  | 'PAYLOAD_TOO_LARGE'
  | 'SERVER_BUSY'
  | 'INTERNAL_ERROR';

/** WebSocket close codes with a meaning in the protocol. */
export const CloseCode = {
  Normal: 1000,
  /** The server is shutting down: reconnect at once. */
  GoingAway: 1001,
  /** No close frame arrived (the browser's own code for a dropped socket). */
  Abnormal: 1006,
  InvalidUtf8: 1007,
  Policy: 1008,
  TooLarge: 1009,
  Internal: 1011,
  HeartbeatTimeout: 4000,
  /** Bad or expired token: reconnecting with the same token is pointless. */
  Unauthenticated: 4001,
  /** The client read too slowly: reconnect at once and recover. */
  SlowConsumer: 4008,
  RateLimitAbuse: 4029,
} as const;

export interface ErrorDetails {
  field?: string;
  current_version?: number;
  retry_after_ms?: number;
  limit?: string;
  incident?: string;
  [key: string]: unknown;
}

/** The `data` of an `error` frame. */
export interface WireError {
  code: string;
  message: string;
  details?: ErrorDetails;
}

export type Role = 'owner' | 'editor' | 'viewer';

export interface Document {
  id: string;
  title: string;
  content: string;
  version: number;
  updated_at: string;
  updated_by: string;
}

export interface Chat {
  id: string;
  private: boolean;
  created_at: string;
  created_by: string | null;
}

export interface Message {
  id: string;
  chat_id: string;
  /** Gapless per chat, starting at 1. */
  seq: number;
  user_id: string;
  content: string;
  created_at: string;
  client_msg_id?: string;
}

/** A user present in a room. */
export interface Member {
  user_id: string;
  name?: string;
  connections: number;
}

/** A user in a `presence:diff`'s `joined`. */
export interface JoinedUser {
  user_id: string;
  name?: string;
}

/** The ack of `presence:list`: one page of a room's users, in user id order. */
export interface PresencePage {
  members: Member[];
  has_more: boolean;
  member_count: number;
}

/** One version of a document's history: the operation that made it. */
export interface DocumentChange {
  version: number;
  /** A whole-content update is recorded as the operation that replaces the content. */
  ops: TextOp;
  user_id: string;
  created_at: string;
}

/** What a connection shares about itself in a room (a cursor, a selection, typing). */
export type AwarenessState = Record<string, unknown>;

/** Another connection's awareness state in a room. */
export interface AwarenessEntry {
  session_id: string;
  user_id: string;
  state: AwarenessState;
}

// ---- lifecycle -----------------------------------------------------------

export interface ConnectData {
  session_id: string;
  user_id: string;
  name?: string;
  /** RFC 3339; the token's `exp`. */
  expires_at: string;
  heartbeat_ms: number;
  protocol: number;
}

export interface SessionUpdateData {
  user_id: string;
  expires_at: string;
  rooms: RoomName[];
}

// ---- requests and their acks ----------------------------------------------

export interface DocumentJoinAck {
  room: RoomName;
  role: Role;
  document: Document;
  /** The first `presence_max_listed` users (by user id); `presence:list` pages the rest. */
  members: Member[];
  /** Users present, listed or not. */
  member_count: number;
  /** With `since_version`: the versions after it, when the server still has them. */
  changes?: DocumentChange[];
  /** True when `changes` holds every version after `since_version`. */
  recovered?: boolean;
  /** The other connections' awareness states. */
  awareness?: AwarenessEntry[];
}

export interface ChatJoinAck {
  room: RoomName;
  /** The first `presence_max_listed` users (by user id); `presence:list` pages the rest. */
  members: Member[];
  /** Users present, listed or not. */
  member_count: number;
  last_seq: number;
  messages: Message[];
  recovered: boolean;
  awareness?: AwarenessEntry[];
}

export interface HistoryAck {
  messages: Message[];
  has_more: boolean;
}

/**
 * Every request the client may send: its `data` and the `data` of the `ack`
 * that answers it. Declared once, so `request()` is typed for every event.
 */
export interface RequestMap {
  'auth:refresh': { data: { token: string }; ack: { expires_at: string } };
  ping: { data: Record<string, never>; ack: { server_time: string } };
  'documents:create': {
    data: { document_id: string; title?: string; content?: string };
    ack: { document: Document };
  };
  'documents:join': { data: { document_id: string; since_version?: number }; ack: DocumentJoinAck };
  'documents:op': {
    data: { document_id: string; base_version: number; ops: TextOp; op_id?: string };
    /** The version it created and the operation as applied (after transformation). */
    ack: { document_id: string; version: number; ops: TextOp };
  };
  'documents:history': {
    data: { document_id: string; after_version?: number; limit?: number };
    ack: { changes: DocumentChange[]; has_more: boolean };
  };
  'documents:snapshot': { data: { document_id: string; version: number }; ack: { document: Document } };
  'awareness:set': { data: { room: RoomName; state: AwarenessState | null }; ack: Record<string, never> };
  'documents:update': {
    data: { document_id: string; content: string; version: number };
    ack: { document_id: string; version: number };
  };
  'documents:leave': { data: { document_id: string }; ack: { room: RoomName } };
  'documents:share': {
    data: { document_id: string; user_id: string; role: Role | 'none' };
    ack: { document_id: string; user_id: string; role: Role | 'none' };
  };
  'chat:create': {
    data: { chat_id: string; private?: boolean; members?: string[] };
    ack: { chat: Chat };
  };
  'chat:join': { data: { chat_id: string; since_seq?: number }; ack: ChatJoinAck };
  'chat:message': {
    data: { chat_id: string; content: string; client_msg_id?: string };
    ack: { message: Message };
  };
  'chat:history': {
    data: { chat_id: string; before_seq?: number; limit?: number };
    ack: HistoryAck;
  };
  'chat:leave': { data: { chat_id: string }; ack: { room: RoomName } };
  'presence:list': { data: { room: RoomName; after_user_id?: string; limit?: number }; ack: PresencePage };
}

export type RequestEvent = keyof RequestMap;
export type RequestData<E extends RequestEvent> = RequestMap[E]['data'];
export type AckData<E extends RequestEvent> = RequestMap[E]['ack'];

// ---- pushes ------------------------------------------------------------

/** The `data` of every push the server sends about a room. */
export interface PushMap {
  'chat:message': { message: Message };
  'documents:updated': { document: Document; user_id: string };
  'documents:op': { document_id: string; version: number; ops: TextOp; user_id: string };
  /** `state: null`: the connection cleared it, left the room or disconnected. */
  awareness: { session_id: string; user_id: string; state: AwarenessState | null };
  'user:joined': { user_id: string; name?: string };
  'user:left': { user_id: string };
  /**
   * In a room above the server's `presence_max_instant` users, instead of
   * `user:joined` / `user:left`: who came and went since the last one, and
   * how many are present now. Apply it as set operations.
   */
  /**
   * `truncated`: the diff would have been long (a crowd arrived or left at
   * once), so it names nobody; `member_count` is still exact. Page
   * `presence:list` again to know who is there.
   */
  'presence:diff': { joined: JoinedUser[]; left: string[]; member_count: number; truncated?: boolean };
}

// ---- frames --------------------------------------------------------------

export interface OutgoingFrame {
  event: string;
  data: object;
  ref?: Ref;
}

/** Any frame from the server, checked only for the envelope's shape. */
export interface IncomingFrame {
  event: string;
  ref?: Ref;
  room?: string;
  data: Record<string, unknown>;
}

/** Reads one text frame; `null` when it is not a protocol envelope. */
export function parseFrame(text: string): IncomingFrame | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
  const obj = value as Record<string, unknown>;
  if (typeof obj.event !== 'string') return null;
  const data = obj.data;
  const frame: IncomingFrame = {
    event: obj.event,
    data: typeof data === 'object' && data !== null && !Array.isArray(data) ? (data as Record<string, unknown>) : {},
  };
  if (typeof obj.ref === 'string' || typeof obj.ref === 'number') frame.ref = obj.ref;
  if (typeof obj.room === 'string') frame.room = obj.room;
  return frame;
}

export function roomName(kind: RoomKind, id: string): RoomName {
  return `${kind}:${id}`;
}

/** Splits `chat:general` into its kind and id; `null` for anything else. */
export function parseRoomName(room: string): { kind: RoomKind; id: string } | null {
  const colon = room.indexOf(':');
  if (colon < 0) return null;
  const kind = room.slice(0, colon);
  if (kind !== 'document' && kind !== 'chat') return null;
  return { kind, id: room.slice(colon + 1) };
}
