// Text operations (docs/protocol.md, "Operations"): the same functions as the
// server's `actors/src/ot/`, on the wire form itself. An operation is an
// array of components applied left to right from position 0: a positive
// integer keeps that many characters, a non-empty string inserts it,
// `{d: n}` deletes n characters; whatever the components do not reach is
// kept. Positions count Unicode code points, so a surrogate pair (an emoji)
// is one character, as on the server. Both implementations read the vectors
// in tests/fixtures/ot-vectors.json.
//
// Ties: when both operations insert at one position, `side` says whose
// text comes first: 'left' puts the operation being transformed first,
// 'right' after. What was committed first wins: the server rewrites an
// incoming operation with 'right' over committed ones, and a client
// rewrites its pending edits with 'right' over an incoming server
// operation, and the server operation with 'left' over its pending edits.
//
// Every function walks its inputs once (no re-counting a string from its
// start), so the cost is linear in the sizes of the texts and operations.

import { HuddleError } from './errors.js';

/** Keep `n` characters, insert a string, or delete `{d: n}` characters. */
export type OpComponent = number | string | { d: number };
/** A text operation in its wire form. */
export type TextOp = OpComponent[];
/** Which operation's insert goes first at one position (see above). */
export type OpSide = 'left' | 'right';

/** Largest total of kept and deleted characters (2^53 - 1, as the server). */
const MAX_OP_COUNT = Number.MAX_SAFE_INTEGER;

function invalidOp(message: string): HuddleError {
  return new HuddleError('INVALID_INPUT', message, { details: { field: 'ops' } });
}

function isHigh(unit: number): boolean {
  return unit >= 0xd800 && unit <= 0xdbff;
}

function isLow(unit: number): boolean {
  return unit >= 0xdc00 && unit <= 0xdfff;
}

/** UTF-16 index `n` code points after `from`, or -1 if the text ends first. */
function advance(text: string, from: number, n: number): number {
  let at = from;
  for (let i = 0; i < n; i++) {
    if (at >= text.length) return -1;
    at += isHigh(text.charCodeAt(at)) && at + 1 < text.length && isLow(text.charCodeAt(at + 1)) ? 2 : 1;
  }
  return at;
}

/** Length of a string in code points (a lone surrogate counts as one). */
export function codePointLength(text: string): number {
  let n = 0;
  for (let at = 0; at < text.length; n++) {
    at += isHigh(text.charCodeAt(at)) && at + 1 < text.length && isLow(text.charCodeAt(at + 1)) ? 2 : 1;
  }
  return n;
}

function hasLoneSurrogate(text: string): boolean {
  for (let at = 0; at < text.length; at++) {
    const unit = text.charCodeAt(at);
    if (isHigh(unit) && at + 1 < text.length && isLow(text.charCodeAt(at + 1))) at++;
    else if (isHigh(unit) || isLow(unit)) return true;
  }
  return false;
}

// ---- building normal forms -------------------------------------------------------------

/**
 * Collects components into the normal form: no zero or empty components,
 * adjacent components of one kind merged, an insert never right after a
 * delete (same effect, one form), no trailing keep.
 */
class OpBuilder {
  private readonly out: TextOp = [];

  keep(n: number): void {
    if (n <= 0) return;
    const last = this.out[this.out.length - 1];
    if (typeof last === 'number') this.out[this.out.length - 1] = last + n;
    else this.out.push(n);
  }

  delete(n: number): void {
    if (n <= 0) return;
    const last = this.out[this.out.length - 1];
    if (typeof last === 'object') this.out[this.out.length - 1] = { d: last.d + n };
    else this.out.push({ d: n });
  }

  insert(text: string): void {
    if (text === '') return;
    const out = this.out;
    const at = typeof out[out.length - 1] === 'object' ? out.length - 1 : out.length;
    const prev = out[at - 1];
    if (typeof prev === 'string') out[at - 1] = prev + text;
    else out.splice(at, 0, text);
  }

  finish(): TextOp {
    if (typeof this.out[this.out.length - 1] === 'number') this.out.pop();
    return this.out;
  }
}

/**
 * Checks an operation received as JSON and returns its normal form. Throws
 * a HuddleError INVALID_INPUT (field `ops`) for anything the server would
 * refuse: a count that is not a positive safe integer, an empty insert,
 * U+0000 or a lone surrogate in an insert, any other shape.
 */
export function parseOp(value: unknown): TextOp {
  if (!Array.isArray(value)) throw invalidOp('ops must be a list of components');
  const out = new OpBuilder();
  let total = 0;
  const count = (n: unknown, index: number): number => {
    if (typeof n !== 'number' || !Number.isInteger(n) || n <= 0) {
      throw invalidOp(`ops[${index}]: a keep or delete count must be a positive integer`);
    }
    total += n;
    if (!Number.isSafeInteger(n) || total > MAX_OP_COUNT) throw invalidOp(`ops[${index}]: counts add up to more than 2^53 - 1 characters`);
    return n;
  };
  value.forEach((item: unknown, index) => {
    if (typeof item === 'number') out.keep(count(item, index));
    else if (typeof item === 'string') {
      if (item === '') throw invalidOp(`ops[${index}]: an insert must not be empty`);
      if (item.includes('\0')) throw invalidOp(`ops[${index}]: inserted text must not contain U+0000`);
      if (hasLoneSurrogate(item)) throw invalidOp(`ops[${index}]: inserted text must not contain a lone surrogate`);
      out.insert(item);
    } else if (typeof item === 'object' && item !== null && !Array.isArray(item)) {
      const keys = Object.keys(item);
      if (keys.length !== 1 || keys[0] !== 'd') throw invalidOp(`ops[${index}]: a component is a positive integer, a non-empty string or {"d": n}`);
      out.delete(count((item as { d: unknown }).d, index));
    } else {
      throw invalidOp(`ops[${index}]: a component is a positive integer, a non-empty string or {"d": n}`);
    }
  });
  return out.finish();
}

/** The normal form of a well-formed operation (not checked: see parseOp). */
export function normalizeOp(op: readonly OpComponent[]): TextOp {
  const out = new OpBuilder();
  for (const c of op) {
    if (typeof c === 'number') out.keep(c);
    else if (typeof c === 'string') out.insert(c);
    else out.delete(c.d);
  }
  return out.finish();
}

/** The shortest text (in code points) an operation applies to: what it keeps and deletes. */
export function opBaseLength(op: readonly OpComponent[]): number {
  let n = 0;
  for (const c of op) {
    if (typeof c === 'number') n += c;
    else if (typeof c === 'object') n += c.d;
  }
  return n;
}

/** True when two operations are the same after normalisation. */
export function opsEqual(a: readonly OpComponent[], b: readonly OpComponent[]): boolean {
  const x = normalizeOp(a);
  const y = normalizeOp(b);
  if (x.length !== y.length) return false;
  return x.every((c, i) => {
    const d = y[i];
    return typeof c === 'object' ? typeof d === 'object' && c.d === d.d : c === d;
  });
}

// ---- apply, compose, transform ---------------------------------------------------------

/**
 * The text after `op`. Throws a HuddleError INVALID_INPUT when the operation
 * keeps and deletes more characters than `text` has.
 */
export function applyOp(text: string, op: readonly OpComponent[]): string {
  const parts: string[] = [];
  let at = 0;
  for (const c of op) {
    if (typeof c === 'string') {
      parts.push(c);
      continue;
    }
    const n = typeof c === 'number' ? c : c.d;
    const end = advance(text, at, n);
    if (end < 0) {
      throw invalidOp(`ops keep and delete ${opBaseLength(op)} characters but the document has ${codePointLength(text)}`);
    }
    if (typeof c === 'number') parts.push(text.slice(at, end));
    at = end;
  }
  parts.push(text.slice(at));
  return parts.join('');
}

type Kind = 'keep' | 'insert' | 'delete' | 'end';

/** A position inside an operation; splitting an insert walks it once. */
class OpCursor {
  private index = 0;
  /** Code points of the current component already taken. */
  private taken = 0;
  /** UTF-16 offset of `taken` in the current insert. */
  private offset = 0;
  /** Code point length of the current insert, counted once. */
  private length = -1;

  constructor(private readonly op: readonly OpComponent[]) {}

  kind(): Kind {
    const c = this.op[this.index];
    if (c === undefined) return 'end';
    return typeof c === 'number' ? 'keep' : typeof c === 'string' ? 'insert' : 'delete';
  }

  /** Code points left in the current component (Infinity at the end). */
  remaining(): number {
    const c = this.op[this.index];
    if (c === undefined) return Infinity;
    if (typeof c === 'number') return c - this.taken;
    if (typeof c === 'object') return c.d - this.taken;
    if (this.length < 0) this.length = codePointLength(c);
    return this.length - this.taken;
  }

  /** Takes up to `n` code points: a count, or the inserted text taken. */
  take(n: number): number | string {
    const c = this.op[this.index];
    if (c === undefined) return n;
    const k = Math.min(n, this.remaining());
    let piece: number | string = k;
    if (typeof c === 'string') {
      const end = this.taken + k === this.length ? c.length : advance(c, this.offset, k);
      piece = c.slice(this.offset, end);
      this.offset = end;
    }
    this.taken += k;
    if (this.remaining() === 0) {
      this.index += 1;
      this.taken = 0;
      this.offset = 0;
      this.length = -1;
    }
    return piece;
  }
}

/** One operation doing `a` then `b` (`b` made on the result of `a`). */
export function composeOps(a: readonly OpComponent[], b: readonly OpComponent[]): TextOp {
  const out = new OpBuilder();
  const ca = new OpCursor(a);
  const cb = new OpCursor(b);
  for (;;) {
    const ka = ca.kind();
    const kb = cb.kind();
    if (kb === 'insert') {
      out.insert(cb.take(Infinity) as string);
    } else if (ka === 'delete') {
      out.delete(ca.take(Infinity) as number);
    } else if (ka === 'end' && kb === 'end') {
      break;
    } else {
      const n = Math.min(ca.remaining(), cb.remaining());
      const piece = ca.take(n);
      cb.take(n);
      if (ka === 'insert') {
        if (kb !== 'delete') out.insert(piece as string);
      } else if (kb === 'delete') {
        out.delete(n);
      } else {
        out.keep(n);
      }
    }
  }
  return out.finish();
}

/**
 * `a`, made on the same text as `b`, rewritten to apply after `b`.
 * `applyOp(applyOp(t, b), transformOp(a, b, 'left'))` equals
 * `applyOp(applyOp(t, a), transformOp(b, a, 'right'))`.
 */
export function transformOp(a: readonly OpComponent[], b: readonly OpComponent[], side: OpSide): TextOp {
  const out = new OpBuilder();
  const ca = new OpCursor(a);
  const cb = new OpCursor(b);
  for (;;) {
    const ka = ca.kind();
    const kb = cb.kind();
    if (ka === 'insert' && (side === 'left' || kb !== 'insert')) {
      out.insert(ca.take(Infinity) as string);
    } else if (kb === 'insert') {
      out.keep(codePointLength(cb.take(Infinity) as string));
    } else if (ka === 'end' && kb === 'end') {
      break;
    } else {
      const n = Math.min(ca.remaining(), cb.remaining());
      ca.take(n);
      cb.take(n);
      if (kb === 'delete') continue; // b deleted it already
      if (ka === 'delete') out.delete(n);
      else out.keep(n);
    }
  }
  return out.finish();
}

/**
 * The operation a whole-content update is recorded as on the server: insert
 * `to`, delete all of `from` (the Rust module's `Operation::replace_all`).
 */
export function replaceAllOp(from: string, to: string): TextOp {
  return normalizeOp([to, { d: codePointLength(from) }]);
}

/**
 * The smallest operation turning `from` into `to`: the common start and end
 * are kept, the middle replaced. Never splits a surrogate pair.
 *
 * `cursor` (code points in `to`), when given, says where the change ends:
 * the caret of the editor that made it. It settles which characters
 * changed where the texts alone cannot tell: typing `a` between the two
 * letters of `aa` inserts at 1, not at the end, so a cursor elsewhere in the
 * text moves as the user expects.
 */
export function diffOp(from: string, to: string, cursor?: number): TextOp {
  const max = Math.min(from.length, to.length);
  let start = 0;
  let end = 0;
  if (cursor === undefined) {
    start = commonStart(from, to, max);
    end = commonEnd(from, to, max - start);
  } else {
    // The common end stops at the cursor; the start takes what is left.
    end = commonEnd(from, to, Math.min(max, to.length - codeUnitOffset(to, cursor)));
    start = commonStart(from, to, max - end);
  }
  const out = new OpBuilder();
  out.keep(codePointLength(from.slice(0, start)));
  out.delete(codePointLength(from.slice(start, from.length - end)));
  out.insert(to.slice(start, to.length - end));
  return out.finish();
}

/** UTF-16 units both texts start with (at most `max`), whole pairs only. */
function commonStart(a: string, b: string, max: number): number {
  let n = 0;
  while (n < max && a.charCodeAt(n) === b.charCodeAt(n)) n++;
  // Never cut between the halves of a pair: give the half back to the middle.
  if (n > 0 && isHigh(a.charCodeAt(n - 1))) n--;
  return n;
}

/** UTF-16 units both texts end with (at most `max`), whole pairs only. */
function commonEnd(a: string, b: string, max: number): number {
  let n = 0;
  while (n < max && a.charCodeAt(a.length - 1 - n) === b.charCodeAt(b.length - 1 - n)) n++;
  if (n > 0 && isLow(a.charCodeAt(a.length - n))) n--;
  return n;
}

// ---- positions: cursors and selections ----------------------------------------------------

/**
 * Where `position` (code points in the text `op` applies to) is in the text
 * after `op`. Inserts before it push it right, deletes before it pull it
 * left, and a delete around it leaves it where the deleted text was. An
 * insert exactly at `position` pushes it only with `moveWithInsert`: the
 * cursor of whoever typed the insert moves with it, anyone else's stays
 * before it (so two people typing at one place do not push each other).
 */
export function transformPosition(position: number, op: readonly OpComponent[], moveWithInsert = false): number {
  let moved = position;
  // Characters of the old text before `position` not walked yet.
  let before = position;
  for (const c of op) {
    if (typeof c === 'number') {
      before -= c;
    } else if (typeof c === 'string') {
      if (before > 0 || (before === 0 && moveWithInsert)) moved += codePointLength(c);
    } else {
      moved -= Math.min(Math.max(before, 0), c.d);
      before -= c.d;
    }
    if (before < 0) break;
  }
  return moved;
}

/**
 * Where `position` (code points in the text after `op`) was in the text
 * before it: the inverse of `transformPosition` where one exists. A
 * position in or right after inserted text goes back to where the insert
 * was made.
 */
export function positionBefore(position: number, op: readonly OpComponent[]): number {
  let old = 0;
  let now = 0;
  for (const c of op) {
    if (typeof c === 'number') {
      if (now + c >= position) return old + (position - now);
      old += c;
      now += c;
    } else if (typeof c === 'string') {
      const n = codePointLength(c);
      if (now + n >= position) return old;
      now += n;
    } else {
      old += c.d;
    }
  }
  return old + (position - now);
}

/**
 * The UTF-16 index of code point `position` in `text`: what a textarea's
 * `selectionStart` counts. Past the end: the text's length.
 */
export function codeUnitOffset(text: string, position: number): number {
  const at = advance(text, 0, Math.max(0, position));
  return at < 0 ? text.length : at;
}

/** The code point position of UTF-16 index `offset` in `text` (a textarea's `selectionStart`). */
export function codePointOffset(text: string, offset: number): number {
  return codePointLength(text.slice(0, Math.max(0, offset)));
}
