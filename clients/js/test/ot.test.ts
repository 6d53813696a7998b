// Text operations: the vectors shared with the server's Rust module
// (tests/fixtures/ot-vectors.json), the forms only JavaScript can produce,
// and properties over random texts and operations (surrogate pairs included).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

import {
  HuddleError,
  applyOp,
  codePointLength,
  codePointOffset,
  codeUnitOffset,
  composeOps,
  diffOp,
  normalizeOp,
  parseOp,
  positionBefore,
  replaceAllOp,
  transformOp,
  transformPosition,
} from '../src/index.js';
import type { OpComponent, TextOp } from '../src/index.js';

interface Vectors {
  decode: { ops: unknown; normal: TextOp }[];
  invalid: { ops: unknown; why: string }[];
  apply: { doc: string; ops: TextOp; result: string }[];
  apply_invalid: { doc: string; ops: TextOp; why: string }[];
  compose: { doc: string; a: TextOp; b: TextOp; composed: TextOp; result: string }[];
  transform: { doc: string; left: TextOp; right: TextOp; left_after_right: TextOp; right_after_left: TextOp; result: string }[];
}

const vectors = JSON.parse(readFileSync(new URL('../../../../tests/fixtures/ot-vectors.json', import.meta.url), 'utf8')) as Vectors;

const isInvalidOps = (e: unknown): boolean => e instanceof HuddleError && e.code === 'INVALID_INPUT' && e.details.field === 'ops';

describe('shared vectors', () => {
  test('decode', () => {
    for (const v of vectors.decode) assert.deepEqual(parseOp(v.ops), v.normal, JSON.stringify(v));
    for (const v of vectors.invalid) assert.throws(() => parseOp(v.ops), isInvalidOps, v.why);
  });

  test('apply', () => {
    for (const v of vectors.apply) assert.equal(applyOp(v.doc, v.ops), v.result, JSON.stringify(v));
    for (const v of vectors.apply_invalid) assert.throws(() => applyOp(v.doc, v.ops), isInvalidOps, v.why);
  });

  test('compose', () => {
    for (const v of vectors.compose) {
      assert.deepEqual(composeOps(v.a, v.b), v.composed, JSON.stringify(v));
      assert.equal(applyOp(v.doc, v.composed), v.result);
      assert.equal(applyOp(applyOp(v.doc, v.a), v.b), v.result);
    }
  });

  test('transform', () => {
    for (const v of vectors.transform) {
      const left = transformOp(v.left, v.right, 'left');
      const right = transformOp(v.right, v.left, 'right');
      assert.deepEqual(left, v.left_after_right, JSON.stringify(v));
      assert.deepEqual(right, v.right_after_left, JSON.stringify(v));
      assert.equal(applyOp(applyOp(v.doc, v.right), left), v.result);
      assert.equal(applyOp(applyOp(v.doc, v.left), right), v.result);
    }
  });
});

describe('JavaScript-only forms', () => {
  test('a lone surrogate is refused (the server cannot read it)', () => {
    assert.throws(() => parseOp(['a\ud800']), isInvalidOps);
    assert.throws(() => parseOp(['\udc00b']), isInvalidOps);
    assert.deepEqual(parseOp(['😀']), ['😀']);
  });

  test('code points, not UTF-16 units', () => {
    assert.equal(codePointLength('a😀b'), 3);
    assert.equal(applyOp('😀😀', [1, { d: 1 }]), '😀');
    assert.throws(() => applyOp('😀', [2]), isInvalidOps);
  });

  test('inputs are never modified', () => {
    const a: TextOp = [1, { d: 1 }, 'x'];
    const b: TextOp = [{ d: 1 }, 2, 'y'];
    const copies = JSON.stringify([a, b]);
    composeOps(a, b);
    transformOp(a, b, 'left');
    normalizeOp(a);
    assert.equal(JSON.stringify([a, b]), copies);
  });

  test('a whole-content update is insert then delete all, as the server records it', () => {
    assert.deepEqual(replaceAllOp('hello', 'HELLO'), ['HELLO', { d: 5 }]);
    assert.deepEqual(replaceAllOp('', 'a'), ['a']);
    assert.deepEqual(replaceAllOp('😀', ''), [{ d: 1 }]);
  });

  test('diffOp keeps the common start and end, whole pairs only', () => {
    assert.deepEqual(diffOp('hello world', 'hello there world'), [6, 'there ']);
    assert.deepEqual(diffOp('abc', 'abc'), []);
    assert.deepEqual(diffOp('abc', ''), [{ d: 3 }]);
    // Same high surrogate, different low one: the whole pair is replaced.
    assert.deepEqual(diffOp('x😀', 'x😁'), [1, '😁', { d: 1 }]);
    assert.deepEqual(diffOp('😀a😀', '😀b😀'), [1, 'b', { d: 1 }]);
  });

  test('diffOp with a cursor puts the change where the caret says', () => {
    // Typing `a` between the letters of `aa`: the texts alone say "at the end".
    assert.deepEqual(diffOp('aa', 'aaa'), [2, 'a']);
    assert.deepEqual(diffOp('aa', 'aaa', 2), [1, 'a']);
    assert.deepEqual(diffOp('aa', 'aaa', 1), ['a']);
    // Backspace on the second of three: the caret is left at 1.
    assert.deepEqual(diffOp('aaa', 'aa', 1), [1, { d: 1 }]);
    assert.deepEqual(diffOp('😀😀', '😀😀😀', 1), ['😀']);
    // A cursor past the end or a change elsewhere still gives the right text.
    assert.equal(applyOp('abc', diffOp('abc', 'abXc', 99)), 'abXc');
    assert.equal(applyOp('abc', diffOp('abc', 'abXc', 0)), 'abXc');
  });

  test('a position moves over an operation; an insert at it moves only its author', () => {
    assert.equal(transformPosition(3, ['ab']), 5);
    assert.equal(transformPosition(3, [3, 'ab']), 3);
    assert.equal(transformPosition(3, [3, 'ab'], true), 5);
    assert.equal(transformPosition(3, [4, 'ab']), 3);
    assert.equal(transformPosition(3, [1, { d: 1 }]), 2);
    assert.equal(transformPosition(3, [1, { d: 5 }]), 1, 'deleted around it: where the deleted text was');
    assert.equal(transformPosition(3, [3, { d: 2 }]), 3);
    assert.equal(transformPosition(2, ['😀']), 3, 'code points');
    assert.equal(positionBefore(5, ['ab']), 3);
    assert.equal(positionBefore(1, ['ab']), 0, 'inside an insert: where it was made');
    assert.equal(positionBefore(5, [3, 'ab']), 3, 'right after an insert: where it was made');
    assert.equal(positionBefore(2, [1, 'x', { d: 4 }]), 1);
    assert.equal(positionBefore(4, [1, 'x', { d: 4 }]), 7);
  });

  test('code point and UTF-16 offsets', () => {
    assert.equal(codeUnitOffset('a😀b', 2), 3);
    assert.equal(codeUnitOffset('a😀b', 9), 4);
    assert.equal(codePointOffset('a😀b', 3), 2);
    assert.equal(codePointOffset('a😀b', 0), 0);
  });
});

// ---- properties over random texts and operations --------------------------------------------

/** A small deterministic PRNG (mulberry32), so that a failure can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ALPHABET = ['a', 'b', 'é', '中', '😀', '𝄞'];

function randomText(r: () => number, max: number): string {
  let s = '';
  const n = Math.floor(r() * max);
  for (let i = 0; i < n; i++) s += ALPHABET[Math.floor(r() * ALPHABET.length)];
  return s;
}

/** A random (not normalised) operation on a text of `len` code points. */
function randomOp(r: () => number, len: number): OpComponent[] {
  const op: OpComponent[] = [];
  let left = len;
  const steps = Math.floor(r() * 8);
  for (let i = 0; i < steps; i++) {
    const pick = r();
    if (pick < 0.35 && left > 0) {
      const n = 1 + Math.floor(r() * Math.min(left, 5));
      op.push(n);
      left -= n;
    } else if (pick < 0.6 && left > 0) {
      const n = 1 + Math.floor(r() * Math.min(left, 3));
      op.push({ d: n });
      left -= n;
    } else {
      const s = randomText(r, 4);
      if (s !== '') op.push(s);
    }
  }
  if (r() < 0.5 && left > 0) op.push(left);
  return op;
}

describe('properties', () => {
  const RUNS = 2_000;

  test('transform converges and compose agrees with applying in sequence', () => {
    const r = rng(12);
    for (let run = 0; run < RUNS; run++) {
      const doc = randomText(r, 12);
      const len = codePointLength(doc);
      const a = randomOp(r, len);
      const b = randomOp(r, len);
      const context = JSON.stringify({ run, doc, a, b });
      const viaB = applyOp(applyOp(doc, b), transformOp(a, b, 'left'));
      const viaA = applyOp(applyOp(doc, a), transformOp(b, a, 'right'));
      assert.equal(viaA, viaB, context);
      const mid = applyOp(doc, a);
      const c = randomOp(r, codePointLength(mid));
      assert.equal(applyOp(doc, composeOps(a, c)), applyOp(mid, c), `${context} c=${JSON.stringify(c)}`);
      assert.equal(applyOp(doc, normalizeOp(a)), mid, context);
    }
  });

  test('diffOp turns one text into the other without splitting pairs', () => {
    const r = rng(7);
    for (let run = 0; run < RUNS; run++) {
      const from = randomText(r, 10);
      const to = r() < 0.3 ? randomText(r, 10) : applyOp(from, randomOp(r, codePointLength(from)));
      const op = diffOp(from, to);
      assert.equal(applyOp(from, op), to, JSON.stringify({ from, to, op }));
      assert.deepEqual(parseOp(op), op, 'normal form, no lone surrogate');
      const cursor = Math.floor(r() * (codePointLength(to) + 2));
      const hinted = diffOp(from, to, cursor);
      assert.equal(applyOp(from, hinted), to, JSON.stringify({ from, to, cursor, hinted }));
      assert.deepEqual(parseOp(hinted), hinted);
    }
  });

  test('with the caret after an insert or at a deletion, diffOp finds that very edit', () => {
    const r = rng(3);
    for (let run = 0; run < RUNS; run++) {
      const from = randomText(r, 10);
      const len = codePointLength(from);
      const at = Math.floor(r() * (len + 1));
      const head = from.slice(0, codeUnitOffset(from, at));
      if (r() < 0.5) {
        const text = randomText(r, 4) || 'a';
        const op = diffOp(from, head + text + from.slice(head.length), at + codePointLength(text));
        assert.deepEqual(op, normalizeOp([at, text]), JSON.stringify({ from, at, text }));
      } else if (at < len) {
        const n = 1 + Math.floor(r() * (len - at));
        const op = diffOp(from, head + from.slice(codeUnitOffset(from, at + n)), at);
        assert.deepEqual(op, normalizeOp([at, { d: n }]), JSON.stringify({ from, at, n }));
      }
    }
  });

  test('transformPosition agrees with transforming an insert at the position', () => {
    const r = rng(5);
    const MARK = '|';
    for (let run = 0; run < RUNS; run++) {
      const doc = randomText(r, 12);
      const len = codePointLength(doc);
      const b = randomOp(r, len);
      const p = Math.floor(r() * (len + 1));
      const after = applyOp(doc, b);
      for (const [side, moves] of [['left', false], ['right', true]] as const) {
        const marked = applyOp(after, transformOp(normalizeOp([p, MARK]), b, side));
        const want = codePointOffset(marked, marked.indexOf(MARK));
        assert.equal(transformPosition(p, b, moves), want, JSON.stringify({ doc, b, p, side }));
      }
      // And back: a position after `b` comes from one that `b` moves around it.
      const q = Math.floor(r() * (codePointLength(after) + 1));
      const back = positionBefore(q, b);
      assert.ok(back >= 0 && back <= len, JSON.stringify({ doc, b, q, back }));
      assert.ok(transformPosition(back, b, false) <= q && q <= transformPosition(back, b, true), JSON.stringify({ doc, b, q, back }));
    }
  });
});
