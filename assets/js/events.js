// The event viewer: filters, a live list (its own socket, domain `events`), a detail pane with the
// attributes and the raw entry (seq, prev, hash), and export links. A table on wide screens, cards
// on a phone (app.css).

import { h, clear, toast } from './dom.js';
import * as events from './api/events.js';
import { socketUrl } from './api/socket.js';
import { S } from './model.js';

const SEVERITIES = ['debug', 'info', 'notice', 'warning', 'error', 'critical'];
const rank = (s) => SEVERITIES.indexOf(s);

const fmtTime = (us) => new Date(Math.floor(us / 1000)).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');

// A datetime-local value (the browser's local time) as RFC 3339 UTC; '' stays ''.
const toRfc3339 = (v) => (v ? new Date(v).toISOString() : '');

export function eventsScreen(go, openSeq) {
  const field = (name, label, attrs = {}) => h('label', { class: 'ev-field' }, h('span', {}, label),
    h('input', { name, autocapitalize: 'none', spellcheck: 'false', ...attrs }));
  const severity = h('select', { name: 'severity', 'aria-label': 'Minimum severity' },
    h('option', { value: '' }, 'any'), SEVERITIES.map((s) => h('option', { value: s }, s)));
  const form = h('form', { id: 'event-filters', class: 'ev-filters' },
    field('source', 'Source'), field('type', 'Type'),
    h('label', { class: 'ev-field' }, h('span', {}, 'Min severity'), severity),
    field('device', 'Device'),
    field('since', 'From', { type: 'datetime-local', step: '1' }),
    field('until', 'To', { type: 'datetime-local', step: '1' }),
    h('div', { class: 'row' }, h('button', { class: 'primary', type: 'submit' }, 'Apply'),
      h('button', { type: 'reset' }, 'Clear')));
  const csv = h('a', { class: 'button', id: 'export-csv', download: 'events.csv' }, 'Export CSV');
  const jsonl = h('a', { class: 'button', id: 'export-jsonl', download: 'events.jsonl' }, 'Export JSONL');
  const list = h('ol', { id: 'event-list', class: 'ev-list', 'aria-label': 'Events' });
  const empty = h('p', { id: 'events-empty', class: 'muted empty', hidden: true },
    'No events here. Devices send them to the ingest API (an admin adds devices under Admin → Devices); if filters are set, widen them or the time range. New events appear here live.');
  const paintEmpty = () => { empty.hidden = list.childElementCount > 0; };
  const more = h('button', { id: 'event-more', hidden: true }, 'Older events');
  const detail = h('section', { id: 'event-detail', class: 'ev-detail', 'aria-live': 'polite', hidden: true });
  const status = h('span', { id: 'event-live', class: 'muted', role: 'status' }, 'connecting…');

  let filters = {};
  let seen = new Set();
  let next = null;
  let selected = null;

  const current = () => {
    const d = new FormData(form);
    const f = {};
    for (const k of ['source', 'type', 'severity', 'device']) f[k] = String(d.get(k) || '').trim();
    f.since = toRfc3339(String(d.get('since') || ''));
    f.until = toRfc3339(String(d.get('until') || ''));
    return f;
  };

  // Whether a live entry matches the filters the list shows (the server applies the same rules).
  const matches = (e) => {
    const b = e.body || {};
    if (filters.source && b.source !== filters.source) return false;
    if (filters.type && b.type !== filters.type) return false;
    if (filters.severity && rank(b.severity) < rank(filters.severity)) return false;
    if (filters.device && e.author !== `device:${filters.device}`) return false;
    if (filters.since && e.ts_us < Date.parse(filters.since) * 1000) return false;
    if (filters.until && e.ts_us > Date.parse(filters.until) * 1000) return false;
    return true;
  };

  const row = (ev) => {
    const li = h('li', { class: `ev sev-${ev.severity}`, dataset: { seq: ev.seq } },
      h('button', { class: 'ev-open', 'aria-label': `Event ${ev.seq}: ${ev.source} ${ev.type}`, onclick: () => show(ev.seq) },
        h('span', { class: 'ev-seq' }, `#${ev.seq}`),
        h('time', { class: 'ev-ts' }, fmtTime(ev.ts_us)),
        h('span', { class: 'ev-sev' }, ev.severity),
        h('span', { class: 'ev-src' }, ev.source),
        h('span', { class: 'ev-type' }, ev.type),
        h('span', { class: 'ev-msg' }, ev.message || ''),
        h('span', { class: 'ev-by muted' }, ev.by)));
    if (selected === ev.seq) li.classList.add('active');
    return li;
  };

  async function show(seq) {
    selected = seq;
    for (const li of list.children) li.classList.toggle('active', Number(li.dataset.seq) === seq);
    try {
      const e = await events.one(seq);
      const b = e.body;
      const attrs = Object.entries(b.attributes || {});
      clear(detail,
        h('div', { class: 'row' }, h('h3', {}, `Event #${e.seq}`),
          go && (S.me.role === 'operator' || S.me.role === 'admin') ? h('button', { class: 'open-incident', onclick: () => go(`/incidents/new?event=${e.seq}`) }, 'Open incident') : null,
          h('button', { class: 'ev-close', 'aria-label': 'Close details', onclick: () => { detail.hidden = true; selected = null; } }, '×')),
        h('dl', { class: 'ev-dl' },
          h('dt', {}, 'Seq'), h('dd', { id: 'detail-seq' }, String(e.seq)),
          h('dt', {}, 'Time'), h('dd', {}, `${fmtTime(e.ts_us)} (${e.ts_us} µs)`),
          h('dt', {}, 'Severity'), h('dd', {}, b.severity),
          h('dt', {}, 'Source'), h('dd', {}, b.source),
          h('dt', {}, 'Type'), h('dd', {}, b.type),
          h('dt', {}, 'Message'), h('dd', { class: 'text' }, b.message || ''),
          h('dt', {}, 'Author'), h('dd', {}, e.author),
          h('dt', {}, 'Stream'), h('dd', {}, e.stream),
          h('dt', {}, 'Hash'), h('dd', { id: 'detail-hash', class: 'mono' }, e.hash),
          h('dt', {}, 'Prev'), h('dd', { class: 'mono' }, e.prev)),
        h('h4', {}, 'Attributes'),
        attrs.length
          ? h('dl', { class: 'ev-dl' }, attrs.map(([k, v]) => [h('dt', {}, k), h('dd', {}, JSON.stringify(v))]))
          : h('p', { class: 'muted' }, 'none'),
        h('h4', {}, 'Raw entry'),
        h('pre', { class: 'mono ev-raw' }, JSON.stringify(e, null, 2)));
      detail.hidden = false;
      if (window.matchMedia('(max-width: 720px)').matches) detail.scrollIntoView({ block: 'nearest' });
    } catch (err) { toast(err.message, 'error'); }
  }

  const links = () => {
    csv.href = events.exportUrl({ ...filters, order: 'desc' }, 'csv');
    jsonl.href = events.exportUrl({ ...filters, order: 'desc' }, 'jsonl');
  };

  async function load(older) {
    try {
      const q = { ...filters, order: 'desc', limit: 100 };
      if (older && next) q.before = next;
      const r = await events.list(q);
      if (!older) { clear(list); seen = new Set(); }
      for (const ev of r.events) {
        if (seen.has(ev.seq)) continue;
        seen.add(ev.seq);
        list.append(row(ev));
      }
      next = r.next || null;
      more.hidden = !next;
      paintEmpty();
    } catch (err) { toast(err.message, 'error'); }
  }

  // Live: its own socket following only the `events` domain, resumed from the last seq seen.
  let ws = null;
  let since = null;
  let closed = false;
  let attempt = 0;
  let timer = null;
  const connect = () => {
    if (closed) return;
    const s = new WebSocket(socketUrl());
    ws = s;
    s.onmessage = (m) => {
      let f;
      try { f = JSON.parse(m.data); } catch { return; }
      if (f.type === 'hello') {
        if (since === null) since = f.head;
        s.send(JSON.stringify({ type: 'subscribe', since, domains: ['events'] }));
      } else if (f.type === 'caught_up') {
        attempt = 0;
        if (f.head > since) since = f.head;
        status.textContent = 'live';
        status.dataset.state = 'online';
      } else if (f.type === 'resync') {
        since = f.head;
        load(false);
      } else if (f.type === 'entry' && f.kind === 'event') {
        if (f.seq > since) since = f.seq;
        if (seen.has(f.seq) || !matches(f)) return;
        seen.add(f.seq);
        list.prepend(row({ seq: f.seq, ts_us: f.ts_us, ...f.body }));
        paintEmpty();
      }
    };
    s.onclose = () => {
      if (ws !== s) return;
      ws = null;
      status.textContent = 'reconnecting…';
      status.dataset.state = 'offline';
      if (closed) return;
      const delay = Math.min(15000, 500 * 2 ** Math.min(attempt, 5));
      attempt += 1;
      timer = setTimeout(connect, delay);
    };
  };

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    filters = current();
    links();
    load(false);
  });
  form.addEventListener('reset', () => setTimeout(() => { filters = {}; links(); load(false); }, 0));
  more.addEventListener('click', () => load(true));

  links();
  // The socket first, so its hello.head is no later than the listing: nothing falls between.
  connect();
  load(false);
  // Opened from search (`/events?seq=N`): show that event's detail at once.
  if (openSeq) show(openSeq);

  return {
    el: h('div', { class: 'screen events-screen' },
      h('div', { class: 'row' }, h('h2', {}, 'Events'), status,
        h('div', { class: 'row ev-export' }, csv, jsonl)),
      h('details', { class: 'ev-filter-box', open: window.matchMedia('(min-width: 721px)').matches },
        h('summary', {}, 'Filters'), form),
      h('div', { class: 'ev-body' }, h('div', { class: 'ev-main' }, list, empty, more), detail)),
    close: () => {
      closed = true;
      clearTimeout(timer);
      if (ws) { const s = ws; ws = null; s.close(1000); }
    },
  };
}
