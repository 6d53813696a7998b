// DocumentBinding: one document's text kept in step with the server by
// operational transformation, the classic client algorithm of ot.js and
// ShareDB. Local edits apply at once; one operation is in flight at a time
// and later edits wait, composed, in a buffer; an operation from another
// editor is transformed over both before it is applied to the local text.
//
// Everything the server says about the document is integrated in version
// order: `documents:op` pushes, `documents:updated` pushes (a whole-content
// update, which the server records as the operation replacing the content),
// the changes of a `since_version` rejoin, and the ack of our own operation
// (its version is ours, so it is never applied twice). Missing versions are
// fetched with `documents:history`.
//
// Reconnecting: the room is rejoined by the client's rejoin machinery with
// `since_version`. An operation that was in flight may or may not have been
// committed, so nothing is integrated until it has been sent again with the
// same `op_id`: the server answers with the original ack if it was, and
// commits it (transformed) if it was not. Then:
// - `recovered: true`: the missed changes are integrated as usual, ours
//   included as ours.
// - `recovered: false`, or `VERSION_CONFLICT` (too old to rebase), or an
//   operation that does not fit: the binding takes the server's current
//   content and rebases its pending edits onto it. The changes in between are
//   unknown, so they are stood in for by the difference between the text the
//   edits were made on and the current content; the edits are transformed
//   over that, so they survive (at the places the difference maps them to)
//   and nothing typed is dropped. `change` reports it with `source: 'resync'`.
// Only an operation the server refuses outright (PERMISSION_DENIED,
// INVALID_INPUT, PAYLOAD_TOO_LARGE, ...) drops local edits: every
// unacknowledged edit is undone (`change` with `source: 'rejected'`) and
// `error` carries the refusal and the dropped operation in `details.dropped`.
//
// Cursors: a position is shared as a place in the server's text at a version
// (`sharedPosition`), which every editor can move over the versions it
// integrated since and its own pending edits (`localPosition`); the last
// versions are remembered for that.

import type { RoomManager, Requester } from './rooms.js';
import { HuddleError } from './errors.js';
import { TypedEmitter } from './events.js';
import type { Listener } from './events.js';
import { newClientMsgId } from './messages.js';
import { applyOp, codePointLength, composeOps, diffOp, normalizeOp, opsEqual, parseOp, positionBefore, replaceAllOp, transformOp, transformPosition } from './ot.js';
import type { OpComponent, TextOp } from './ot.js';
import { roomName } from './protocol.js';
import type { AwarenessEntry, AwarenessState, DocumentJoinAck, PushMap, RoomName } from './protocol.js';
import type { RoomState } from './state.js';

/** Largest page `documents:history` returns (docs/protocol.md, "Operations"). */
const DOCUMENT_HISTORY_MAX = 1000;
/** Pause before resending an operation refused with SERVER_BUSY / RATE_LIMITED without `retry_after_ms`. */
const OP_BUSY_RETRY_MS = 1_000;
/**
 * Versions remembered to place positions others shared (`localPosition`).
 * A shared cursor is usually a few versions old when it arrives (awareness
 * overtakes operations, which wait for their commit); 256 covers seconds of
 * several people typing.
 */
const POSITION_LOG_VERSIONS = 256;
/** Characters inserted by the remembered versions, at most (a large paste is remembered alone). */
const POSITION_LOG_CHARS = 256 * 1024;

/**
 * A position in the server's text at `version`, in code points: what a
 * cursor shared with others says, since their texts differ from ours by
 * edits in flight. `sharedPosition` makes one, `localPosition` places one.
 */
export interface SharedPosition {
  version: number;
  position: number;
}

/**
 * Why the local text changed without a local edit: `remote` (another
 * editor's operation or update), `resync` (pending edits rebased onto content
 * reloaded from the server), `rejected` (the server refused local edits and
 * they were undone).
 */
export type TextChangeSource = 'remote' | 'resync' | 'rejected';

export interface TextChange {
  /** The operation on the previous local text; an editor applies it as is. */
  ops: TextOp;
  /** The local text after it. */
  text: string;
  /** The server version integrated so far. */
  version: number;
  source: TextChangeSource;
  /** The editor who made a `remote` change. */
  userId?: string;
}

export interface DocumentBindingEvents {
  change: TextChange;
  /** Every local edit has been acknowledged. */
  synced: { version: number };
  /** Local edits were refused (`details.dropped`), or the binding could not keep up. */
  error: HuddleError;
  /** The other connections' awareness states changed. */
  awareness: readonly AwarenessEntry[];
  /** The binding stopped (left, access revoked, client closed); `dropped`: edits never acknowledged. */
  closed: { error: HuddleError | null; dropped: TextOp };
}

/**
 * `joining` until the first content arrives; `live` in step with the server;
 * `recovering` while offline or resynchronising (local edits still apply and
 * are sent later); `closed`.
 */
export type BindingStatus = 'joining' | 'live' | 'recovering' | 'closed';

/** What the binding needs from the client. */
export interface BindingHost {
  request: Requester;
  rooms: RoomManager;
  onRoomState(listener: Listener<RoomState>): () => void;
  leave(documentId: string): Promise<void>;
  /** This connection's user, the author of our own versions. */
  userId(): string | undefined;
  /** The binding stopped: the client forgets it. */
  forget(binding: DocumentBinding): void;
}

interface Inflight {
  opId: string;
  /** Transformed over every version integrated since it was made. */
  ops: TextOp;
  /** Counts sends, so the answer to an older one is ignored. */
  attempt: number;
  /** Sent on the current connection and not answered yet. */
  sent: boolean;
  /** The version the server gave it, once known. */
  ackVersion?: number;
}

/** One integrated version, kept to move shared positions over it. */
interface LoggedVersion {
  version: number;
  ops: TextOp;
  userId: string | undefined;
  /** Characters it inserts. */
  size: number;
}

type Incoming =
  | { kind: 'op'; version: number; ops: TextOp; userId: string }
  | { kind: 'content'; version: number; content: string; userId: string }
  | { kind: 'own'; version: number; ops: TextOp | undefined };

export class DocumentBinding {
  readonly room: RoomName;
  /** Resolves once the first content has arrived. */
  readonly ready: Promise<DocumentBinding>;

  private readonly emitter = new TypedEmitter<DocumentBindingEvents>();
  private currentStatus: BindingStatus = 'joining';
  /** The server's text at `serverVersion`. */
  private serverText = '';
  private serverVersion: number | null = null;
  /** What the user sees: the server's text, then `inflight`, then `buffer`. */
  private localText = '';
  private inflight: Inflight | null = null;
  /** Local edits made after `inflight`, composed; null when none. */
  private buffer: TextOp | null = null;
  /** Server events not integrated yet, by version. */
  private readonly incoming = new Map<number, Incoming>();
  /** Joined on the current connection, so operations may be sent. */
  private joinedHere = false;
  /** After a rejoin: waiting for the in-flight operation's answer before integrating anything. */
  private awaitingFate = false;
  /** The content of a join that could not recover, applied once the in-flight operation's fate is known. */
  private snapshot: { content: string; version: number } | null = null;
  /** Our operation was committed at `version`, after the content we hold: `base` is what `buffer` was made on. */
  private committedUnseen: { version: number; base: string } | null = null;
  /** The next join must not ask for recovery (we need the current content). */
  private wantFresh = false;
  private fillingGap = false;
  private unsynced = false;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private lastAwareness: readonly AwarenessEntry[] = [];
  /** The last versions integrated, in order, for `localPosition`; none before `logStart`. */
  private readonly log: LoggedVersion[] = [];
  private logStart = 0;
  private logSize = 0;
  private readonly stopWatching: () => void;
  private resolveReady!: (binding: DocumentBinding) => void;
  private rejectReady!: (error: HuddleError) => void;

  constructor(
    readonly id: string,
    private readonly host: BindingHost,
  ) {
    this.room = roomName('document', id);
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => undefined);
    this.stopWatching = host.onRoomState((state) => {
      if (state.room !== this.room || state.awareness === this.lastAwareness) return;
      const changed = state.awareness.length > 0 || this.lastAwareness.length > 0;
      this.lastAwareness = state.awareness;
      if (changed) this.emitter.emit('awareness', state.awareness);
    });
    host.rooms.attachDocument(id, {
      sinceVersion: () => (this.wantFresh || this.serverVersion === null ? null : this.serverVersion),
      joined: (ack) => this.joined(ack),
      op: (data) => this.received({ kind: 'op', version: data.version, ops: data.ops, userId: data.user_id }),
      updated: (data: PushMap['documents:updated']) =>
        this.received({ kind: 'content', version: data.document.version, content: data.document.content, userId: data.user_id }),
      disconnected: () => this.disconnected(),
      ended: (error) => this.end(error),
    }).catch(() => undefined); // a refusal arrives through ended()
  }

  // ---- what the application reads ------------------------------------------------------

  /** The text as the user sees it: the server's, with local edits on top. */
  get text(): string {
    return this.localText;
  }

  /** The last server version integrated; `null` before the first content. */
  get version(): number | null {
    return this.serverVersion;
  }

  get status(): BindingStatus {
    return this.currentStatus;
  }

  /** True while some local edit is not acknowledged. */
  get pending(): boolean {
    return this.inflight !== null || this.buffer !== null;
  }

  /** The other connections' awareness states in this document. */
  get awareness(): readonly AwarenessEntry[] {
    return this.host.rooms.awareness.others(this.room);
  }

  on<K extends keyof DocumentBindingEvents>(event: K, listener: Listener<DocumentBindingEvents[K]>): () => void {
    return this.emitter.on(event, listener);
  }

  off<K extends keyof DocumentBindingEvents>(event: K, listener: Listener<DocumentBindingEvents[K]>): void {
    this.emitter.off(event, listener);
  }

  once<K extends keyof DocumentBindingEvents>(event: K, listener: Listener<DocumentBindingEvents[K]>): () => void {
    return this.emitter.once(event, listener);
  }

  // ---- local edits -------------------------------------------------------------------------

  /**
   * Applies a local edit (an operation on the current `text`, positions in
   * code points) and sends it. Throws INVALID_INPUT for an operation that
   * is malformed or does not fit the text, NOT_JOINED before the first
   * content or after `close()`.
   */
  apply(ops: readonly OpComponent[]): void {
    if (this.currentStatus === 'closed' || this.serverVersion === null) {
      throw new HuddleError('NOT_JOINED', `${this.room} is ${this.currentStatus === 'closed' ? 'closed' : 'not loaded yet'}`, { room: this.room });
    }
    const op = parseOp(ops);
    const next = applyOp(this.localText, op);
    if (op.length === 0) return;
    this.localText = next;
    this.buffer = this.buffer === null ? op : composeOps(this.buffer, op);
    this.unsynced = true;
    this.flush();
  }

  /** Inserts `text` at code point `position`. */
  insert(position: number, text: string): void {
    this.apply(position === 0 ? [text] : [position, text]);
  }

  /** Deletes `count` code points at `position`. */
  delete(position: number, count: number): void {
    this.apply(position === 0 ? [{ d: count }] : [position, { d: count }]);
  }

  /**
   * For editors that only give the new value: the difference from the
   * current text becomes the edit (the common start and end are kept).
   * `cursor`, the caret after the edit (code points in `text`), places the
   * change where the texts alone are ambiguous (typing into a run of one
   * letter). Returns the operation applied.
   */
  setText(text: string, cursor?: number): TextOp {
    const op = diffOp(this.localText, text, cursor);
    this.apply(op);
    return op;
  }

  // ---- positions others can place ---------------------------------------------------------

  /**
   * Where a position of the local text (code points) is in the server's
   * text: what to share (awareness) so that others can place it with
   * `localPosition`. A position in or after a pending insert goes to where
   * the insert was made; the insert moves it along again when it reaches
   * the others as its author's. `null` while the binding is not live.
   */
  sharedPosition(position: number): SharedPosition | null {
    if (this.currentStatus !== 'live' || this.awaitingFate || this.serverVersion === null) return null;
    const at = Math.min(Math.max(0, position), codePointLength(this.localText));
    return { version: this.serverVersion, position: positionBefore(at, this.pendingOps()) };
  }

  /**
   * Where a position another connection shared is in the local text now:
   * moved over the versions integrated since (an insert at it by `author`,
   * its owner, moves it along; anyone else's leaves it before) and over our
   * pending edits. `null` when the binding has not integrated that version
   * yet: try again after the next `change`. A position older than the
   * versions the binding remembers is taken as it was at the oldest one.
   */
  localPosition(shared: SharedPosition, author?: string): number | null {
    if (this.serverVersion === null || shared.version > this.serverVersion) return null;
    let at = Math.max(0, shared.position);
    for (const v of this.log) if (v.version > shared.version) at = transformPosition(at, v.ops, v.userId !== undefined && v.userId === author);
    at = Math.min(at, codePointLength(this.serverText));
    return transformPosition(at, this.pendingOps());
  }

  /** Our unacknowledged edits as one operation on the server's text. */
  private pendingOps(): TextOp {
    return composeOps(this.inflight?.ops ?? [], this.buffer ?? []);
  }

  /** Remembers an integrated version for `localPosition`; `null`: versions were skipped. */
  private remember(version: number, ops: TextOp | null, userId: string | undefined): void {
    if (ops === null) {
      this.log.length = 0;
      this.logSize = 0;
      this.logStart = version;
      return;
    }
    let size = 0;
    for (const c of ops) if (typeof c === 'string') size += c.length;
    this.log.push({ version, ops, userId, size });
    this.logSize += size;
    while (this.log.length > 1 && (this.log.length > POSITION_LOG_VERSIONS || this.logSize > POSITION_LOG_CHARS)) {
      const dropped = this.log.shift();
      if (dropped === undefined) break;
      this.logSize -= dropped.size;
      this.logStart = dropped.version;
    }
  }

  /** Shares (or with `null` clears) this connection's state: a cursor, a selection. */
  setAwareness(state: AwarenessState | null): Promise<void> {
    return this.host.rooms.awareness.set(this.room, state);
  }

  /** Leaves the document; unacknowledged edits are reported in `closed`. */
  async close(): Promise<void> {
    if (this.currentStatus === 'closed') return;
    this.end(null);
    await this.host.leave(this.id);
  }

  // ---- from the room ---------------------------------------------------------------------------

  private joined(ack: DocumentJoinAck): void {
    if (this.currentStatus === 'closed') return;
    this.joinedHere = true;
    this.wantFresh = false;
    if (this.serverVersion === null) {
      this.serverText = ack.document.content;
      this.localText = ack.document.content;
      this.serverVersion = ack.document.version;
      this.remember(ack.document.version, null, undefined);
      this.currentStatus = 'live';
      this.resolveReady(this);
      this.drain();
      return;
    }
    if (ack.recovered === true && Array.isArray(ack.changes)) {
      for (const c of ack.changes) this.queue({ kind: 'op', version: c.version, ops: c.ops, userId: c.user_id });
      this.snapshot = null;
    } else {
      this.snapshot = { content: ack.document.content, version: ack.document.version };
    }
    const inflight = this.inflight;
    if (inflight !== null && inflight.ackVersion === undefined) {
      // Committed or not? The same op_id again tells: nothing is
      // integrated before the answer.
      this.awaitingFate = true;
      this.currentStatus = 'recovering';
      this.sendInflight();
      return;
    }
    this.currentStatus = 'live';
    if (this.snapshot !== null && inflight !== null && inflight.ackVersion !== undefined) this.foldCommitted(inflight.ackVersion);
    this.settleSnapshot();
    this.drain();
  }

  private received(event: Incoming): void {
    if (this.currentStatus === 'closed') return;
    this.queue(event);
    this.drain();
  }

  private disconnected(): void {
    this.joinedHere = false;
    this.awaitingFate = false;
    if (this.inflight !== null) this.inflight.sent = false;
    clearTimeout(this.retryTimer);
    if (this.currentStatus === 'live') this.currentStatus = 'recovering';
  }

  private end(error: HuddleError | null): void {
    if (this.currentStatus === 'closed') return;
    const dropped = composeOps(this.inflight?.ops ?? [], this.buffer ?? []);
    this.currentStatus = 'closed';
    this.inflight = null;
    this.buffer = null;
    this.incoming.clear();
    clearTimeout(this.retryTimer);
    this.stopWatching();
    this.host.forget(this);
    this.rejectReady(error ?? new HuddleError('NOT_JOINED', `${this.room} was closed before it loaded`, { room: this.room }));
    this.emitter.emit('closed', { error, dropped });
  }

  // ---- integrating the server's versions, in order ---------------------------------------------

  private queue(event: Incoming): void {
    if (this.serverVersion !== null && event.version <= this.serverVersion) return;
    // Our ack takes the place of the same version seen as someone's change
    // (a recovered rejoin lists our own operation among the changes).
    if (event.kind === 'own' || !this.incoming.has(event.version)) this.incoming.set(event.version, event);
  }

  private drain(): void {
    if (this.currentStatus !== 'live' || this.awaitingFate || this.serverVersion === null) return;
    for (;;) {
      const event = this.incoming.get(this.serverVersion + 1);
      if (event === undefined) break;
      this.incoming.delete(event.version);
      try {
        this.integrate(event);
      } catch (err) {
        // An operation that does not fit our copy of the server's text: we
        // are out of step. Take the current content and rebase on it.
        this.emitter.emit('error', asError(err, this.room));
        this.reload();
        return;
      }
      if (this.currentStatus !== 'live') return;
    }
    for (const version of this.incoming.keys()) if (version <= this.serverVersion) this.incoming.delete(version);
    if (this.incoming.size > 0) this.fillGap();
    this.flush();
    if (this.unsynced && !this.pending) {
      this.unsynced = false;
      this.emitter.emit('synced', { version: this.serverVersion });
    }
  }

  private integrate(event: Incoming): void {
    if (event.kind === 'own') {
      this.confirm(event.version, event.ops);
      return;
    }
    const serverOp = event.kind === 'op' ? normalizeOp(event.ops) : replaceAllOp(this.serverText, event.content);
    // Transform the server's operation over our pending edits, and them over it.
    let local = serverOp;
    let inflightOps = this.inflight?.ops ?? null;
    let buffer = this.buffer;
    if (inflightOps !== null) {
      const o = inflightOps;
      inflightOps = transformOp(o, local, 'right');
      local = transformOp(local, o, 'left');
    }
    if (buffer !== null) {
      const b = buffer;
      buffer = transformOp(b, local, 'right');
      local = transformOp(local, b, 'left');
    }
    const serverText = applyOp(this.serverText, serverOp);
    const before = this.localText;
    const localText = applyOp(before, local);
    // A whole-content update moves positions as its smallest change would.
    this.remember(event.version, event.kind === 'content' ? diffOp(this.serverText, serverText) : serverOp, event.userId);
    this.serverText = serverText;
    this.serverVersion = event.version;
    this.localText = localText;
    if (this.inflight !== null && inflightOps !== null) this.inflight.ops = inflightOps;
    this.buffer = buffer !== null && buffer.length > 0 ? buffer : null;
    this.host.rooms.documentSaved(this.id, serverText, event.version, event.userId);
    // A whole-content update is reported as the smallest change, which
    // keeps an editor's cursors in place.
    const ops = event.kind === 'content' ? diffOp(before, localText) : local;
    this.emitChange(ops, 'remote', event.userId);
  }

  /** Our operation's ack, in its place among the versions. */
  private confirm(version: number, applied: TextOp | undefined): void {
    const inflight = this.inflight;
    if (inflight === null) throw new HuddleError('INTERNAL_ERROR', `an ack for version ${version} with nothing in flight`, { room: this.room });
    const ops = applied === undefined ? inflight.ops : normalizeOp(applied);
    const serverText = applyOp(this.serverText, ops);
    if (!opsEqual(ops, inflight.ops)) {
      // The server applied something else than we expected: move the
      // buffer onto what it did.
      this.rebaseBuffer(applyOp(this.serverText, inflight.ops), serverText);
    }
    this.remember(version, ops, this.host.userId());
    this.serverText = serverText;
    this.serverVersion = version;
    this.inflight = null;
    this.host.rooms.documentSaved(this.id, serverText, version, this.host.userId());
  }

  // ---- sending ------------------------------------------------------------------------------------

  private flush(): void {
    if (this.currentStatus !== 'live' || this.awaitingFate || !this.joinedHere) return;
    if (this.inflight !== null || this.buffer === null) return;
    this.inflight = { opId: newClientMsgId(), ops: this.buffer, attempt: 0, sent: false };
    this.buffer = null;
    this.sendInflight();
  }

  /** Sends the in-flight operation (again: the same `op_id` is never applied twice). */
  private sendInflight(): void {
    const inflight = this.inflight;
    if (inflight === null || this.serverVersion === null) return;
    const attempt = ++inflight.attempt;
    inflight.sent = true;
    clearTimeout(this.retryTimer);
    const data = { document_id: this.id, base_version: this.serverVersion, ops: inflight.ops, op_id: inflight.opId };
    this.host.request('documents:op', data, { offline: 'reject' }).then(
      (ack) => {
        if (this.inflight === inflight && inflight.attempt === attempt) this.acked(inflight, ack.version, ack.ops);
      },
      (error: HuddleError) => {
        if (this.inflight === inflight && inflight.attempt === attempt) this.refused(inflight, error);
      },
    );
  }

  private acked(inflight: Inflight, version: number, ops: TextOp | undefined): void {
    inflight.sent = false;
    inflight.ackVersion = version;
    if (this.awaitingFate) {
      this.awaitingFate = false;
      this.currentStatus = 'live';
      if (this.snapshot !== null) {
        this.foldCommitted(version);
        this.settleSnapshot();
        this.drain();
        return;
      }
    }
    this.queue({ kind: 'own', version, ops });
    this.drain();
  }

  private refused(inflight: Inflight, error: HuddleError): void {
    inflight.sent = false;
    switch (error.code) {
      case 'CONNECTION_LOST':
      case 'NOT_CONNECTED':
      case 'CLIENT_CLOSED':
      case 'MAX_RECONNECT_EXCEEDED':
        return; // sent again after the next join
      case 'TIMEOUT':
        this.sendInflight();
        return;
      case 'SERVER_BUSY':
      case 'RATE_LIMITED': {
        const wait = typeof error.details.retry_after_ms === 'number' ? error.details.retry_after_ms : OP_BUSY_RETRY_MS;
        this.retryTimer = setTimeout(() => this.sendInflight(), wait);
        return;
      }
      case 'NOT_JOINED':
        this.reload();
        return;
      case 'VERSION_CONFLICT': {
        // Not committed, and too old for the server to rebase: our edits
        // become local edits again, rebased onto the current content.
        this.inflight = null;
        this.buffer = this.buffer === null ? inflight.ops : composeOps(inflight.ops, this.buffer);
        if (this.awaitingFate) {
          this.awaitingFate = false;
          this.currentStatus = 'live';
          if (this.snapshot !== null) {
            this.settleSnapshot();
            this.drain();
            return;
          }
          if (this.incoming.size > 0) {
            // A recovered rejoin: the changes are exact, integrate them.
            this.drain();
            return;
          }
        }
        this.reload();
        return;
      }
      default:
        this.dropPending(error);
    }
  }

  /** The server refused our edits for good: undo every unacknowledged one. */
  private dropPending(error: HuddleError): void {
    const dropped = composeOps(this.inflight?.ops ?? [], this.buffer ?? []);
    this.inflight = null;
    this.buffer = null;
    this.unsynced = false;
    const undo = diffOp(this.localText, this.serverText);
    this.localText = this.serverText;
    if (undo.length > 0) this.emitChange(undo, 'rejected');
    this.emitter.emit('error', new HuddleError(error.code, error.message, { details: { ...error.details, dropped }, room: this.room, event: 'documents:op' }));
    if (this.awaitingFate) {
      this.awaitingFate = false;
      this.currentStatus = 'live';
      this.settleSnapshot();
    }
    // An internal error may hide a commit: look at the current content.
    if (error.code === 'INTERNAL_ERROR') this.reload();
    else this.drain();
  }

  // ---- resynchronising --------------------------------------------------------------------------------

  /** Asks for the current content; pending edits are rebased onto it when it arrives. */
  private reload(): void {
    if (this.currentStatus === 'closed') return;
    this.wantFresh = true;
    this.currentStatus = 'recovering';
    this.awaitingFate = false;
    this.host.rooms.reloadDocument(this.id);
  }

  /** Our acknowledged operation is part of the server's content from `version` on. */
  private foldCommitted(version: number): void {
    const inflight = this.inflight;
    if (inflight === null) return;
    this.committedUnseen = { version, base: applyOp(this.serverText, inflight.ops) };
    this.inflight = null;
    this.incoming.delete(version);
  }

  /** Takes a join's content (no recovery): pending edits are rebased onto it. */
  private settleSnapshot(): void {
    const snapshot = this.snapshot;
    if (snapshot === null || this.inflight !== null) return;
    this.snapshot = null;
    let base = this.serverText;
    if (this.committedUnseen !== null) {
      if (snapshot.version < this.committedUnseen.version) {
        this.reload(); // older than our own operation: look again
        return;
      }
      base = this.committedUnseen.base;
      this.committedUnseen = null;
    }
    this.rebaseBuffer(base, snapshot.content);
    this.serverText = snapshot.content;
    this.serverVersion = snapshot.version;
    this.remember(snapshot.version, null, undefined);
    for (const version of this.incoming.keys()) if (version <= snapshot.version) this.incoming.delete(version);
    this.host.rooms.documentSaved(this.id, snapshot.content, snapshot.version, undefined);
  }

  /**
   * The server's text moved from `from` (what `buffer` was made on) to `to`
   * by changes we do not have: the difference stands in for them, the buffer
   * is transformed over it and the local text follows.
   */
  private rebaseBuffer(from: string, to: string): void {
    const difference = diffOp(from, to);
    const buffer = this.buffer;
    const rebased = buffer === null ? null : transformOp(buffer, difference, 'right');
    const next = applyOp(to, rebased ?? []);
    let local = buffer === null ? difference : transformOp(difference, buffer, 'left');
    const before = this.localText;
    // Both roads lead to `next`; if the local text was not what we thought,
    // report the plain difference instead.
    try {
      if (applyOp(before, local) !== next) local = diffOp(before, next);
    } catch {
      local = diffOp(before, next);
    }
    this.buffer = rebased !== null && rebased.length > 0 ? rebased : null;
    this.localText = next;
    if (local.length > 0) this.emitChange(local, 'resync');
  }

  /** Fetches versions missing between ours and the next one received. */
  private fillGap(): void {
    if (this.fillingGap || !this.joinedHere || this.serverVersion === null) return;
    // The missing version may be our own operation's, whose ack is on its way.
    if (this.inflight !== null && this.inflight.ackVersion === undefined) return;
    const after = this.serverVersion;
    let next = Infinity;
    for (const version of this.incoming.keys()) next = Math.min(next, version);
    const limit = Math.min(DOCUMENT_HISTORY_MAX, next - after - 1);
    this.fillingGap = true;
    this.host.request('documents:history', { document_id: this.id, after_version: after, limit }, { offline: 'reject' }).then(
      (page) => {
        this.fillingGap = false;
        for (const c of page.changes) {
          if (c.version < next) this.queue({ kind: 'op', version: c.version, ops: c.ops, userId: c.user_id });
        }
        this.drain();
      },
      (error: HuddleError) => {
        this.fillingGap = false;
        if (error.code === 'CONNECTION_LOST' || error.code === 'NOT_CONNECTED' || error.code === 'CLIENT_CLOSED') return;
        this.reload();
      },
    );
  }

  private emitChange(ops: TextOp, source: TextChangeSource, userId?: string): void {
    const change: TextChange = { ops, text: this.localText, version: this.serverVersion ?? 0, source };
    if (userId !== undefined) change.userId = userId;
    this.emitter.emit('change', change);
  }
}

function asError(err: unknown, room: RoomName): HuddleError {
  if (err instanceof HuddleError) return new HuddleError(err.code, err.message, { details: err.details, room });
  return new HuddleError('INTERNAL_ERROR', String(err), { room });
}
