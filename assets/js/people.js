// People: user search, contacts and contact requests, new direct message and new group;
// channels: browse, join, create.

import { h, clear, toast } from './dom.js';
import { enc } from './api/http.js';
import * as contactsApi from './api/contacts.js';
import * as conversations from './api/conversations.js';
import * as users from './api/users.js';
import { on, loadConvs, S } from './model.js';
import { avatar } from './avatar.js';

async function openDirect(u, go) {
  try {
    const c = await conversations.openDirect(u);
    await loadConvs();
    go(`/c/${enc(c.id)}`);
  } catch (e) { toast(e.message, 'error'); }
}

export function peopleScreen(go) {
  const results = h('ul', { class: 'plain', id: 'user-results' });
  const q = h('input', { type: 'search', id: 'user-search', placeholder: 'Search people by name', 'aria-label': 'Search people' });
  // With the box empty the list is the directory: everyone active by username, 100 a page, the
  // next page loading as "More people" scrolls into view (the API's `next` cursor); typing
  // searches. Each says what to do when it has no one.
  const PAGE = 100;
  const person = (u) => h('li', { class: 'row' },
    avatar(u.username),
    h('span', { class: 'grow' }, `${u.display_name} (${u.username})`),
    h('button', { onclick: () => openDirect(u.username, go) }, 'Message'),
    h('button', { onclick: () => request(u.username) }, 'Add contact'));
  const more = h('button', { type: 'button', class: 'link', id: 'people-more', hidden: true }, 'More people');
  let next = null;
  let count = 0;
  let gen = 0; // a newer search makes an older page's answer stale
  let loading = false;
  const head = h('li', { class: 'muted dir-head' });
  const paintHead = () => { head.textContent = next ? `Everyone (${count} so far, by name; more load as you scroll)` : `Everyone (${count})`; };
  const find = async () => {
    const text = q.value.trim();
    const mine = ++gen;
    try {
      const r = await users.search(text, text ? 20 : PAGE);
      if (mine !== gen) return;
      const others = r.users.filter((u) => u.username !== S.me.username);
      next = text ? null : r.next;
      count = others.length;
      more.hidden = !next;
      paintHead();
      const empty = text
        ? `No one matches "${text}" — try the start of a username or of a name.`
        : 'Nobody else has an account yet. An administrator adds people under Admin, or they request an account on the sign-in page.';
      clear(results,
        text ? null : head,
        others.length ? others.map(person) : h('li', { class: 'muted empty' }, empty));
      loadMoreIfSeen();
    } catch (e) { toast(e.message, 'error'); }
  };
  const loadMore = async () => {
    if (!next || loading) return;
    const mine = gen;
    loading = true;
    try {
      const r = await users.search('', PAGE, next);
      if (mine !== gen) return;
      const others = r.users.filter((u) => u.username !== S.me.username);
      results.append(...others.map(person));
      count += others.length;
      next = r.next;
      more.hidden = !next;
      paintHead();
    } catch (e) { toast(e.message, 'error'); } finally { loading = false; }
    loadMoreIfSeen();
  };
  // The observer fires when "More people" comes into view; a page that leaves it in view loads on.
  const loadMoreIfSeen = () => {
    if (!more.hidden && more.isConnected && more.getBoundingClientRect().top < innerHeight) loadMore();
  };
  new IntersectionObserver((es) => { if (es.some((e) => e.isIntersecting)) loadMore(); }).observe(more);
  more.addEventListener('click', loadMore);
  let t = null;
  q.addEventListener('input', () => { clearTimeout(t); t = setTimeout(find, 200); });
  find();
  const contacts = h('div', { id: 'contacts' });
  const paint = async () => {
    try {
      const r = await contactsApi.list();
      clear(contacts,
        h('h3', {}, `Requests for me (${r.incoming.length})`),
        h('ul', { class: 'plain' }, r.incoming.map((c) => h('li', { class: 'row' }, h('span', { class: 'grow' }, `${c.display_name} (${c.username})`),
          h('button', { class: 'primary', onclick: () => act(() => contactsApi.accept(c.username)) }, 'Accept'),
          h('button', { onclick: () => act(() => contactsApi.reject(c.username)) }, 'Reject')))),
        h('h3', {}, `Contacts (${r.contacts.length})`),
        h('ul', { class: 'plain' }, r.contacts.map((c) => h('li', { class: 'row' },
          h('span', { class: `dot ${S.presence.get(c.username) || 'offline'}` }),
          h('span', { class: 'grow' }, `${c.display_name} (${c.username})`),
          h('button', { onclick: () => openDirect(c.username, go) }, 'Message'),
          h('button', { onclick: () => { if (confirm(`Remove ${c.username}?`)) contactsApi.remove(c.username).then(paint, (e) => toast(e.message, 'error')); } }, 'Remove')))),
        h('h3', {}, `Waiting for them (${r.outgoing.length})`),
        h('ul', { class: 'plain' }, r.outgoing.map((c) => h('li', {}, `${c.display_name} (${c.username})`))));
    } catch (e) { toast(e.message, 'error'); }
  };
  const act = (f) => f().then(paint, (e) => toast(e.message, 'error'));
  const request = (u) => contactsApi.request(u).then(() => { toast(`Request sent to ${u}`); paint(); }, (e) => toast(e.message, 'error'));
  paint();
  const off = on('contacts', paint);

  const gname = h('input', { id: 'group-name', required: true, maxlength: 64, 'aria-label': 'Group name' });
  const gmembers = h('input', { id: 'group-members', placeholder: 'usernames, comma separated', 'aria-label': 'Members' });
  const group = h('form', { class: 'card inline' }, h('h3', {}, 'New group'), h('label', {}, 'Name ', gname), h('label', {}, 'Members ', gmembers), h('button', { class: 'primary' }, 'Create group'));
  group.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const members = gmembers.value.split(/[\s,]+/).filter(Boolean);
      const c = await conversations.createGroup(gname.value, members);
      await loadConvs();
      go(`/c/${enc(c.id)}`);
    } catch (x) { toast(x.message, 'error'); }
  });
  const el = h('div', { class: 'screen' }, h('h2', {}, 'People'), q, results, more, contacts, group);
  return { el, close: off };
}

export function channelsScreen(go) {
  const list = h('ul', { class: 'plain', id: 'channel-list' });
  const paint = async () => {
    try {
      const r = await conversations.channels();
      clear(list, r.channels.length ? r.channels.map((c) => h('li', { class: 'row' },
        h('span', { class: 'grow' }, `#${c.name} · ${c.member_count} members`),
        c.joined
          ? h('button', { onclick: () => go(`/c/${enc(c.id)}`) }, 'Open')
          : h('button', { class: 'primary', onclick: async () => {
            try { await conversations.join(c.id); await loadConvs(); go(`/c/${enc(c.id)}`); } catch (e) { toast(e.message, 'error'); }
          } }, 'Join'))) : h('li', { class: 'muted empty' }, 'No channels yet. Create one below (for a line, a shift or a team): anyone can find and join it here.'));
    } catch (e) { toast(e.message, 'error'); }
  };
  paint();
  // The pattern is compiled with the `v` flag by current browsers: `-` is escaped in the class.
  const name = h('input', { id: 'channel-name', required: true, maxlength: 49, pattern: '#?[a-z0-9_\\-]{1,48}', autocapitalize: 'none', 'aria-label': 'Channel name', 'aria-describedby': 'channel-slug' });
  const slugHint = h('p', { id: 'channel-slug', class: 'muted', 'aria-live': 'polite' }, 'Lower-case letters, digits, - and _.');
  name.addEventListener('input', () => {
    const s = slugify(name.value);
    if (s !== name.value) name.value = s;
    slugHint.textContent = s ? `Will be created as #${s.replace(/^#/, '').replace(/[-_]+$/, '')}` : 'Lower-case letters, digits, - and _.';
  });
  const form = h('form', { class: 'card inline' }, h('h3', {}, 'New channel'), h('label', {}, 'Name ', name), slugHint, h('button', { class: 'primary' }, 'Create channel'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const c = await conversations.createChannel(name.value.replace(/[-_]+$/, ''));
      await loadConvs();
      go(`/c/${enc(c.id)}`);
    } catch (x) { toast(x.message, 'error'); }
  });
  return { el: h('div', { class: 'screen' }, h('h2', {}, 'Channels'), list, form) };
}

// "Line 3" → "line-3" as it is typed: lower case, accents dropped, any other run of characters one
// `-` (a trailing one is kept while typing and dropped on submit), at most 48 after an optional `#`.
export function slugify(v) {
  const hash = v.startsWith('#') ? '#' : '';
  const body = v.slice(hash.length).normalize('NFKD').replace(/[\u0300-\u036f]/g, '').toLowerCase()
    .replace(/[^a-z0-9_-]+/g, '-').replace(/^-+/, '').slice(0, 48);
  return hash + body;
}
