// The conversation list (badges, presence dots) and one conversation: live messages, history
// on scroll, pending outbox items, typing, "seen by", edit/delete, reactions, replies, mentions.

import { h, clear, richText, time, toast, perFrame } from './dom.js';
import { enc } from './api/http.js';
import * as conversations from './api/conversations.js';
import * as messages from './api/messages.js';
import { S, on, emit, convTitle, loadHistory, loadDetail, sorted, msgMap, typingNow, trimOlder } from './model.js';
import * as outbox from './outbox.js';
import * as live from './live.js';
import { attachmentView, uploader } from './files.js';
import { icon, reactionGlyph, REACTIONS } from './icons.js';
import { convDetails } from './convhead.js';
import { avatar } from './avatar.js';

// Touch screens (no hover): Enter inserts a newline there and the Send button sends.
const touch = () => matchMedia('(pointer: coarse)').matches;

// The conversations in the list's order: newest activity first.
const ordered = () => [...S.convs.values()].sort((a, b) => (b.last_seq || 0) - (a.last_seq || 0));

export function convList(go) {
  const ul = h('ul', { class: 'convs', id: 'conv-list' });
  const paint = () => {
    const items = ordered();
    clear(ul, items.length ? items.map((c) => {
      const dot = c.kind === 'direct'
        ? h('span', { class: `dot ${S.presence.get(c.peer) || 'offline'}`, title: S.presence.get(c.peer) || 'offline' })
        : h('span', { class: 'dot none' });
      const last = c.last_message;
      return h('li', {},
        h('a', {
          href: `/c/${enc(c.id)}`, class: `conv-item${c.id === S.current ? ' active' : ''}`, dataset: { id: c.id },
          onclick: (e) => { e.preventDefault(); go(`/c/${enc(c.id)}`); },
        },
        dot,
        avatar(c.kind === 'direct' && c.peer ? c.peer : convTitle(c)),
        h('span', { class: 'conv-main' },
          h('span', { class: 'conv-name' }, convTitle(c)),
          h('span', { class: 'conv-last' }, last ? [`${last.author}: `, last.redacted ? 'deleted' : last.text || [icon('clip'), 'attachment']] : '')),
        c.mentions ? h('span', { class: 'badge mention', title: 'mentions' }, `@${c.mentions}`) : null,
        c.unread ? h('span', { class: 'badge unread', title: 'unread' }, String(c.unread)) : null));
    }) : h('li', { class: 'muted empty' }, 'No conversations yet — start one from People (a person or a group) or join one under Channels.'));
  };
  paint();
  on('convs', perFrame(paint));
  return ul;
}

export function openConversation(id, go) {
  S.current = id;
  const c0 = S.convs.get(id);
  const title = h('h2', { class: 'conv-title' }, convTitle(c0) || id);
  // The list is repainted whole, so it is not itself live: new messages from others are read out
  // through `announce` ("<author>: <text>"), a visually hidden polite live region.
  const list = h('ol', { class: 'messages', id: 'messages', 'aria-label': 'Messages' });
  const announce = h('div', { id: 'announce', class: 'sr-only', role: 'status', 'aria-live': 'polite' });
  const jump = h('button', { type: 'button', class: 'jump-unread', id: 'jump-unread', hidden: true }, 'Jump to first unread');
  const newest = h('button', { type: 'button', class: 'jump-newest', id: 'jump-newest', hidden: true }, 'Jump to newest');
  const scroller = h('div', { class: 'scroller' }, h('button', { class: 'link more', id: 'older' }, 'Load older messages'), list);
  const typing = h('p', { class: 'typing', id: 'typing' });
  const seen = h('p', { class: 'seen', id: 'seen' });
  const replyBar = h('div', { class: 'reply-bar', hidden: true });
  const files = uploader();
  const ta = h('textarea', { id: 'composer', rows: touch() ? 1 : 2, placeholder: touch() ? 'Message' : 'Message — Enter to send, Shift+Enter for a new line', 'aria-label': 'Message' });
  const suggest = h('ul', { class: 'suggest', role: 'listbox', hidden: true });
  const sendBtn = h('button', { class: 'primary', type: 'submit' }, 'Send');
  // Viewers read only: a notice instead of a composer (the server would refuse their messages).
  const readOnly = S.me.role === 'viewer' || S.me.role === 'auditor';
  const form = readOnly
    ? h('p', { class: 'composer read-only', role: 'note' }, `Read only: your role (${S.me.role}) can follow this conversation but not write in it. An administrator can change your role.`)
    : h('form', { class: 'composer' }, replyBar, files.el, h('div', { class: 'row' }, files.button, h('div', { class: 'grow' }, suggest, ta), sendBtn));
  const back = h('button', { class: 'back', 'aria-label': 'Back to conversations', onclick: () => go('/') }, '←');
  const details = convDetails(id, go);
  const el = h('div', { class: 'conversation' }, h('div', { class: 'conv-head' }, back, title, details.el), h('div', { class: 'scroll-wrap' }, scroller, jump, newest), typing, seen, form, announce);
  let replyTo = null;
  let editing = null;
  let menuSeq = null; // the message whose action menu is open (a tap, a long-press or a click)
  let heard = null; // the highest seq already on screen (or announced); null until history is in
  // My read marker when the conversation opened (from its fresh detail): "New messages" goes
  // before the first message from others after it. undefined until known; null if unknown.
  let unreadAt;
  // A bounded DOM both ways: at most WINDOW loaded messages are drawn. `follow` keeps the window
  // on the newest; otherwise it starts at the message `start` (a seq). Near the top the window
  // moves STEP older (a page is fetched when none is loaded) and the newest STEP leave the DOM;
  // near the bottom it moves STEP newer and the oldest leave. The message in view keeps its place.
  const WINDOW = 200;
  const STEP = 50;
  let follow = true;
  let start = 0;
  const unsubs = [];

  const setReply = (m) => {
    replyTo = m ? m.seq : null;
    replyBar.hidden = !m;
    if (m) clear(replyBar, h('span', {}, `Replying to ${m.author}: `, h('q', {}, m.text.slice(0, 80))), h('button', { type: 'button', class: 'link', onclick: () => setReply(null) }, 'Cancel'));
    ta.focus();
  };

  const msgEl = (m, grouped) => {
    const mine = m.author === S.me.username;
    const parent = m.reply_to ? msgMap(id).get(m.reply_to) : null;
    const reacts = Object.entries(m.reactions || {}).map(([emoji, who]) =>
      h('button', { class: `react${who.includes(S.me.username) ? ' mine' : ''}`, title: who.join(', '), 'aria-label': `${emoji} ${who.length}: ${who.join(', ')}`, disabled: readOnly, onclick: () => toggleReact(m, emoji) }, reactionGlyph(emoji), ` ${who.length}`));
    const then = (f) => () => { closeMenu(); f(); };
    const actions = m.redacted || readOnly ? [] : [
      h('button', { type: 'button', class: 'act', onclick: then(() => setReply(m)) }, icon('reply'), h('span', { class: 'act-label' }, 'Reply')),
      ...REACTIONS.map((r) => h('button', { type: 'button', class: 'act', 'aria-label': `React ${r.emoji}`, title: r.name, onclick: then(() => toggleReact(m, r.emoji)) }, icon(r.glyph))),
      mine ? h('button', { type: 'button', class: 'act', onclick: then(() => startEdit(m)) }, icon('edit'), h('span', { class: 'act-label' }, 'Edit')) : null,
      mine || S.me.role === 'admin' ? h('button', { type: 'button', class: 'act', onclick: then(() => redact(m)) }, icon('trash'), h('span', { class: 'act-label' }, 'Delete')) : null,
      h('button', { type: 'button', class: 'act act-close', 'aria-label': 'Close menu', onclick: closeMenu }, icon('close')),
    ];
    return h('li', { class: `msg${mine ? ' mine' : ''}${grouped ? ' grouped' : ''}${menuSeq === m.seq ? ' open' : ''}`, tabindex: actions.length ? 0 : null, dataset: { seq: m.seq } },
      h('div', { class: 'meta' }, grouped ? null : avatar(m.author), h('strong', {}, m.author), ' ', h('time', {}, time(m.ts_us)), m.edited_at_us ? ' (edited)' : ''),
      m.reply_to ? h('div', { class: 'quote' }, parent ? `↪ ${parent.author}: ${parent.text.slice(0, 80)}` : '↪ an earlier message') : null,
      m.redacted ? h('div', { class: 'text deleted' }, 'message deleted') : h('div', { class: 'text' }, richText(m.text, S.me.username)),
      (m.attachments || []).map(attachmentView),
      reacts.length ? h('div', { class: 'reacts' }, reacts) : null,
      actions.length ? h('div', { class: 'actions', role: 'toolbar', 'aria-label': 'Message actions' }, actions) : null);
  };

  // A tap or click on a message (not on its links or buttons) opens its action menu; a long-press
  // (the touch context menu) too. Desktop pointers also get the menu as a toolbar on hover.
  const closeMenu = () => {
    menuSeq = null;
    for (const x of list.querySelectorAll('.msg.open')) x.classList.remove('open');
  };
  const toggleMenu = (e, force) => {
    const li = e.target.closest('.msg[data-seq]');
    if (!li || !li.querySelector('.actions') || e.target.closest('a, button, .actions')) return;
    if (force) e.preventDefault();
    const seq = Number(li.dataset.seq);
    menuSeq = force || menuSeq !== seq ? seq : null;
    for (const x of list.querySelectorAll('.msg.open')) x.classList.remove('open');
    if (menuSeq !== null) li.classList.add('open');
  };
  list.addEventListener('click', (e) => toggleMenu(e, false));
  list.addEventListener('contextmenu', (e) => { if (touch()) toggleMenu(e, true); });
  list.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && e.target.matches('.msg[data-seq]')) toggleMenu(e, false);
  });
  // Esc anywhere in the conversation closes the open action menu (the composer also cancels an
  // edit or a reply, below).
  el.addEventListener('keydown', (e) => { if (e.key === 'Escape' && menuSeq !== null) closeMenu(); });
  // Alt+Up / Alt+Down: the previous / next conversation in the list's order.
  const switchKeys = (e) => {
    if (!e.altKey || (e.key !== 'ArrowUp' && e.key !== 'ArrowDown')) return;
    const cs = ordered();
    const next = cs[cs.findIndex((c) => c.id === id) + (e.key === 'ArrowDown' ? 1 : -1)];
    e.preventDefault();
    if (next) go(`/c/${enc(next.id)}`);
  };
  document.addEventListener('keydown', switchKeys);
  unsubs.push(() => document.removeEventListener('keydown', switchKeys));

  // A separator before each new day; a message by the same author within 5 minutes of the one
  // before (and not a reply) is grouped under it: its author is not repeated.
  const withDays = (msgs, firstUnread) => {
    const out = [];
    let prev = null;
    for (const m of msgs) {
      const day = new Date(m.ts_us / 1000).toDateString();
      const newDay = !prev || day !== new Date(prev.ts_us / 1000).toDateString();
      if (newDay) out.push(h('li', { class: 'day-sep' }, h('span', {}, dayLabel(m.ts_us))));
      const mark = m.seq === firstUnread;
      if (mark) { out.push(h('li', { class: 'unread-sep', id: 'first-unread', tabindex: -1 }, h('span', {}, 'New messages'))); }
      const grouped = !mark && !newDay && prev.author === m.author && !m.reply_to && m.ts_us - prev.ts_us < 300e6;
      out.push(msgEl(m, grouped));
      prev = m;
    }
    return out;
  };

  const pendingEl = (p) => h('li', { class: 'msg mine pending', dataset: { key: p.key } },
    h('div', { class: 'meta' }, h('strong', {}, S.me.username), ' ', h('span', { class: 'state' }, S.conn === 'online' ? 'sending…' : 'pending — will send when connected')),
    h('div', { class: 'text' }, p.text),
    (p.attachments || []).map(attachmentView));

  // The drawn part of the loaded messages (sorted by seq): indices [lo, hi).
  const windowOf = (all) => {
    if (follow) return [Math.max(0, all.length - WINDOW), all.length];
    let a = 0;
    let b = all.length;
    while (a < b) { const mid = (a + b) >> 1; if (all[mid].seq < start) a = mid + 1; else b = mid; }
    const lo = Math.max(0, Math.min(a, all.length - WINDOW));
    return [lo, Math.min(all.length, lo + WINDOW)];
  };
  // The first drawn message at least partly in view, and where it is: put back after a repaint.
  const anchorOf = () => {
    const top = scroller.getBoundingClientRect().top;
    for (const li of list.querySelectorAll('.msg[data-seq]')) {
      const r = li.getBoundingClientRect();
      if (r.bottom > top) return { seq: li.dataset.seq, y: r.top };
    }
    return null;
  };
  const restore = (a) => {
    const li = a && list.querySelector(`.msg[data-seq="${a.seq}"]`);
    if (li) scroller.scrollTop += li.getBoundingClientRect().top - a.y;
  };
  // The first message from others after my read marker, among the loaded ones.
  const firstUnreadOf = (all) => (unreadAt == null ? undefined : all.find((m) => m.seq > unreadAt && m.author !== S.me.username));

  const paint = () => draw(null);
  const draw = (anchor) => {
    const atBottom = !anchor && follow && scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
    const place = atBottom ? null : anchor || anchorOf();
    let all = sorted(id);
    announceNew(all);
    // Back at the newest, the model too forgets what was scrolled back through (paged in again on
    // the way up), so an hour of a busy channel holds a bounded number of messages.
    if (atBottom && all.length > 5 * WINDOW) { trimOlder(id, 2 * WINDOW); all = sorted(id); }
    const delivered = new Set(all.map((m) => m.key).filter(Boolean));
    const [lo, hi] = windowOf(all);
    const unread = firstUnreadOf(all);
    // A search hit (search.js marks it) stays marked through repaints.
    const hits = [...list.querySelectorAll('.msg.search-hit')].map((x) => x.dataset.seq);
    clear(list, withDays(all.slice(lo, hi), unread && unread.seq), follow ? outbox.list().filter((p) => p.conv === id && !delivered.has(p.key)).map(pendingEl) : []);
    scroller.querySelector('#older').hidden = !S.hasMore.get(id) && lo === 0;
    newest.hidden = follow;
    for (const s of hits) list.querySelector(`.msg[data-seq="${s}"]`)?.classList.add('search-hit');
    if (atBottom) scroller.scrollTop = scroller.scrollHeight;
    else restore(place);
    paintJump();
    paintSeen();
    markRead();
  };

  // Messages from others that arrived since the last paint, read out one line each (the five
  // newest are kept in the region). History loaded at open or on scroll is not read out.
  const announceNew = (msgs) => {
    const top = msgs.length ? msgs[msgs.length - 1].seq : 0;
    if (heard === null) return;
    for (const m of msgs) {
      if (m.seq <= heard || m.author === S.me.username || m.redacted) continue;
      announce.append(h('p', {}, `${m.author}: ${m.text || 'attachment'}`));
    }
    while (announce.childElementCount > 5) announce.firstElementChild.remove();
    heard = Math.max(heard, top);
  };
  const hearFrom = () => { const m = sorted(id); heard = m.length ? m[m.length - 1].seq : 0; };

  // "Jump to first unread" while the marker is above the view (or not loaded yet).
  const unreadAbove = () => {
    if (unreadAt == null) return false;
    const mk = list.querySelector('.unread-sep');
    if (mk) return mk.getBoundingClientRect().bottom <= scroller.getBoundingClientRect().top + 1;
    const all = sorted(id);
    const first = firstUnreadOf(all);
    if (!first) return false;
    return first.seq < all[windowOf(all)[0]].seq || (all[0].seq > unreadAt && !!S.hasMore.get(id));
  };
  const paintJump = () => { jump.hidden = !unreadAbove(); };
  jump.addEventListener('click', async () => {
    try {
      while (!list.querySelector('.unread-sep') && S.hasMore.get(id)) {
        const first = sorted(id)[0];
        if (!first || first.seq <= unreadAt) break;
        await loadHistory(id, first.seq);
      }
    } catch (e) { toast(e.message, 'error'); }
    // The window starts a few messages before the marker (or follows the newest, if that shows it).
    const all = sorted(id);
    const first = firstUnreadOf(all);
    if (first) {
      const i = all.indexOf(first);
      follow = i >= all.length - WINDOW + 5;
      if (!follow) start = all[Math.max(0, i - 5)].seq;
      paint();
    }
    const mk = list.querySelector('.unread-sep');
    if (mk) { mk.scrollIntoView({ block: 'start' }); mk.focus({ preventScroll: true }); }
    paintJump();
  });
  scroller.addEventListener('scroll', paintJump);

  const paintSeen = () => {
    const c = S.convs.get(id);
    const msgs = sorted(id);
    const last = msgs[msgs.length - 1];
    if (!c || !c.members || !last) { seen.textContent = ''; return; }
    const who = c.members.filter((m) => m.username !== S.me.username && m.last_read_seq >= last.seq).map((m) => m.username);
    seen.textContent = who.length ? `Seen by ${who.join(', ')}` : '';
  };

  const paintTyping = () => {
    const who = typingNow(id).filter((u) => u !== S.me.username);
    typing.textContent = who.length ? `${who.join(', ')} ${who.length > 1 ? 'are' : 'is'} typing…` : '';
  };

  let readSent = 0;
  const markRead = () => {
    if (document.hidden || unreadAt === undefined) return;
    const msgs = sorted(id);
    const last = msgs[msgs.length - 1];
    const c = S.convs.get(id);
    if (!last || !c || last.seq <= readSent) return;
    if (last.seq <= (c.last_read_seq || 0) && !c.unread) return;
    readSent = last.seq;
    // An auditor changes nothing: its read marker stays local (the server refuses it anyway).
    if (S.me.role !== 'auditor' && !live.send({ type: 'read', conv: id, seq: last.seq })) {
      conversations.markRead(id, last.seq).catch(() => { readSent = 0; });
    }
    c.unread = 0; c.mentions = 0;
    emit('convs');
  };

  async function toggleReact(m, emoji) {
    const mineNow = (m.reactions[emoji] || []).includes(S.me.username);
    try {
      if (mineNow) await messages.unreact(id, m.seq, emoji);
      else await messages.react(id, m.seq, emoji);
    } catch (e) { toast(e.message, 'error'); }
  }

  function cancelEdit() {
    if (editing === null) return;
    editing = null;
    ta.value = '';
    sendBtn.textContent = 'Send';
  }

  function startEdit(m) {
    editing = m.seq;
    ta.value = m.text;
    sendBtn.textContent = 'Save edit';
    ta.focus();
  }

  async function redact(m) {
    if (!confirm('Delete this message for everyone?')) return;
    try { await messages.remove(id, m.seq); } catch (e) { toast(e.message, 'error'); }
  }

  async function submit() {
    const text = ta.value.replace(/\s+$/, '');
    if (editing !== null) {
      const seq = editing;
      editing = null;
      sendBtn.textContent = 'Send';
      ta.value = '';
      try { await messages.edit(id, seq, text); } catch (e) { toast(e.message, 'error'); }
      return;
    }
    const attachments = files.take();
    if (!text.trim() && !attachments.length) return;
    outbox.add({ conv: id, key: outbox.newKey(), text, reply_to: replyTo, attachments, ts: Date.now() });
    ta.value = '';
    setReply(null);
    paint();
    scroller.scrollTop = scroller.scrollHeight;
    live.flush();
  }

  form.addEventListener('submit', (e) => { e.preventDefault(); submit(); });
  let lastTyping = 0;
  ta.addEventListener('keydown', (e) => {
    if (!suggest.hidden && (e.key === 'Tab' || e.key === 'Enter')) {
      const first = suggest.querySelector('button');
      if (first) { e.preventDefault(); first.click(); return; }
    }
    if (e.key === 'Escape') {
      if (!suggest.hidden) { suggest.hidden = true; return; }
      cancelEdit(); setReply(null); closeMenu();
    }
    // Up in an empty composer edits one's own last message.
    if (e.key === 'ArrowUp' && !e.altKey && !e.shiftKey && !ta.value && editing === null) {
      const m = [...sorted(id)].reverse().find((x) => x.author === S.me.username && !x.redacted);
      if (m) { e.preventDefault(); startEdit(m); }
    }
    if (e.key === 'Enter' && !e.shiftKey && !touch()) { e.preventDefault(); submit(); }
  });
  ta.addEventListener('input', () => {
    const now = Date.now();
    if (now - lastTyping > 2000 && ta.value) { lastTyping = now; live.send({ type: 'typing', conv: id }); }
    mentionSuggest();
  });
  ta.addEventListener('paste', (e) => {
    const fl = [...(e.clipboardData ? e.clipboardData.files : [])];
    if (fl.length) { e.preventDefault(); fl.forEach(files.add); }
  });
  el.addEventListener('dragover', (e) => { e.preventDefault(); el.classList.add('drop'); });
  el.addEventListener('dragleave', () => el.classList.remove('drop'));
  el.addEventListener('drop', (e) => {
    e.preventDefault();
    el.classList.remove('drop');
    [...e.dataTransfer.files].forEach(files.add);
  });

  function mentionSuggest() {
    const upto = ta.value.slice(0, ta.selectionStart);
    const m = upto.match(/@([A-Za-z0-9._-]*)$/);
    const c = S.convs.get(id);
    if (!m || !c || !c.members) { suggest.hidden = true; return; }
    const q = m[1].toLowerCase();
    const hits = c.members.map((x) => x.username).filter((u) => u !== S.me.username && u.toLowerCase().startsWith(q)).slice(0, 6);
    suggest.hidden = !hits.length;
    clear(suggest, hits.map((u) => h('li', {}, h('button', {
      type: 'button', role: 'option',
      onclick: () => {
        const start = upto.length - m[0].length;
        ta.value = `${ta.value.slice(0, start)}@${u} ${ta.value.slice(ta.selectionStart)}`;
        suggest.hidden = true;
        ta.focus();
      },
    }, `@${u}`))));
  }

  // Moving the window (see WINDOW): older fetches a page first when none is loaded; the anchor is
  // taken before anything changes, so the message in view stays where it was.
  let fetching = false;
  async function older() {
    if (fetching) return;
    let all = sorted(id);
    let lo = windowOf(all)[0];
    const place = anchorOf();
    if (lo === 0) {
      if (!S.hasMore.get(id)) return;
      fetching = true;
      try { await loadHistory(id, all[0] ? all[0].seq : undefined); } catch (e) { toast(e.message, 'error'); }
      fetching = false;
      all = sorted(id);
      lo = windowOf(all)[0];
    }
    if (lo === 0) return;
    follow = false;
    start = all[Math.max(0, lo - STEP)].seq;
    draw(place);
  }
  function newer() {
    const all = sorted(id);
    const lo = windowOf(all)[0] + STEP;
    follow = lo + WINDOW >= all.length;
    if (!follow) start = all[lo].seq;
    draw(anchorOf());
  }
  scroller.querySelector('#older').addEventListener('click', older);
  scroller.addEventListener('scroll', () => {
    if (scroller.scrollTop < 40) older();
    else if (!follow && scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40) newer();
  });
  newest.addEventListener('click', () => {
    follow = true;
    paint();
    scroller.scrollTop = scroller.scrollHeight;
    paint();
  });

  // Changes repaint once per frame; the screen's own actions (send, scroll) repaint at once.
  let closed = false;
  const paintSoon = perFrame(() => { if (!closed) paint(); });
  unsubs.push(on('msgs', (c) => { if (c === id) paintSoon(); }));
  unsubs.push(on('outbox', paintSoon));
  unsubs.push(on('conn', paintSoon));
  unsubs.push(on('typing', (c) => { if (c === id) paintTyping(); }));
  unsubs.push(on('seen', (c) => { if (c === id) paintSeen(); }));
  unsubs.push(on('detail', (c) => { if (c === id) { title.textContent = convTitle(S.convs.get(id)); paintSeen(); details.paint(); } }));
  unsubs.push(on('visible', markRead));
  unsubs.push(on('resync', () => { S.msgs.delete(id); follow = true; loadHistory(id).catch(() => {}); }));

  // Shows message `seq` (a search hit, `/c/<id>?at=<seq>`): once the first page is in, older
  // pages load until it is, the window moves to it, and it is scrolled to the middle and marked.
  const show = async (seq) => {
    await ready;
    try {
      while (S.hasMore.get(id)) {
        const first = sorted(id)[0];
        if (first && first.seq <= seq) break;
        fetching = true;
        await loadHistory(id, first ? first.seq : undefined);
      }
    } catch (e) { toast(e.message, 'error'); } finally { fetching = false; }
    const all = sorted(id);
    const i = all.findIndex((m) => m.seq === seq);
    if (i < 0) { toast('That message is no longer in this conversation.', 'error'); return; }
    follow = i >= all.length - WINDOW + STEP;
    if (!follow) start = all[Math.max(0, i - STEP)].seq;
    paint();
    const li = list.querySelector(`.msg[data-seq="${seq}"]`);
    if (li) { li.scrollIntoView({ block: 'center' }); li.classList.add('search-hit'); }
  };

  loadDetail(id).then(() => {
    const me = (S.convs.get(id)?.members || []).find((m) => m.username === S.me.username);
    unreadAt = me ? me.last_read_seq || 0 : null;
  }).catch((e) => { unreadAt = null; toast(e.message, 'error'); }).then(paint);
  let ready = Promise.resolve();
  if (!S.msgs.has(id) || !S.msgs.get(id).size) ready = loadHistory(id).then(() => { hearFrom(); scroller.scrollTop = scroller.scrollHeight; }).catch((e) => { hearFrom(); toast(e.message, 'error'); });
  else { hearFrom(); setTimeout(paint, 0); }
  if (!readOnly && !touch()) setTimeout(() => ta.focus(), 0);
  return { el, show, close: () => { closed = true; unsubs.forEach((u) => u()); S.current = null; trimOlder(id, 2 * WINDOW); } };
}

function dayLabel(us) {
  const d = new Date(us / 1000);
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (d.toDateString() === today.toDateString()) return 'Today';
  if (d.toDateString() === yesterday.toDateString()) return 'Yesterday';
  return d.toLocaleDateString([], { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' });
}
