// What the UI knows: me, my conversations, loaded messages, presence and typing. Entries from
// the socket update it; views subscribe to named changes and redraw.

import { get, enc } from './api.js';

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
  const r = await get('/api/v1/conversations');
  const old = S.convs;
  S.convs = new Map(r.conversations.map((c) => [c.id, { ...(old.get(c.id) || {}), ...c }]));
  const peers = r.conversations.map((c) => c.peer).filter(Boolean);
  if (peers.length) {
    try {
      const p = await get(`/api/v1/presence?users=${enc(peers.join(','))}`);
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
  const d = await get(`/api/v1/conversations/${enc(id)}`);
  S.convs.set(id, { ...(S.convs.get(id) || {}), ...d });
  emit('detail', id);
}

export function msgMap(conv) {
  if (!S.msgs.has(conv)) S.msgs.set(conv, new Map());
  return S.msgs.get(conv);
}

export async function loadHistory(conv, before) {
  const q = before ? `?before=${before}&limit=50` : '?limit=50';
  const r = await get(`/api/v1/conversations/${enc(conv)}/messages${q}`);
  const m = msgMap(conv);
  for (const x of r.messages) m.set(x.seq, x);
  if (!before || !r.has_more) S.hasMore.set(conv, r.has_more);
  else S.hasMore.set(conv, true);
  emit('msgs', conv);
  return r;
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

// Applies one log entry; returns {conv, message} for notification decisions.
export function apply(e) {
  const b = e.body || {};
  const conv = b.conv;
  if (e.kind.startsWith('contact.')) { emit('contacts'); return null; }
  if (!conv) return null;
  const c = S.convs.get(conv);
  const m = S.msgs.get(conv);
  switch (e.kind) {
    case 'chat.message': {
      const msg = {
        seq: e.seq, author: e.author, ts_us: e.ts_us, text: b.text || '', mentions: b.mentions || [],
        reply_to: b.reply_to || null, attachments: b.attachments || [], edited_at_us: null,
        redacted: false, reactions: {}, key: b.key,
      };
      if (m) m.set(e.seq, msg);
      if (!c) { reloadConvsSoon(); return { conv, msg }; }
      if (e.seq > (c.last_seq || 0)) { c.last_seq = e.seq; c.last_message = msg; }
      if (e.author === S.me.username) c.last_read_seq = Math.max(c.last_read_seq || 0, e.seq);
      else if (e.seq > (c.last_read_seq || 0)) {
        c.unread = (c.unread || 0) + 1;
        if (msg.mentions.includes(S.me.username)) c.mentions = (c.mentions || 0) + 1;
      }
      const t = S.typing.get(conv);
      if (t) t.delete(e.author);
      emit('msgs', conv);
      emit('typing', conv);
      emit('convs');
      return { conv, msg };
    }
    case 'chat.edited': {
      const x = m && m.get(b.target);
      if (x) { x.text = b.text; x.mentions = b.mentions || []; x.edited_at_us = e.ts_us; }
      emit('msgs', conv);
      return null;
    }
    case 'chat.redacted': {
      const x = m && m.get(b.target);
      if (x) { x.redacted = true; x.text = ''; x.attachments = []; }
      emit('msgs', conv);
      return null;
    }
    case 'chat.reacted': {
      const x = m && m.get(b.target);
      if (x) {
        const who = new Set(x.reactions[b.emoji] || []);
        if (b.added) who.add(e.author); else who.delete(e.author);
        if (who.size) x.reactions[b.emoji] = [...who]; else delete x.reactions[b.emoji];
      }
      emit('msgs', conv);
      return null;
    }
    case 'chat.read': {
      if (c && c.members) {
        const mem = c.members.find((u) => u.username === e.author);
        if (mem) mem.last_read_seq = Math.max(mem.last_read_seq, b.seq);
      }
      if (c && e.author === S.me.username) {
        c.last_read_seq = Math.max(c.last_read_seq || 0, b.seq);
      }
      emit('seen', conv);
      return null;
    }
    default:
      reloadConvsSoon();
      if (conv === S.current) loadDetail(conv).catch(() => {});
      return null;
  }
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
