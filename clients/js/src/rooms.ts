// The room manager: which document and chat rooms the application wants to be
// in, joining them, and joining them again after every reconnect. Chats
// rejoin with `since_seq` = the last seq announced, and every chat message
// goes through one ordered pipeline per chat that drops what was already
// announced and fetches what is missing, so each message is announced exactly
// once and in seq order. Documents rejoin by reloading their state, or, when
// a DocumentBinding is attached (binding.ts), with `since_version` and the
// binding's recovery. Awareness states live beside the rooms (awareness.ts);
// the member lists follow presence.ts's rules.

import { AwarenessManager } from './awareness.js';
import type { AwarenessRoomStatus } from './awareness.js';
import { HuddleError } from './errors.js';
import type { HuddleEvents, MessageSource } from './events.js';
import { roomName } from './protocol.js';
import type {
  AckData,
  ChatJoinAck,
  Document,
  DocumentJoinAck,
  IncomingFrame,
  Message,
  PresencePage,
  PushMap,
  RequestData,
  RequestEvent,
  RoomName,
} from './protocol.js';
import type { RequestOptions } from './requests.js';
import { applyDiff, mergePage, withMember, withoutMember } from './presence.js';
import type { ChatRoomState, DocumentRoomState, RoomState, StateStore } from './state.js';

/**
 * What a DocumentBinding needs from its room: the joins (first, after each
 * reconnect, and reloads it asks for) and the document pushes, in order.
 */
export interface DocumentSync {
  /** The version to rejoin from (`since_version`), or null for a plain join. */
  sinceVersion(): number | null;
  joined(ack: DocumentJoinAck): void;
  op(data: PushMap['documents:op']): void;
  updated(data: PushMap['documents:updated']): void;
  /** The connection dropped; the room will be joined again. */
  disconnected(): void;
  /** The room was left (`null`), refused or revoked, or the client closed. */
  ended(error: HuddleError | null): void;
}

/** Largest page `chat:history` returns (docs/protocol.md, "History"). */
const HISTORY_PAGE_MAX = 100;

export type Requester = <E extends RequestEvent>(
  event: E,
  data: RequestData<E>,
  options?: RequestOptions,
) => Promise<AckData<E>>;

export type Emit = <K extends keyof HuddleEvents>(event: K, payload: HuddleEvents[K]) => void;

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (error: HuddleError) => void;
  settled: boolean;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: HuddleError) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // The caller may never await a join that we keep alive across reconnects.
  promise.catch(() => undefined);
  const d: Deferred<T> = {
    promise,
    settled: false,
    resolve: (value) => {
      d.settled = true;
      resolve(value);
    },
    reject: (error) => {
      d.settled = true;
      reject(error);
    },
  };
  return d;
}

interface ChatEntry {
  kind: 'chat';
  id: string;
  room: RoomName;
  /** Highest seq announced; `null` until the first join's answer. */
  lastSeq: number | null;
  /** Deliveries run one after the other: this is the tail of that line. */
  chain: Promise<void>;
  /** Settled by the first successful join (the caller's promise). */
  joined: Deferred<ChatJoinAck>;
  /** A join is in flight on the current connection. */
  joining: boolean;
}

interface DocumentEntry {
  kind: 'document';
  id: string;
  room: RoomName;
  joined: Deferred<DocumentJoinAck>;
  joining: boolean;
  everJoined: boolean;
  /** The binding kept in step with this room, if any. */
  sync?: DocumentSync;
}

type Entry = ChatEntry | DocumentEntry;

export class RoomManager {
  /** Rooms the application asked for and has not left, by room name. */
  private readonly entries = new Map<RoomName, Entry>();
  /** Unacknowledged sends per chat id (kept here so the room state can show them). */
  private readonly pending = new Map<string, number>();
  private connected = false;
  readonly awareness: AwarenessManager;

  constructor(
    private readonly request: Requester,
    private readonly state: StateStore,
    private readonly emit: Emit,
  ) {
    this.awareness = new AwarenessManager(request, state, emit, (room) => this.awarenessStatus(room));
  }

  // ---- what the application calls --------------------------------------------

  joinDocument(id: string): Promise<DocumentJoinAck> {
    const room = roomName('document', id);
    const existing = this.entries.get(room);
    if (existing?.kind === 'document') return existing.joined.promise;
    const entry: DocumentEntry = { kind: 'document', id, room, joined: deferred(), joining: false, everJoined: false };
    this.entries.set(room, entry);
    const initial: DocumentRoomState = {
      kind: 'document',
      room,
      id,
      status: 'joining',
      members: [],
      memberCount: 0,
      awareness: [],
      loading: true,
      error: null,
      document: null,
      version: null,
      role: null,
    };
    this.state.setRoom(room, initial);
    if (this.connected) this.sendDocumentJoin(entry);
    return entry.joined.promise;
  }

  joinChat(id: string): Promise<ChatJoinAck> {
    const room = roomName('chat', id);
    const existing = this.entries.get(room);
    if (existing?.kind === 'chat') return existing.joined.promise;
    const entry: ChatEntry = {
      kind: 'chat',
      id,
      room,
      lastSeq: null,
      chain: Promise.resolve(),
      joined: deferred(),
      joining: false,
    };
    this.entries.set(room, entry);
    const initial: ChatRoomState = {
      kind: 'chat',
      room,
      id,
      status: 'joining',
      members: [],
      memberCount: 0,
      awareness: [],
      loading: true,
      error: null,
      lastSeq: null,
      pending: this.pending.get(id) ?? 0,
    };
    this.state.setRoom(room, initial);
    if (this.connected) this.sendChatJoin(entry);
    return entry.joined.promise;
  }

  leaveDocument(id: string): Promise<void> {
    return this.leave(roomName('document', id), () => this.request('documents:leave', { document_id: id }, { offline: 'reject' }));
  }

  leaveChat(id: string): Promise<void> {
    return this.leave(roomName('chat', id), () => this.request('chat:leave', { chat_id: id }, { offline: 'reject' }));
  }

  /**
   * Joins a document (or keeps the join) with `sync` attached: it receives
   * every join ack and document push of the room from now on. A room joined
   * already is joined once more so that the binding starts from a fresh ack.
   */
  attachDocument(id: string, sync: DocumentSync): Promise<DocumentJoinAck> {
    const promise = this.joinDocument(id);
    const entry = this.entries.get(roomName('document', id));
    if (entry?.kind === 'document') {
      entry.sync = sync;
      if (entry.everJoined && !entry.joining) this.reloadDocument(id);
    }
    return promise;
  }

  /**
   * Joins an already joined document again without `since_version`, for a
   * binding that needs the current content. Offline, the rejoin after the
   * reconnect does it.
   */
  reloadDocument(id: string): void {
    const entry = this.entries.get(roomName('document', id));
    if (entry?.kind !== 'document' || !this.connected) return;
    this.request('documents:join', { document_id: id }, { early: true, offline: 'reject' }).then(
      (ack) => {
        if (this.entries.get(entry.room) === entry) this.documentJoined(entry, ack, true);
      },
      (error: HuddleError) => this.joinFailed(entry, error),
    );
  }

  /**
   * One page of a joined room's users, in user id order, after `afterUserId`
   * (from the first without it); `limit` 1 to 1000 (default 100). The page
   * is merged into the room's `members`, so paging to the end (`has_more`
   * false) leaves the whole list there, kept up to date by the pushes.
   */
  async presenceList(room: RoomName, options: { afterUserId?: string; limit?: number } = {}): Promise<PresencePage> {
    const data: RequestData<'presence:list'> = { room };
    if (options.afterUserId !== undefined) data.after_user_id = options.afterUserId;
    if (options.limit !== undefined) data.limit = options.limit;
    const page = await this.request('presence:list', data, { offline: 'reject' });
    this.state.updateRoom<RoomState>(room, (prev) => ({
      ...prev,
      members: mergePage(prev.members, page, options.afterUserId),
      memberCount: page.member_count,
    }));
    return page;
  }

  /** Last seq announced for a chat, `null` if unknown. */
  lastSeq(chatId: string): number | null {
    const entry = this.entries.get(roomName('chat', chatId));
    return entry?.kind === 'chat' ? entry.lastSeq : null;
  }

  // ---- connection lifecycle -----------------------------------------------------

  /**
   * Authenticated: join every wanted room (again). Resolves when each join
   * has been answered either way, which is when queued sends may go.
   */
  onConnected(): Promise<void> {
    this.connected = true;
    const joins: Promise<unknown>[] = [];
    for (const entry of this.entries.values()) {
      if (entry.kind === 'chat') joins.push(this.sendChatJoin(entry));
      else joins.push(this.sendDocumentJoin(entry));
    }
    return Promise.allSettled(joins).then(() => undefined);
  }

  onDisconnected(): void {
    this.connected = false;
    for (const entry of this.entries.values()) {
      entry.joining = false;
      if (entry.kind === 'document') entry.sync?.disconnected();
      this.state.updateRoom<RoomState>(entry.room, (prev) => ({
        ...prev,
        status: prev.status === 'joined' || prev.status === 'rejoining' ? 'rejoining' : 'joining',
        loading: true,
      }));
    }
  }

  /**
   * The client gave up reconnecting: pending joins fail, but the rooms stay
   * wanted, so a later `connect()` joins them again.
   */
  onGaveUp(error: HuddleError): void {
    this.connected = false;
    for (const entry of this.entries.values()) {
      entry.joining = false;
      if (!entry.joined.settled) entry.joined.reject(error);
      this.state.updateRoom<RoomState>(entry.room, (prev) => ({ ...prev, loading: false, error }));
    }
  }

  /** The client was closed: pending joins fail, rooms are forgotten. */
  onClosed(error: HuddleError): void {
    this.connected = false;
    for (const entry of this.entries.values()) {
      if (!entry.joined.settled) entry.joined.reject(error);
      this.ended(entry, error);
      this.state.setRoom(entry.room, undefined);
    }
    this.entries.clear();
  }

  // ---- frames from the server ----------------------------------------------------

  /** Handles a push or a room error; false if the frame is not about a known room event. */
  handlePush(frame: IncomingFrame): boolean {
    const room = frame.room as RoomName | undefined;
    if (room === undefined) return false;
    const entry = this.entries.get(room);
    switch (frame.event) {
      case 'chat:message': {
        const data = frame.data as unknown as PushMap['chat:message'];
        if (entry?.kind === 'chat') this.deliver(entry, [data.message], 'live');
        return true;
      }
      case 'documents:updated': {
        const data = frame.data as unknown as PushMap['documents:updated'];
        this.updateDocumentState(room, data.document);
        if (entry?.kind === 'document') entry.sync?.updated(data);
        this.emit('documents:updated', { ...data, room });
        return true;
      }
      case 'documents:op': {
        const data = frame.data as unknown as PushMap['documents:op'];
        if (entry?.kind === 'document') entry.sync?.op(data);
        this.emit('documents:op', { ...data, room });
        return true;
      }
      case 'awareness': {
        this.awareness.push(room, frame.data as unknown as PushMap['awareness']);
        return true;
      }
      case 'user:joined': {
        // Instant events are exact: one more user, one fewer.
        const data = frame.data as unknown as PushMap['user:joined'];
        this.state.updateRoom<RoomState>(room, (prev) => ({
          ...prev,
          members: withMember(prev.members, data.user_id, data.name),
          memberCount: prev.memberCount + 1,
        }));
        this.emit('user:joined', { ...data, room });
        return true;
      }
      case 'user:left': {
        const data = frame.data as unknown as PushMap['user:left'];
        this.state.updateRoom<RoomState>(room, (prev) => ({
          ...prev,
          members: withoutMember(prev.members, data.user_id),
          memberCount: Math.max(0, prev.memberCount - 1),
        }));
        this.emit('user:left', { ...data, room });
        return true;
      }
      case 'presence:diff': {
        const data = frame.data as unknown as PushMap['presence:diff'];
        this.state.updateRoom<RoomState>(room, (prev) => ({
          ...prev,
          // A truncated diff says only how many are present: the list is
          // no longer known (page it again with presenceList / loadMembers).
          members: data.truncated ? [] : applyDiff(prev.members, data),
          memberCount: data.member_count,
        }));
        this.emit('presence:diff', { ...data, room });
        return true;
      }
      case 'error': {
        // Access revoked (or another reason the server removed us): the room
        // is not joined any more and will not be joined again.
        const error = HuddleError.fromWire(frame.data, { room });
        if (entry !== undefined) this.drop(entry, error);
        this.emit('error', error);
        return true;
      }
      default:
        return false;
    }
  }

  // ---- used by the message manager ----------------------------------------------------

  adjustPending(chatId: string, delta: number): void {
    const count = Math.max(0, (this.pending.get(chatId) ?? 0) + delta);
    if (count === 0) this.pending.delete(chatId);
    else this.pending.set(chatId, count);
    this.state.updateRoom<RoomState>(roomName('chat', chatId), (prev) => (prev.kind === 'chat' ? { ...prev, pending: count } : prev));
  }

  /** Our own update was accepted: the room state moves to it. */
  documentSaved(documentId: string, content: string, version: number, userId: string | undefined): void {
    const room = roomName('document', documentId);
    const prev = this.state.room(room);
    if (prev?.kind !== 'document' || prev.document === null) return;
    this.updateDocumentState(room, {
      ...prev.document,
      content,
      version,
      updated_at: new Date().toISOString(),
      updated_by: userId ?? prev.document.updated_by,
    });
  }

  // ---- internals -------------------------------------------------------------------

  private sendChatJoin(entry: ChatEntry): Promise<unknown> {
    if (entry.joining) return Promise.resolve();
    entry.joining = true;
    const rejoin = entry.lastSeq !== null;
    const data: RequestData<'chat:join'> = { chat_id: entry.id };
    if (entry.lastSeq !== null) data.since_seq = entry.lastSeq;
    return this.request('chat:join', data, { early: true, offline: 'reject' }).then(
      (ack) => {
        if (this.entries.get(entry.room) !== entry) return;
        entry.joining = false;
        this.chatJoined(entry, ack, rejoin);
      },
      (error: HuddleError) => this.joinFailed(entry, error),
    );
  }

  private sendDocumentJoin(entry: DocumentEntry): Promise<unknown> {
    if (entry.joining) return Promise.resolve();
    entry.joining = true;
    const rejoin = entry.everJoined;
    const data: RequestData<'documents:join'> = { document_id: entry.id };
    const since = entry.sync?.sinceVersion() ?? null;
    if (since !== null) data.since_version = since;
    return this.request('documents:join', data, { early: true, offline: 'reject' }).then(
      (ack) => {
        if (this.entries.get(entry.room) !== entry) return;
        entry.joining = false;
        this.documentJoined(entry, ack, rejoin);
      },
      (error: HuddleError) => this.joinFailed(entry, error),
    );
  }

  private documentJoined(entry: DocumentEntry, ack: DocumentJoinAck, rejoin: boolean): void {
    entry.everJoined = true;
    this.state.updateRoom<DocumentRoomState>(entry.room, (prev) => ({
      ...prev,
      status: 'joined',
      loading: false,
      error: null,
      members: ack.members,
      memberCount: ack.member_count ?? ack.members.length,
      // A recovered rejoin's changes are what matters; keep the last
      // document if a server leaves it out there.
      document: ack.document ?? prev.document,
      version: ack.document?.version ?? prev.version,
      role: ack.role,
    }));
    entry.sync?.joined(ack);
    this.awareness.joined(entry.room, ack.awareness);
    this.emit('room_joined', {
      kind: 'document',
      room: entry.room,
      id: entry.id,
      document: ack.document,
      role: ack.role,
      members: ack.members,
      memberCount: ack.member_count ?? ack.members.length,
      rejoin,
      recovered: ack.recovered === true,
    });
    if (!entry.joined.settled) entry.joined.resolve(ack);
  }

  private chatJoined(entry: ChatEntry, ack: ChatJoinAck, rejoin: boolean): void {
    this.state.updateRoom<RoomState>(entry.room, (prev) => ({
      ...prev,
      status: 'joined',
      loading: false,
      error: null,
      members: ack.members,
      memberCount: ack.member_count ?? ack.members.length,
    }));
    this.awareness.joined(entry.room, ack.awareness);
    this.emit('room_joined', {
      kind: 'chat',
      room: entry.room,
      id: entry.id,
      members: ack.members,
      memberCount: ack.member_count ?? ack.members.length,
      lastSeq: ack.last_seq,
      recovered: ack.recovered,
      rejoin,
    });
    // The store was reset (the server knows fewer messages than we saw):
    // start over from what it has now rather than waiting for old seqs.
    const reset = entry.lastSeq !== null && ack.last_seq < entry.lastSeq;
    if (entry.lastSeq === null || reset) {
      const base = (ack.messages[0]?.seq ?? ack.last_seq + 1) - 1;
      entry.chain = entry.chain.then(() => {
        entry.lastSeq = base;
      });
      if (entry.lastSeq === null) entry.lastSeq = base;
      this.deliver(entry, ack.messages, 'history');
    } else {
      this.deliver(entry, ack.messages, 'recovery');
      // Messages newer than what the join returned (a page cut short) are
      // fetched by the gap logic when the next one arrives; make sure the
      // tail up to last_seq is fetched now, too.
      if (ack.messages.length === 0 || (ack.messages[ack.messages.length - 1]?.seq ?? 0) < ack.last_seq) {
        this.enqueue(entry, () => this.fillGap(entry, ack.last_seq + 1));
      }
    }
    if (!entry.joined.settled) entry.joined.resolve(ack);
  }

  private joinFailed(entry: Entry, error: HuddleError): void {
    entry.joining = false;
    if (this.entries.get(entry.room) !== entry) return;
    // Lost with the connection: the rejoin after the reconnect takes over.
    if (error.code === 'CONNECTION_LOST' || error.code === 'NOT_CONNECTED') return;
    if (error.code === 'CLIENT_CLOSED' || error.code === 'MAX_RECONNECT_EXCEEDED') return;
    this.drop(entry, error);
  }

  /** Forgets a room after a refusal; its state keeps the error. */
  private drop(entry: Entry, error: HuddleError): void {
    this.entries.delete(entry.room);
    if (!entry.joined.settled) entry.joined.reject(error);
    this.ended(entry, error);
    this.state.updateRoom<RoomState>(entry.room, (prev) => ({ ...prev, status: 'error', loading: false, error, members: [], memberCount: 0 }));
  }

  /** A room stops being wanted: its binding and awareness stop with it. */
  private ended(entry: Entry, error: HuddleError | null): void {
    this.awareness.forget(entry.room, error ?? new HuddleError('NOT_JOINED', `${entry.room} was left`, { room: entry.room }));
    if (entry.kind === 'document') entry.sync?.ended(error);
  }

  private awarenessStatus(room: RoomName): AwarenessRoomStatus {
    if (!this.entries.has(room)) return 'absent';
    return this.connected && this.state.room(room)?.status === 'joined' ? 'joined' : 'pending';
  }

  private async leave(room: RoomName, send: () => Promise<unknown>): Promise<void> {
    const entry = this.entries.get(room);
    this.entries.delete(room);
    if (entry !== undefined && !entry.joined.settled) {
      entry.joined.reject(new HuddleError('NOT_JOINED', `${room} was left before its join completed`, { room }));
    }
    if (entry !== undefined) this.ended(entry, null);
    this.state.updateRoom<RoomState>(room, (prev) => ({ ...prev, status: 'left', loading: false }));
    this.state.setRoom(room, undefined);
    if (!this.connected) return; // nothing to undo on the server: it will not be rejoined
    try {
      await send();
    } catch (err) {
      // Not joined on the server, or the connection went: the goal is met.
      if (err instanceof HuddleError && (err.code === 'NOT_JOINED' || err.code === 'CONNECTION_LOST' || err.code === 'NOT_CONNECTED')) return;
      throw err;
    }
  }

  private updateDocumentState(room: RoomName, document: Document): void {
    this.state.updateRoom<RoomState>(room, (prev) => {
      if (prev.kind !== 'document') return prev;
      if (prev.version !== null && document.version <= prev.version) return prev;
      return { ...prev, document, version: document.version };
    });
  }

  // ---- the per-chat delivery line ------------------------------------------------------

  private enqueue(entry: ChatEntry, step: () => Promise<void> | void): void {
    entry.chain = entry.chain.then(step).catch((err: unknown) => {
      const error = err instanceof HuddleError ? err : new HuddleError('INTERNAL_ERROR', String(err), { room: entry.room });
      // A fetch cut by a lost connection is redone by the rejoin's since_seq.
      if (error.code === 'CONNECTION_LOST' || error.code === 'NOT_CONNECTED' || error.code === 'CLIENT_CLOSED') return;
      this.state.updateRoom<RoomState>(entry.room, (prev) => ({ ...prev, error }));
      this.emit('error', error);
    });
  }

  private deliver(entry: ChatEntry, messages: readonly Message[], source: MessageSource): void {
    if (messages.length === 0) return;
    const sorted = [...messages].sort((a, b) => a.seq - b.seq);
    this.enqueue(entry, async () => {
      for (const message of sorted) {
        if (this.entries.get(entry.room) !== entry || entry.lastSeq === null) return;
        if (message.seq <= entry.lastSeq) continue; // already announced
        if (message.seq > entry.lastSeq + 1) await this.fillGap(entry, message.seq);
        if (this.entries.get(entry.room) !== entry) return;
        if (message.seq <= entry.lastSeq) continue;
        this.announce(entry, message, source);
      }
    });
  }

  /** Fetches and announces every message after `lastSeq` and before `untilSeq`. */
  private async fillGap(entry: ChatEntry, untilSeq: number): Promise<void> {
    if (entry.lastSeq === null) return;
    const from = entry.lastSeq + 1;
    const pages: Message[][] = [];
    let before = untilSeq;
    while (before > from) {
      const limit = Math.min(HISTORY_PAGE_MAX, before - from);
      const page = await this.request('chat:history', { chat_id: entry.id, before_seq: before, limit }, { early: true, offline: 'reject' });
      const wanted = page.messages.filter((m) => m.seq >= from && m.seq < before);
      pages.unshift(wanted);
      const oldest = wanted[0]?.seq;
      if (oldest === undefined || !page.has_more) break;
      before = oldest;
    }
    for (const message of pages.flat()) {
      if (this.entries.get(entry.room) !== entry) return;
      if (entry.lastSeq !== null && message.seq > entry.lastSeq) this.announce(entry, message, 'recovery');
    }
  }

  private announce(entry: ChatEntry, message: Message, source: MessageSource): void {
    entry.lastSeq = message.seq;
    this.state.updateRoom<RoomState>(entry.room, (prev) => (prev.kind === 'chat' ? { ...prev, lastSeq: message.seq } : prev));
    this.emit('chat:message', { room: entry.room, message, source });
  }
}
