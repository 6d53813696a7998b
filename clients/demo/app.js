// The demo page: choose a name, then edit one shared document and chat
// beside it. Everything goes through the client library (./huddle.js);
// this file only turns its events and state into DOM.
//
// The document is bound to the editor (./editor.js): every keystroke is an
// operation that the server merges with everyone else's, so several people
// type at once without conflicts, and each sees the others' cursors. The
// history lists the versions and shows any of them read-only. The chat says
// who is typing, from the others' awareness states in the chat room.

import { HuddleClient, newClientMsgId } from './huddle.js';
import { SharedEditor, colorFor } from './editor.js';

const params = new URLSearchParams(location.search);
/** The shared document and chat; `?doc=` and `?chat=` pick others. */
const DOC_ID = params.get('doc') || 'demo';
const CHAT_ID = params.get('chat') || 'demo';
const DOC_ROOM = `document:${DOC_ID}`;
const CHAT_ROOM = `chat:${CHAT_ID}`;
/** Pause in typing after which the chat stops saying "X is typing". */
const TYPING_PAUSE_MS = 2_000;
/** Versions one history request asks for: a screenful or two of the list. */
const HISTORY_PAGE = 25;
/** Versions the history list shows at most; older ones come back with "Show older". */
const HISTORY_MAX_LISTED = 500;
/** Inserted text shown in a history entry, at most. */
const HISTORY_PREVIEW_CHARS = 24;
/** User ids one `/demo/names` request may ask about (the server's limit). */
const NAMES_PER_REQUEST = 100;

const $ = (id) => document.getElementById(id);
const ui = {
  login: $('login'),
  loginForm: $('login-form'),
  name: $('name'),
  join: $('join'),
  loginError: $('login-error'),
  app: $('app'),
  who: $('who'),
  status: $('status'),
  retry: $('retry'),
  docText: $('doc-text'),
  docMirror: $('doc-mirror'),
  docCursors: $('doc-cursors'),
  editor: $('editor'),
  docOld: $('doc-old'),
  viewing: $('viewing'),
  viewingText: $('viewing-text'),
  backLive: $('back-live'),
  docVersion: $('doc-version'),
  docMembers: $('doc-members'),
  docCount: $('doc-count'),
  docStatus: $('doc-status'),
  historyToggle: $('history-toggle'),
  history: $('history'),
  historyList: $('history-list'),
  historyOlder: $('history-older'),
  historyNote: $('history-note'),
  chatMembers: $('chat-members'),
  chatCount: $('chat-count'),
  chatMessages: $('chat-messages'),
  chatOffline: $('chat-offline'),
  chatForm: $('chat-form'),
  chatInput: $('chat-input'),
  chatTyping: $('chat-typing'),
};

/** @type {HuddleClient | null} */
let client = null;
const me = { name: '', userId: '' };
/** user_id -> display name, learned from presence and from the server. */
const names = new Map();
/** Ids whose name was asked of the server (once each). */
const askedNames = new Set();
/** Ids to ask about in the next request. */
const unknownNames = new Set();

function nameOf(userId) {
  if (!names.has(userId)) askName(userId);
  return names.get(userId) ?? userId;
}

/** A name shown on the page; it follows what is learned about the user. */
function nameEl(userId) {
  const span = document.createElement('span');
  span.className = 'name';
  span.dataset.nameOf = userId;
  span.textContent = nameOf(userId);
  return span;
}

function learnName(userId, name) {
  if (!name || names.get(userId) === name) return;
  names.set(userId, name);
  for (const el of document.querySelectorAll('[data-name-of]')) {
    if (el.dataset.nameOf === userId) el.textContent = name;
  }
}

/**
 * People who left are not in presence: their names come from the demo
 * server, which remembers the name each token was given. Ids seen in one
 * burst (a join's messages) go in one request.
 */
function askName(userId) {
  if (askedNames.has(userId)) return;
  askedNames.add(userId);
  unknownNames.add(userId);
  if (unknownNames.size === 1) setTimeout(fetchNames, 0);
}

async function fetchNames() {
  const ids = [...unknownNames];
  unknownNames.clear();
  for (let i = 0; i < ids.length; i += NAMES_PER_REQUEST) {
    const query = ids.slice(i, i + NAMES_PER_REQUEST).map((id) => `user_id=${encodeURIComponent(id)}`).join('&');
    try {
      const res = await fetch(`/demo/names?${query}`);
      if (!res.ok) continue;
      const body = await res.json();
      for (const [id, name] of Object.entries(body.names ?? {})) learnName(id, name);
    } catch {
      // Unknown names stay shown as ids.
    }
  }
}

// ---- sign in ---------------------------------------------------------------------

async function fetchToken(name) {
  const res = await fetch('/demo/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    // The endpoint makes this user an editor of the document (creating it).
    body: JSON.stringify({ name, document_id: DOC_ID }),
  });
  const body = await res.json().catch(() => null);
  // The server says why (`{code, message}`): a name without letters, ...
  if (!res.ok) throw new Error(body?.message ?? `the token endpoint answered ${res.status}`);
  if (typeof body?.token !== 'string') throw new Error('the token endpoint sent no token');
  return body;
}

ui.loginForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const name = ui.name.value.trim();
  if (name === '') return;
  ui.join.disabled = true;
  ui.loginError.textContent = '';
  try {
    await start(name);
  } catch (err) {
    ui.loginError.textContent = `Could not join: ${err.message}`;
    ui.join.disabled = false;
    client?.close();
    client = null;
  }
});

async function start(name) {
  const first = await fetchToken(name);
  me.name = name;
  me.userId = first.user_id;
  learnName(me.userId, name);
  let unused = first.token;
  client = new HuddleClient({
    // The first token came with the sign-in; later ones (refresh before
    // expiry, or after a refusal) are fetched fresh.
    token: async () => {
      if (unused !== null) {
        const token = unused;
        unused = null;
        return token;
      }
      return (await fetchToken(name)).token;
    },
    reconnect: { maxAttempts: Infinity },
  });
  // For the curious (and the browser tests): the live client.
  window.huddleDemo = { client, editor };
  listen(client);
  await client.connect();
  ui.login.hidden = true;
  ui.app.hidden = false;
  ui.who.hidden = false;
  ui.who.textContent = name;
  document.title = `${name} · Huddle demo`;
  ui.chatInput.focus();
  await Promise.all([openDocument(), client.joinChat(CHAT_ID)]);
}

async function openDocument() {
  let opened;
  try {
    opened = await client.openDocument(DOC_ID);
  } catch (err) {
    if (err.code !== 'NOT_FOUND') throw err;
    // First visitor of a fresh server: create it, then join.
    await client.createDocument(DOC_ID, { title: 'Shared notes', content: '' }).catch((e) => {
      if (e.code !== 'ALREADY_EXISTS') throw e;
    });
    opened = await client.openDocument(DOC_ID);
  }
  bindDocument(opened);
}

// ---- connection status -------------------------------------------------------------

function listen(c) {
  c.on('state', renderStatus);
  c.on('room_state', (room) => {
    for (const m of room.members) learnName(m.user_id, m.name);
    if (room.room === DOC_ROOM) {
      renderMembers(ui.docMembers, ui.docCount, room);
      documentMoved(room);
    }
    if (room.room === CHAT_ROOM) {
      renderMembers(ui.chatMembers, ui.chatCount, room);
      renderTyping(room.awareness);
    }
  });
  c.on('user:joined', (u) => learnName(u.user_id, u.name));
  c.on('chat:message', (event) => {
    if (event.room === CHAT_ROOM) showMessage(event.message);
  });
  c.on('error', (error) => {
    if (error.room === DOC_ROOM) setDocStatus(`Document unavailable: ${error.message}`);
    else if (error.code === 'MAX_RECONNECT_EXCEEDED') setDocStatus('Gave up reconnecting. Use “Retry now”.');
  });
}

function renderStatus(state) {
  const labels = {
    idle: 'not connected',
    connecting: 'connecting…',
    connected: 'online',
    reconnecting: state.reconnectAttempt > 0 ? `reconnecting… (attempt ${state.reconnectAttempt})` : 'reconnecting…',
    closed: 'disconnected',
  };
  ui.status.dataset.status = state.status;
  ui.status.textContent = labels[state.status] ?? state.status;
  ui.retry.hidden = !(state.status === 'reconnecting' || state.status === 'closed') || client === null || ui.app.hidden;
  const online = state.status === 'connected';
  ui.chatOffline.hidden = online;
  ui.docMembers.classList.toggle('stale', !online);
  ui.chatMembers.classList.toggle('stale', !online);
  renderDocStatus();
}

ui.retry.addEventListener('click', () => client?.reconnectNow());

/**
 * The people in a room: the count is exact; in a large room the list shows
 * only those the server listed (the first by id) and the changes since.
 */
function renderMembers(list, count, room) {
  count.textContent = room.status === 'joined' ? `${room.memberCount} here` : '';
  count.dataset.count = String(room.memberCount);
  list.replaceChildren(
    ...room.members.map((m) => {
      const li = document.createElement('li');
      li.textContent = m.name ?? m.user_id;
      li.dataset.userId = m.user_id;
      // The color of the user's cursor in the document.
      li.style.setProperty('--user-color', colorFor(m.user_id));
      if (m.user_id === me.userId) li.classList.add('me');
      return li;
    }),
  );
}

// ---- the document ------------------------------------------------------------------

const editor = new SharedEditor({
  textarea: ui.docText,
  layer: ui.docCursors,
  mirror: ui.docMirror,
  me,
  nameOf,
  onEdit: renderDocStatus,
});
/** @type {import('./huddle.js').DocumentBinding | null} */
let binding = null;
/** Who made the version shown last ("v12 by Bob"), when it was not us. */
let lastAuthor = null;

function bindDocument(b) {
  binding = b;
  editor.bind(b);
  ui.docText.placeholder = 'Type here; everyone in the room sees it as you type.';
  const room = client.state.rooms[DOC_ROOM];
  const loaded = room?.kind === 'document' ? room.document : null;
  // Version 0 is the content the document was created with: nobody edited it.
  lastAuthor = loaded !== null && loaded !== undefined && loaded.version > 0 ? loaded.updated_by : null;
  b.on('change', ({ userId, source }) => {
    if (source === 'remote' && userId !== undefined) lastAuthor = userId;
    renderDocStatus();
  });
  b.on('synced', renderDocStatus);
  b.on('error', (err) => setDocStatus(`Not saved: ${err.message}`));
  b.on('closed', ({ error }) => {
    editor.release();
    binding = null;
    setDocStatus(`Document closed${error === null ? '' : `: ${error.message}`}`);
  });
  renderDocStatus();
}

/**
 * The status line under the document: text and names (`nameEl`). It is a
 * live region, so it changes only when what it says changes (the version is
 * in the header).
 */
function setDocStatus(...parts) {
  const key = parts.map((p) => (typeof p === 'string' ? p : `@${p.dataset.nameOf}`)).join('');
  if (ui.docStatus.dataset.key === key) return;
  ui.docStatus.dataset.key = key;
  ui.docStatus.replaceChildren(...parts);
}

function renderDocStatus() {
  if (binding === null) return;
  const online = client.state.status === 'connected';
  if (!online) {
    setDocStatus(binding.pending ? 'Offline: your edits are kept and sent when the connection is back.' : 'Offline');
  } else if (binding.pending) {
    setDocStatus('Saving…');
  } else if (lastAuthor !== null && lastAuthor !== me.userId) {
    setDocStatus('Saved · last edit by ', nameEl(lastAuthor));
  } else {
    setDocStatus('Saved');
  }
}

/** The document's room state changed: its version, and the history if it is open. */
function documentMoved(room) {
  const version = room.version ?? null;
  ui.docVersion.textContent = version === null ? 'v–' : `v${version}`;
  if (versions.open && version !== null && (versions.newest === null || version > versions.newest)) loadNewer();
}

ui.docText.addEventListener('input', () => {
  lastAuthor = me.userId;
});

// ---- versions: the history list and a read-only view ---------------------------------

const versions = {
  open: false,
  /** Listed versions: their <li>, newest first in the list. */
  items: new Map(),
  /** The oldest and newest versions listed (null: none yet). */
  oldest: null,
  newest: null,
  /** One request at a time; a newer one is asked for after it. */
  loading: false,
  wantNewer: false,
  /** The version shown read-only, or null for the live document. */
  viewing: null,
  /** Counts snapshot requests, so that only the last one's answer is shown. */
  asked: 0,
};

ui.historyToggle.addEventListener('click', () => (versions.open ? closeHistory() : openHistory()));

function openHistory() {
  versions.open = true;
  ui.history.hidden = false;
  ui.historyToggle.setAttribute('aria-expanded', 'true');
  versions.items.clear();
  versions.oldest = null;
  versions.newest = null;
  ui.historyList.replaceChildren();
  ui.historyNote.textContent = '';
  loadOlder().then(() => ui.historyList.querySelector('button')?.focus());
}

function closeHistory() {
  versions.open = false;
  ui.history.hidden = true;
  ui.historyToggle.setAttribute('aria-expanded', 'false');
  backToLive();
}

/** A history request; failures are said in the list's note. */
async function historyPage(afterVersion, limit) {
  try {
    return await client.request('documents:history', { document_id: DOC_ID, after_version: afterVersion, limit });
  } catch (err) {
    ui.historyNote.textContent = err.code === 'NOT_FOUND' ? err.message : `Could not load the history: ${err.message}`;
    return null;
  }
}

/** The page of versions before the oldest listed (or the newest page). */
async function loadOlder() {
  if (versions.loading || binding === null) return;
  versions.loading = true;
  ui.historyOlder.hidden = true;
  const upTo = versions.oldest === null ? (binding.version ?? 0) : versions.oldest - 1;
  const after = Math.max(0, upTo - HISTORY_PAGE);
  if (versions.newest === null) versions.newest = upTo;
  const page = upTo > after ? await historyPage(after, upTo - after) : { changes: [] };
  versions.loading = false;
  if (page === null || !versions.open) return;
  for (const change of [...page.changes].reverse()) listVersion(change, 'end');
  versions.oldest = after + 1;
  if (after === 0) {
    // Version 0: the content the document was created with.
    listVersion({ version: 0, ops: [], user_id: null, created_at: null }, 'end');
    versions.oldest = 0;
  }
  ui.historyOlder.hidden = versions.oldest === 0;
  if (versions.wantNewer) loadNewer();
}

/** Versions after the newest listed, put at the top. */
async function loadNewer() {
  if (versions.loading || versions.newest === null) {
    versions.wantNewer = true;
    return;
  }
  versions.wantNewer = false;
  versions.loading = true;
  const page = await historyPage(versions.newest, HISTORY_PAGE);
  versions.loading = false;
  if (page === null || !versions.open) return;
  for (const change of page.changes) {
    listVersion(change, 'start');
    versions.newest = Math.max(versions.newest, change.version);
  }
  // A long list loses its oldest entries; "Show older" brings them back.
  while (versions.items.size > HISTORY_MAX_LISTED) {
    versions.items.get(versions.oldest)?.remove();
    versions.items.delete(versions.oldest);
    versions.oldest += 1;
    ui.historyOlder.hidden = false;
  }
  if (page.has_more || versions.wantNewer) loadNewer();
}

function listVersion(change, where) {
  if (versions.items.has(change.version)) return;
  const li = document.createElement('li');
  const button = document.createElement('button');
  button.type = 'button';
  button.dataset.version = String(change.version);
  button.setAttribute('aria-pressed', String(versions.viewing === change.version));
  const head = document.createElement('span');
  head.className = 'history-head';
  head.append(`v${change.version}`);
  if (change.user_id !== null) head.append(' · ', nameEl(change.user_id));
  if (change.created_at !== null) head.append(` · ${clock(change.created_at, true)}`);
  const what = document.createElement('span');
  what.className = 'history-what';
  what.textContent = change.version === 0 ? 'created' : describeOps(change.ops);
  button.append(head, what);
  button.addEventListener('click', () => viewVersion(change.version));
  li.append(button);
  versions.items.set(change.version, li);
  if (where === 'start') ui.historyList.prepend(li);
  else ui.historyList.append(li);
}

/** What an operation did, in a few words: `+"abc" −2`. */
function describeOps(ops) {
  let inserted = '';
  let deleted = 0;
  for (const c of ops) {
    if (typeof c === 'string') inserted += c;
    else if (typeof c === 'object') deleted += c.d;
  }
  const parts = [];
  if (inserted !== '') {
    const chars = [...inserted];
    const shown = chars.slice(0, HISTORY_PREVIEW_CHARS).join('').replace(/\n/g, '⏎');
    parts.push(`+“${shown}${chars.length > HISTORY_PREVIEW_CHARS ? '…' : ''}”`);
  }
  if (deleted > 0) parts.push(`−${deleted}`);
  return parts.join(' ') || 'no change';
}

// Up and down move between the versions.
ui.historyList.addEventListener('keydown', (event) => {
  if (event.key !== 'ArrowDown' && event.key !== 'ArrowUp') return;
  const buttons = [...ui.historyList.querySelectorAll('button')];
  const at = buttons.indexOf(document.activeElement);
  const next = buttons[at + (event.key === 'ArrowDown' ? 1 : -1)];
  if (next === undefined) return;
  event.preventDefault();
  next.focus();
});

ui.historyOlder.addEventListener('click', () => loadOlder());

async function viewVersion(version) {
  const asked = ++versions.asked;
  let document;
  try {
    ({ document } = await client.request('documents:snapshot', { document_id: DOC_ID, version }));
  } catch (err) {
    if (asked === versions.asked) setDocStatus(`Could not show version ${version}: ${err.message}`);
    return;
  }
  if (asked !== versions.asked || !versions.open) return;
  versions.viewing = version;
  for (const [v, li] of versions.items) li.firstChild.setAttribute('aria-pressed', String(v === version));
  ui.docOld.value = document.content;
  ui.viewingText.replaceChildren(`Version ${version}`, ' · ', nameEl(document.updated_by), ` · ${clock(document.updated_at, true)} · read-only`);
  ui.viewing.hidden = false;
  ui.docOld.hidden = false;
  ui.editor.hidden = true;
}

function backToLive() {
  versions.asked++;
  if (versions.viewing === null) return;
  versions.viewing = null;
  for (const li of versions.items.values()) li.firstChild.setAttribute('aria-pressed', 'false');
  ui.viewing.hidden = true;
  ui.docOld.hidden = true;
  ui.editor.hidden = false;
  editor.draw();
  ui.docText.focus();
}

ui.backLive.addEventListener('click', backToLive);
// Escape, anywhere in the history or the old version, goes back to the live document.
for (const el of [ui.history, ui.docOld, ui.viewing]) {
  el.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && versions.viewing !== null) {
      event.preventDefault();
      backToLive();
    }
  });
}

// ---- the chat ----------------------------------------------------------------------

/** Our sends not yet confirmed, by client_msg_id -> their <li>. */
const pendingSends = new Map();

function messageItem(userId, text, time) {
  const li = document.createElement('li');
  const meta = document.createElement('span');
  meta.className = 'meta';
  const author = nameEl(userId);
  author.classList.add('author');
  meta.append(author, time);
  const body = document.createElement('span');
  body.className = 'text';
  body.textContent = text;
  li.append(meta, body);
  if (userId === me.userId) li.classList.add('mine');
  return li;
}

function clock(iso, seconds = false) {
  const d = new Date(iso);
  const format = seconds ? { hour: '2-digit', minute: '2-digit', second: '2-digit' } : { hour: '2-digit', minute: '2-digit' };
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], format);
}

/** The library announces each message once, in seq order. */
function showMessage(message) {
  const li = messageItem(message.user_id, message.content, clock(message.created_at));
  li.dataset.seq = String(message.seq);
  const placeholder = message.client_msg_id === undefined ? undefined : pendingSends.get(message.client_msg_id);
  if (placeholder !== undefined) {
    pendingSends.delete(message.client_msg_id);
    placeholder.remove();
  }
  // Keep sent-but-unconfirmed messages at the bottom.
  const firstPending = ui.chatMessages.querySelector('li.pending, li.failed');
  ui.chatMessages.insertBefore(li, firstPending);
  ui.chatMessages.scrollTop = ui.chatMessages.scrollHeight;
}

ui.chatForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = ui.chatInput.value.trim();
  if (text === '' || client === null) return;
  ui.chatInput.value = '';
  stopTyping();
  send(text, newClientMsgId());
});

// ---- who is typing in the chat -----------------------------------------------------

/** Our `typing` state in the chat: on while we type, off after a pause and on send. */
const typing = { on: false, timer: 0 };

ui.chatInput.addEventListener('input', () => {
  if (client === null) return;
  if (ui.chatInput.value.trim() === '') {
    stopTyping();
    return;
  }
  clearTimeout(typing.timer);
  typing.timer = setTimeout(stopTyping, TYPING_PAUSE_MS);
  if (typing.on) return;
  typing.on = true;
  client.setAwareness(CHAT_ROOM, { typing: true, name: me.name }).catch(() => undefined);
});

function stopTyping() {
  clearTimeout(typing.timer);
  if (!typing.on) return;
  typing.on = false;
  client?.setAwareness(CHAT_ROOM, null).catch(() => undefined);
}

/** "Bob is typing…" from the others' states in the chat room. */
function renderTyping(entries) {
  const who = new Map();
  for (const { user_id: userId, state } of entries) {
    if (state?.typing !== true || userId === me.userId) continue;
    who.set(userId, typeof state.name === 'string' && state.name.trim() !== '' ? state.name : nameOf(userId));
  }
  const names = [...who.values()];
  let text = '';
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length > 2) text = `${names[0]}, ${names[1]} and ${names.length - 2} more are typing…`;
  if (ui.chatTyping.textContent !== text) ui.chatTyping.textContent = text;
}

function send(text, clientMsgId) {
  const li = messageItem(me.userId, text, client.state.status === 'connected' ? 'sending…' : 'waiting for the connection…');
  li.classList.add('pending');
  li.dataset.clientMsgId = clientMsgId;
  pendingSends.set(clientMsgId, li);
  ui.chatMessages.append(li);
  ui.chatMessages.scrollTop = ui.chatMessages.scrollHeight;
  client.sendMessage(CHAT_ID, text, { clientMsgId }).catch((err) => {
    if (!pendingSends.has(clientMsgId)) return;
    li.classList.remove('pending');
    li.classList.add('failed');
    const retry = document.createElement('button');
    retry.type = 'button';
    retry.textContent = 'Retry';
    retry.addEventListener('click', () => {
      pendingSends.delete(clientMsgId);
      li.remove();
      // Same id: if the first try was stored after all, it is not stored twice.
      send(text, clientMsgId);
    });
    li.querySelector('.meta').append(` · not sent (${err.code}) `, retry);
  });
}
