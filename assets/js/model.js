// What the UI knows: me, my conversations, loaded messages, presence and typing. Entries from
// the socket update it through the reducers (reducers/index.js); views subscribe to named
// changes and redraw.

import * as conversations from './api/conversations.js';
import * as messages from './api/messages.js';
import * as users from './api/users.js';

export const S = {
  me: null,
  convs: new Map(), // id -> summary (+ members when detailed)
  msgs: new Map(), // conv -> Map(seq -> message)
  hasMore: new Map(),
  presence: new Map(),
  typing: new Map(), // conv -> Map(user -> expiry ms)
  current: null,
  conn: 'connecting',
};

const subs = new Map();
export function on(topic, f) {
  if (!subs.has(topic)) subs.set(topic, new Set());
  subs.get(topic).add(f);
  return () => subs.get(topic).delete(f);
}
export function emit(topic, arg) { for (const f of subs.get(topic) || []) f(arg); }

export async function loadConvs() {
  const r = await conversations.list();
  const old = S.convs;
  S.convs = new Map(r.conversations.map((c) => [c.id, { ...(old.get(c.id) || {}), ...c }]));
  const peers = r.conversations.map((c) => c.peer).filter(Boolean);
  if (peers.length) {
    try {
      const p = await users.presence(peers);
      for (const u of p.users) S.presence.set(u.username, u.status);
    } catch { /* presence is decoration */ }
  }
  emit('convs');
}

let reloadTimer = null;
export function reloadConvsSoon() {
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(() => loadConvs().catch(() => {}), 150);
}

export async function loadDetail(id) {
  const d = await conversations.detail(id);
  S.convs.set(id, { ...(S.convs.get(id) || {}), ...d });
  emit('detail', id);
}

export function msgMap(conv) {
  if (!S.msgs.has(conv)) S.msgs.set(conv, new Map());
  return S.msgs.get(conv);
}

export async function loadHistory(conv, before) {
  const r = await messages.history(conv, before);
  const m = msgMap(conv);
  for (const x of r.messages) m.set(x.seq, x);
  if (!before || !r.has_more) S.hasMore.set(conv, r.has_more);
  else S.hasMore.set(conv, true);
  emit('msgs', conv);
  return r;
}

// Forgets all but the newest `keep` loaded messages of a conversation (they page in again from
// the server: `hasMore` says so). Bounds the model as the window bounds the DOM.
export function trimOlder(conv, keep) {
  const m = S.msgs.get(conv);
  if (!m || m.size <= keep) return;
  const seqs = [...m.keys()].sort((x, y) => x - y);
  for (const s of seqs.slice(0, seqs.length - keep)) m.delete(s);
  S.hasMore.set(conv, true);
}

export function sorted(conv) {
  return [...msgMap(conv).values()].sort((a, b) => a.seq - b.seq);
}

export function convTitle(c) {
  if (!c) return '';
  if (c.kind === 'direct') return c.peer || c.name;
  if (c.kind === 'channel') return `#${c.name}`;
  return c.name;
}

export function setTyping(conv, user, ms) {
  if (!S.typing.has(conv)) S.typing.set(conv, new Map());
  S.typing.get(conv).set(user, Date.now() + ms);
  emit('typing', conv);
  setTimeout(() => emit('typing', conv), ms + 50);
}

export function typingNow(conv) {
  const t = S.typing.get(conv);
  if (!t) return [];
  const now = Date.now();
  return [...t].filter(([, until]) => until > now).map(([u]) => u);
}
