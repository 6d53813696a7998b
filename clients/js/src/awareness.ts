// Awareness: what each connection shares about itself in a room (a cursor, a
// selection, "typing"), never stored by the server. This file keeps the other
// connections' states per room (from the join ack and `awareness` pushes, in
// the room's state) and sends our own: the latest state wins, at most one
// `awareness:set` is in flight per room, and our state is set again after
// every rejoin, because the server forgets it with the connection. Spacing
// out the pushes to others (coalescing) is the server's job.

import { HuddleError } from './errors.js';
import type { AwarenessEntry, AwarenessState, PushMap, RoomName } from './protocol.js';
import type { Emit, Requester } from './rooms.js';
import type { RoomState, StateStore } from './state.js';

/** Where a room stands for awareness: joined now, wanted (joining), or not wanted. */
export type AwarenessRoomStatus = 'joined' | 'pending' | 'absent';

interface Waiter {
  resolve: () => void;
  reject: (error: HuddleError) => void;
}

interface OwnState {
  state: AwarenessState | null;
  /** The server has not been told `state` yet. */
  dirty: boolean;
  sending: boolean;
  /** `set` calls answered by the next successful send. */
  waiters: Waiter[];
}

/** Errors after which the state is simply sent again once the room is rejoined. */
function isConnectionError(error: HuddleError): boolean {
  return error.code === 'CONNECTION_LOST' || error.code === 'NOT_CONNECTED';
}

export class AwarenessManager {
  private readonly own = new Map<RoomName, OwnState>();

  constructor(
    private readonly request: Requester,
    private readonly state: StateStore,
    private readonly emit: Emit,
    private readonly roomStatus: (room: RoomName) => AwarenessRoomStatus,
  ) {}

  /**
   * Sets (or with `null` clears) this connection's state in a room the
   * client has joined or is joining. Resolves once the server has it (or a
   * newer one); while offline it waits for the rejoin.
   */
  set(room: RoomName, state: AwarenessState | null): Promise<void> {
    if (state !== null && (typeof state !== 'object' || Array.isArray(state))) {
      return Promise.reject(new HuddleError('INVALID_INPUT', 'an awareness state is a JSON object or null', { details: { field: 'state' }, room }));
    }
    if (this.roomStatus(room) === 'absent') {
      return Promise.reject(new HuddleError('NOT_JOINED', `join ${room} before setting awareness`, { room }));
    }
    let own = this.own.get(room);
    if (own === undefined) {
      own = { state: null, dirty: false, sending: false, waiters: [] };
      this.own.set(room, own);
    }
    own.state = state;
    own.dirty = true;
    const promise = new Promise<void>((resolve, reject) => own.waiters.push({ resolve, reject }));
    this.pump(room);
    return promise;
  }

  /** The other connections' states in a room. */
  others(room: RoomName): readonly AwarenessEntry[] {
    return this.state.room(room)?.awareness ?? [];
  }

  /** The room was joined (again): take the others' states, announce ours again. */
  joined(room: RoomName, entries: readonly AwarenessEntry[] | undefined): void {
    const others = (entries ?? []).filter((e) => e.state !== null && typeof e.state === 'object');
    this.state.updateRoom<RoomState>(room, (prev) => ({ ...prev, awareness: others }));
    const own = this.own.get(room);
    if (own !== undefined && (own.state !== null || own.waiters.length > 0)) {
      own.dirty = true;
      this.pump(room);
    }
  }

  /** An `awareness` push. */
  push(room: RoomName, data: PushMap['awareness']): void {
    this.state.updateRoom<RoomState>(room, (prev) => {
      const rest = prev.awareness.filter((e) => e.session_id !== data.session_id);
      if (data.state === null || typeof data.state !== 'object') return { ...prev, awareness: rest };
      return { ...prev, awareness: [...rest, { session_id: data.session_id, user_id: data.user_id, state: data.state }] };
    });
    this.emit('awareness', { ...data, room });
  }

  /** The room was left or refused: pending `set` calls fail, our state is forgotten. */
  forget(room: RoomName, error: HuddleError): void {
    const own = this.own.get(room);
    this.own.delete(room);
    for (const w of own?.waiters ?? []) w.reject(error);
  }

  private pump(room: RoomName): void {
    const own = this.own.get(room);
    if (own === undefined || own.sending || !own.dirty || this.roomStatus(room) !== 'joined') return;
    own.sending = true;
    own.dirty = false;
    const waiters = own.waiters.splice(0);
    this.request('awareness:set', { room, state: own.state }, { offline: 'reject' }).then(
      () => {
        own.sending = false;
        for (const w of waiters) w.resolve();
        this.pump(room);
      },
      (error: HuddleError) => {
        own.sending = false;
        if (isConnectionError(error)) {
          // Sent again by joined() after the rejoin.
          own.dirty = true;
          own.waiters.unshift(...waiters);
          return;
        }
        for (const w of waiters) w.reject(error);
        this.pump(room);
      },
    );
  }
}
