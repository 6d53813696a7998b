// The demo page: choose a name, then edit one shared document and chat
// beside it. Everything goes through the client library (./huddle.js);
// this file only turns its events and state into DOM.
//
// The document is saved a moment after typing stops, with the version the
// edit creates. When someone else saved first, the page shows both texts and
// lets the user choose: an edit is never dropped silently.

import { HuddleClient, newClientMsgId } from './huddle.js';

const params = new URLSearchParams(location.search);
/** The shared document and chat; `?doc=` and `?chat=` pick others. */
const DOC_ID = params.get('doc') || 'demo';
const CHAT_ID = params.get('chat') || 'demo';
const DOC_ROOM = `document:${DOC_ID}`;
const CHAT_ROOM = `chat:${CHAT_ID}`;
/** Pause after the last keystroke before the document is saved. */
const SAVE_DELAY_MS = 400;
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
  docVersion: $('doc-version'),
  docMembers: $('doc-members'),
  docCount: $('doc-count'),
  docStatus: $('doc-status'),
  conflict: $('conflict'),
  conflictText: $('conflict-text'),
  conflictTheirs: $('conflict-theirs'),
  conflictMine: $('conflict-mine'),
  useTheirs: $('use-theirs'),
  keepMine: $('keep-mine'),
  chatMembers: $('chat-members'),
  chatCount: $('chat-count'),
  chatMessages: $('chat-messages'),
  chatOffline: $('chat-offline'),
  chatForm: $('chat-form'),
  chatInput: $('chat-input'),
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
  window.huddleDemo = { client };
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
  try {
    await client.joinDocument(DOC_ID);
  } catch (err) {
    if (err.code !== 'NOT_FOUND') throw err;
    // First visitor of a fresh server: create it, then join.
    await client.createDocument(DOC_ID, { title: 'Shared notes', content: '' }).catch((e) => {
      if (e.code !== 'ALREADY_EXISTS') throw e;
    });
    await client.joinDocument(DOC_ID);
  }
}

// ---- connection status -------------------------------------------------------------

function listen(c) {
  c.on('state', renderStatus);
  c.on('room_state', (room) => {
    for (const m of room.members) learnName(m.user_id, m.name);
    if (room.room === DOC_ROOM) renderMembers(ui.docMembers, ui.docCount, room);
    if (room.room === CHAT_ROOM) renderMembers(ui.chatMembers, ui.chatCount, room);
  });
  c.on('user:joined', (u) => learnName(u.user_id, u.name));
  c.on('room_joined', (joined) => {
    if (joined.room === DOC_ROOM) documentLoaded(joined.document);
  });
  c.on('documents:updated', (update) => {
    if (update.room === DOC_ROOM) remoteEdit(update.document, update.user_id);
  });
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
      if (m.user_id === me.userId) li.classList.add('me');
      return li;
    }),
  );
}

// ---- the document ------------------------------------------------------------------

const doc = {
  /** What the server has that our text is based on: {content, version}. */
  base: null,
  /** The textarea holds edits not yet saved. */
  dirty: false,
  saving: false,
  timer: 0,
  /** The document someone else saved while we had edits, or null. */
  conflict: null,
};

/** The status line under the document: text and names (`nameEl`). */
function setDocStatus(...parts) {
  ui.docStatus.replaceChildren(...parts);
}

function showVersion() {
  ui.docVersion.textContent = doc.base === null ? 'v–' : `v${doc.base.version}`;
}

/** A (re)join delivered the server's document. */
function documentLoaded(document) {
  ui.docText.disabled = false;
  ui.docText.placeholder = 'Type here; everyone in the room sees it.';
  if (!doc.dirty || doc.base === null) {
    doc.base = { content: document.content, version: document.version };
    setText(document.content);
    showVersion();
    if (document.version === 0) setDocStatus('New document');
    else setDocStatus(`Saved · v${document.version} by `, nameEl(document.updated_by));
    return;
  }
  // Back after a disconnect with unsaved edits.
  if (document.version === doc.base.version) {
    scheduleSave(0);
  } else {
    openConflict(document);
  }
}

function remoteEdit(document, userId) {
  if (doc.base !== null && document.version <= doc.base.version) return;
  if (!doc.dirty && !doc.saving) {
    doc.base = { content: document.content, version: document.version };
    setText(document.content);
    showVersion();
    setDocStatus(`v${document.version} by `, nameEl(userId));
    return;
  }
  // Someone saved while we were typing: show it now, do not overwrite.
  openConflict(document);
}

/** Replaces the textarea's text, keeping the caret where it was if possible. */
function setText(text) {
  if (ui.docText.value === text) return;
  const focused = document.activeElement === ui.docText;
  const { selectionStart, selectionEnd } = ui.docText;
  ui.docText.value = text;
  if (focused) ui.docText.setSelectionRange(Math.min(selectionStart, text.length), Math.min(selectionEnd, text.length));
}

ui.docText.addEventListener('input', () => {
  doc.dirty = doc.base === null || ui.docText.value !== doc.base.content;
  if (doc.conflict !== null) {
    ui.conflictMine.textContent = ui.docText.value;
    return;
  }
  setDocStatus(doc.dirty ? 'Editing…' : `Saved · v${doc.base.version}`);
  scheduleSave(SAVE_DELAY_MS);
});

function scheduleSave(delay) {
  clearTimeout(doc.timer);
  doc.timer = setTimeout(save, delay);
}

async function save() {
  if (!doc.dirty || doc.saving || doc.conflict !== null || doc.base === null) return;
  doc.saving = true;
  const text = ui.docText.value;
  const version = doc.base.version + 1;
  setDocStatus('Saving…');
  try {
    const saved = await client.updateDocument(DOC_ID, text, version);
    doc.base = { content: text, version: saved };
    doc.dirty = ui.docText.value !== text;
    showVersion();
    setDocStatus(doc.dirty ? 'Editing…' : `Saved · v${saved}`);
  } catch (err) {
    if (err.code === 'VERSION_CONFLICT') {
      const latest = latestDocument();
      if (latest !== null && latest.version >= (err.details.current_version ?? 0)) openConflict(latest);
      else setDocStatus('Someone else saved first; loading their version…');
      // otherwise the `documents:updated` push, which is on its way, opens it
    } else if (err.code === 'CONNECTION_LOST' || err.code === 'TIMEOUT' || err.code === 'NOT_CONNECTED') {
      setDocStatus('Offline: your edits are kept and saved when the connection is back.');
    } else {
      setDocStatus(`Not saved: ${err.message}`);
    }
  } finally {
    doc.saving = false;
  }
  if (doc.dirty && doc.conflict === null && client.state.status === 'connected') scheduleSave(SAVE_DELAY_MS);
}

function latestDocument() {
  const room = client.state.rooms[DOC_ROOM];
  return room?.kind === 'document' ? room.document : null;
}

function openConflict(theirs) {
  clearTimeout(doc.timer);
  doc.conflict = theirs;
  ui.conflict.hidden = false;
  ui.conflictText.replaceChildren(nameEl(theirs.updated_by), ` saved version ${theirs.version} while you were editing.`);
  ui.conflictTheirs.textContent = theirs.content;
  ui.conflictMine.textContent = ui.docText.value;
  ui.docVersion.textContent = `v${doc.base.version} → v${theirs.version}`;
  setDocStatus('Conflict: choose which text to keep.');
}

function closeConflict() {
  doc.conflict = null;
  ui.conflict.hidden = true;
}

ui.useTheirs.addEventListener('click', () => {
  const theirs = latestDocument() ?? doc.conflict;
  doc.base = { content: theirs.content, version: theirs.version };
  doc.dirty = false;
  setText(theirs.content);
  closeConflict();
  showVersion();
  setDocStatus(`v${theirs.version} by `, nameEl(theirs.updated_by));
});

ui.keepMine.addEventListener('click', () => {
  const theirs = latestDocument() ?? doc.conflict;
  // Our text, saved on top of theirs.
  doc.base = { content: theirs.content, version: theirs.version };
  doc.dirty = true;
  closeConflict();
  showVersion();
  scheduleSave(0);
});

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

function clock(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
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
  send(text, newClientMsgId());
});

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
