// The chat domain's reducer: applies `chat.*` log entries to the model (messages, edits,
// deletes, reactions, read markers; anything else about a conversation reloads its summary).

import { S, emit, reloadConvsSoon, loadDetail, trimOlder } from '../model.js';

// Returns {conv, msg} for a new message (app.js decides on a notification), else null.
export function reduce(e) {
  const b = e.body || {};
  const conv = b.conv;
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
      // A conversation not on screen keeps only its newest messages (the open one bounds its own).
      if (m && conv !== S.current) trimOlder(conv, 400);
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
      // created, joined, left, renamed, …: the server's summary and member list are the truth.
      reloadConvsSoon();
      if (conv === S.current) loadDetail(conv).catch(() => {});
      return null;
  }
}
