// The shared document's editor: a plain <textarea> kept in step with a
// DocumentBinding, and the other editors' cursors and selections drawn over
// it. Nothing here knows about the rest of the page.
//
// Typing: every `input` event becomes an operation (`setText` with the caret,
// so the change lands where it was typed). Others' edits arrive as `change`
// events; the textarea takes the new text and our caret and selection are
// moved over the operation, so typing goes on where it was.
//
// Cursors: ours is shared through the binding's awareness as
// `{name, color, version, anchor, head}`, positions in code points of the
// server's text at `version` (`sharedPosition`). Theirs are placed with
// `localPosition` when they arrive, then moved over every later change,
// theirs pushing their own cursor along. They are drawn with a mirror: a
// hidden div with the textarea's font, padding and width holds the same
// text, so a DOM Range over it measures where each character is.

import { codePointOffset, codeUnitOffset, transformPosition } from './huddle.js';

/** A stable color per user id: its hue comes from a hash of the id (FNV-1a). */
export function colorFor(userId) {
  let hash = 0x811c9dc5;
  for (let i = 0; i < userId.length; i++) {
    hash ^= userId.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hslToHex(hash % 360, 0.7, 0.42);
}

function hslToHex(h, s, l) {
  const k = (n) => (n + h / 30) % 12;
  const a = s * Math.min(l, 1 - l);
  const channel = (n) => Math.round(255 * (l - a * Math.max(-1, Math.min(k(n) - 3, 9 - k(n), 1))));
  return `#${[channel(0), channel(8), channel(4)].map((c) => c.toString(16).padStart(2, '0')).join('')}`;
}

const HEX_COLOR = /^#[0-9a-f]{6}$/i;
/** Longest name drawn on a cursor (the demo's names are at most 40). */
const MAX_LABEL_CHARS = 40;
/** Ends the mirror's text, so that a caret after a final newline has a line to stand on. */
const END_MARK = '\u200b';

function isHigh(unit) {
  return unit >= 0xd800 && unit <= 0xdbff;
}

function isLow(unit) {
  return unit >= 0xdc00 && unit <= 0xdfff;
}

/** A cursor state another page of this demo shares, or null for anything else. */
function cursorState(state) {
  if (state === null || typeof state !== 'object') return null;
  const { version, anchor, head } = state;
  if (![version, anchor, head].every((n) => Number.isSafeInteger(n) && n >= 0)) return null;
  return state;
}

export class SharedEditor {
  /**
   * @param {object} parts
   * @param {HTMLTextAreaElement} parts.textarea
   * @param {HTMLElement} parts.layer  where cursors are drawn, over the textarea
   * @param {HTMLElement} parts.mirror  hidden, for measuring
   * @param {{userId: string, name: string}} parts.me
   * @param {(userId: string) => string} parts.nameOf  a name when a state carries none
   * @param {() => void} parts.onEdit  after each local edit and remote change
   */
  constructor({ textarea, layer, mirror, me, nameOf, onEdit }) {
    this.textarea = textarea;
    this.layer = layer;
    this.mirror = mirror;
    this.me = me;
    this.nameOf = nameOf;
    this.onEdit = onEdit;
    /** @type {import('./huddle.js').DocumentBinding | null} */
    this.binding = null;
    this.unbind = [];
    /**
     * session_id -> {userId, name, color, state, placed, anchor, head, el}:
     * `anchor` and `head` are where the cursor is in our text (null until a
     * state is placed); `placed` is false while the latest state names a
     * version we have not integrated (the cursor stays where it was).
     */
    this.remote = new Map();
    /** The state we last shared. */
    this.shared = null;
    this.frame = 0;

    textarea.addEventListener('input', () => this.localEdit());
    // Caret moves: shared after the browser has moved it.
    for (const type of ['keydown', 'keyup', 'mouseup', 'select', 'focus']) {
      textarea.addEventListener(type, () => setTimeout(() => this.share(), 0));
    }
    textarea.addEventListener('scroll', () => this.draw());
    new ResizeObserver(() => this.draw()).observe(textarea);
  }

  /** Edits `binding`'s text from now on. */
  bind(binding) {
    this.release();
    this.binding = binding;
    this.unbind = [
      binding.on('change', (change) => this.remoteChange(change)),
      binding.on('awareness', (entries) => this.awareness(entries)),
      // Shared while our edits were pending, or not at all while offline: now exact.
      binding.on('synced', () => this.share()),
    ];
    this.textarea.value = binding.text;
    this.textarea.disabled = false;
    this.awareness(binding.awareness);
    this.share();
  }

  /** Stops editing (the binding closed). */
  release() {
    for (const off of this.unbind) off();
    this.unbind = [];
    this.binding = null;
    this.remote.clear();
    this.layer.replaceChildren();
    this.shared = null;
    this.textarea.disabled = true;
    this.draw();
  }

  /** The people whose cursors are shown: [{userId, name, color}]. */
  cursors() {
    return [...this.remote.values()].filter((c) => c.anchor !== null);
  }

  // ---- our edits and caret -------------------------------------------------------------

  localEdit() {
    const binding = this.binding;
    if (binding === null) return;
    const { value, selectionEnd } = this.textarea;
    if (value === binding.text) return;
    let op;
    try {
      op = binding.setText(value, codePointOffset(value, selectionEnd));
    } catch (err) {
      // Not loaded yet, or text the server would refuse (a NUL character):
      // the textarea goes back to the document's text.
      this.replaceText(binding.text, null);
      console.warn('edit not applied:', err.message);
      return;
    }
    for (const c of this.remote.values()) {
      if (c.anchor === null) continue;
      c.anchor = transformPosition(c.anchor, op);
      c.head = transformPosition(c.head, op);
    }
    this.draw();
    this.share();
    this.onEdit();
  }

  /** Tells the others where our caret and selection are. */
  share() {
    const binding = this.binding;
    if (binding === null || binding.status !== 'live' || document.activeElement !== this.textarea) return;
    const { value, selectionStart, selectionEnd, selectionDirection } = this.textarea;
    const start = binding.sharedPosition(codePointOffset(value, selectionStart));
    const end = binding.sharedPosition(codePointOffset(value, selectionEnd));
    if (start === null || end === null || start.version !== end.version) return;
    const backward = selectionDirection === 'backward';
    const state = {
      name: this.me.name,
      color: colorFor(this.me.userId),
      version: start.version,
      anchor: backward ? end.position : start.position,
      head: backward ? start.position : end.position,
    };
    const last = this.shared;
    if (last !== null && last.version === state.version && last.anchor === state.anchor && last.head === state.head) return;
    this.shared = state;
    // The library keeps the latest state and sends it again after a reconnect.
    binding.setAwareness(state).catch(() => undefined);
  }

  // ---- their edits and cursors -----------------------------------------------------------

  remoteChange({ ops, text, userId }) {
    const ta = this.textarea;
    const old = ta.value;
    let caret = null;
    if (this.binding !== null) {
      // Ours stays before an insert at it: two people typing at one place
      // keep their own runs.
      const start = transformPosition(codePointOffset(old, ta.selectionStart), ops);
      const end = transformPosition(codePointOffset(old, ta.selectionEnd), ops);
      caret = { start, end, direction: ta.selectionDirection };
    }
    this.replaceText(text, caret);
    for (const c of this.remote.values()) {
      if (c.anchor !== null) {
        const own = userId !== undefined && c.userId === userId;
        c.anchor = transformPosition(c.anchor, ops, own);
        c.head = transformPosition(c.head, ops, own);
      }
      if (!c.placed) this.place(c);
    }
    this.draw();
    this.onEdit();
  }

  /** Sets the textarea's text, keeping the caret (code points) and the scroll position. */
  replaceText(text, caret) {
    const ta = this.textarea;
    if (ta.value === text) return;
    const { scrollTop, scrollLeft } = ta;
    const keepFocus = document.activeElement === ta;
    ta.value = text;
    if (caret !== null) ta.setSelectionRange(codeUnitOffset(text, caret.start), codeUnitOffset(text, caret.end), caret.direction);
    ta.scrollTop = scrollTop;
    ta.scrollLeft = scrollLeft;
    if (keepFocus && document.activeElement !== ta) ta.focus();
  }

  /** The others' awareness states changed (`entries`: all of them). */
  awareness(entries) {
    const seen = new Set();
    for (const entry of entries) {
      const state = cursorState(entry.state);
      if (state === null) continue;
      seen.add(entry.session_id);
      let cursor = this.remote.get(entry.session_id);
      if (cursor?.state === entry.state) continue;
      if (cursor === undefined) {
        cursor = { userId: entry.user_id, anchor: null, head: null, el: null };
        this.remote.set(entry.session_id, cursor);
      }
      cursor.name = typeof state.name === 'string' && state.name.trim() !== '' ? state.name.slice(0, MAX_LABEL_CHARS) : this.nameOf(entry.user_id);
      cursor.color = typeof state.color === 'string' && HEX_COLOR.test(state.color) ? state.color : colorFor(entry.user_id);
      cursor.state = entry.state;
      cursor.placed = false;
      this.place(cursor);
    }
    for (const [id, cursor] of [...this.remote]) {
      if (seen.has(id)) continue;
      cursor.el?.remove();
      this.remote.delete(id);
    }
    this.draw();
  }

  /** Places the latest state in our text, once we have integrated the version it names. */
  place(cursor) {
    if (this.binding === null) return;
    const { version, anchor, head } = cursor.state;
    const a = this.binding.localPosition({ version, position: anchor }, cursor.userId);
    const h = this.binding.localPosition({ version, position: head }, cursor.userId);
    if (a === null || h === null) return;
    cursor.anchor = a;
    cursor.head = h;
    cursor.placed = true;
  }

  // ---- drawing ---------------------------------------------------------------------------------

  /** Redraws the cursors at the next frame (many changes, one layout). */
  draw() {
    if (this.frame !== 0) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.paint();
    });
  }

  paint() {
    const ta = this.textarea;
    const placed = this.cursors();
    if (placed.length === 0 || ta.offsetParent === null) {
      for (const c of this.remote.values()) c.el?.remove();
      return;
    }
    // The layer covers the textarea's padding box; the mirror lays its text
    // out in a box of the same width, padding and font.
    const style = getComputedStyle(ta);
    Object.assign(this.layer.style, {
      left: `${ta.offsetLeft + ta.clientLeft}px`,
      top: `${ta.offsetTop + ta.clientTop}px`,
      width: `${ta.clientWidth}px`,
      height: `${ta.clientHeight}px`,
    });
    Object.assign(this.mirror.style, {
      width: `${ta.clientWidth}px`,
      padding: style.padding,
      font: style.font,
      lineHeight: style.lineHeight,
      letterSpacing: style.letterSpacing,
      tabSize: style.tabSize,
    });
    const text = ta.value + END_MARK;
    let node = this.mirror.firstChild;
    if (node === null || node.data !== text) {
      node = document.createTextNode(text);
      this.mirror.replaceChildren(node);
    }
    const origin = this.mirror.getBoundingClientRect();
    const dx = -origin.left - ta.scrollLeft;
    const dy = -origin.top - ta.scrollTop;
    const length = ta.value.length;
    for (const c of this.remote.values()) {
      if (c.anchor === null) continue;
      // One element per cursor, kept across frames: its caret, name and selection.
      if (c.el === null) {
        c.el = document.createElement('div');
        c.el.className = 'remote-cursor';
        c.el.dataset.userId = c.userId;
        c.caret = box('remote-caret');
        c.label = document.createElement('span');
        c.label.className = 'remote-name';
        c.caret.append(c.label);
        c.el.append(c.caret);
      }
      if (c.el.parentNode !== this.layer) this.layer.append(c.el);
      const a = Math.min(codeUnitOffset(ta.value, c.anchor), length);
      const h = Math.min(codeUnitOffset(ta.value, c.head), length);
      const selection = [];
      if (a !== h) {
        const range = document.createRange();
        range.setStart(node, Math.min(a, h));
        range.setEnd(node, Math.max(a, h));
        for (const r of range.getClientRects()) {
          if (r.width === 0) continue;
          const sel = box('remote-selection');
          place(sel, r.left + dx, r.top + dy, r.width, r.height);
          sel.style.background = `${c.color}33`;
          selection.push(sel);
        }
      }
      const at = caretRect(node, h);
      place(c.caret, at.left + dx, at.top + dy, 0, at.height);
      c.caret.style.borderColor = c.color;
      c.label.style.background = c.color;
      if (c.label.textContent !== c.name) c.label.textContent = c.name;
      // Above the caret, or below it on the first line.
      c.label.classList.toggle('below', at.top + dy < at.height);
      c.el.replaceChildren(...selection, c.caret);
    }
  }
}

function box(className) {
  const el = document.createElement('div');
  el.className = className;
  return el;
}

function place(el, left, top, width, height) {
  Object.assign(el.style, { left: `${left}px`, top: `${top}px`, width: `${width}px`, height: `${height}px` });
}

/**
 * Where a caret before UTF-16 offset `at` of the mirror's text stands. The
 * box of the next character says it (after a soft wrap, the caret is at the
 * start of the next line, as the textarea shows its own); before a newline,
 * the end of the previous character; on an empty line, the newline itself.
 */
function caretRect(node, at) {
  const text = node.data;
  const range = document.createRange();
  const next = text.charCodeAt(at);
  if (next !== 10) {
    range.setStart(node, at);
    range.setEnd(node, at + (isHigh(next) ? 2 : 1));
    const r = range.getClientRects()[0];
    if (r !== undefined) return { left: r.left, top: r.top, height: r.height };
  }
  const prev = text.charCodeAt(at - 1);
  if (at > 0 && prev !== 10) {
    range.setStart(node, at - (isLow(prev) && at > 1 ? 2 : 1));
    range.setEnd(node, at);
    const rects = range.getClientRects();
    const r = rects[rects.length - 1];
    if (r !== undefined) return { left: r.right, top: r.top, height: r.height };
  }
  range.setStart(node, at);
  range.setEnd(node, at + 1);
  const r = range.getBoundingClientRect();
  return { left: r.left, top: r.top, height: r.height };
}
