// The alarm summary: standing alarms by priority then time (virtualised rows: only what is in
// view is in the DOM; redrawn once per animation frame), unacknowledged ones flashing, each
// priority with a shape and a label; multi-select, ack selected / ack visible with a comment,
// shelve selected with a preset duration and a reason; the shelved list with unshelve; each
// alarm's journal; the history with filters, paging and CSV export. Live from the socket.

import { h, clear, toast } from './dom.js';
import { on, S } from './model.js';
import * as api from './api/alarms.js';
import { alarms, load } from './reducers/alarms.js';
import { SHAPE } from './banner.js';

const RANK = { critical: 4, high: 3, medium: 2, low: 1, diagnostic: 0 };
const STATE = { unack: 'Unacknowledged', acked: 'Acknowledged', rtn_unack: 'Cleared, unacknowledged', normal: 'Normal' };
const PRESETS = [[15, '15 min'], [60, '1 h'], [240, '4 h'], [480, '8 h'], [0, 'Until normal']];
const PRIORITIES = ['critical', 'high', 'medium', 'low', 'diagnostic'];
/// Row height in px (app.css `tr.alarm` matches); rows above and below the view are spacers.
const ROW = 48;
const OVERSCAN = 10;
const MAX_IDS = 10000;

const time = (us) => new Date(us / 1000).toLocaleString();
const byPrio = (a, b) => RANK[b.priority] - RANK[a.priority] || b.raised_at_us - a.raised_at_us || b.id - a.id;

// Standing alarms (not back to normal, or still shelved / out of service).
const standing = () => [...alarms.values()]
  .filter((a) => a.state !== 'normal' || a.shelved || a.out_of_service).sort(byPrio);
const shelvedList = () => [...alarms.values()].filter((a) => a.shelved).sort(byPrio);

const prioCell = (p) => h('td', { class: `prio ${p}` }, h('span', { 'aria-hidden': 'true' }, SHAPE[p]), ` ${p}`);

// A table body that holds only the rows in view of `scroller` (fixed row height).
function virtualBody(scroller, cols, rowOf, empty) {
  const body = h('tbody');
  const topPad = h('td', { colspan: cols });
  const bottomPad = h('td', { colspan: cols });
  const top = h('tr', { class: 'spacer', 'aria-hidden': 'true' }, topPad);
  const bottom = h('tr', { class: 'spacer', 'aria-hidden': 'true' }, bottomPad);
  let items = [];
  let frame = 0;
  const render = () => {
    frame = 0;
    if (!items.length) { clear(body, h('tr', {}, h('td', { colspan: cols }, empty))); return; }
    const view = scroller.clientHeight || 600;
    const first = Math.max(0, Math.floor(scroller.scrollTop / ROW) - OVERSCAN);
    const last = Math.min(items.length, first + Math.ceil(view / ROW) + 2 * OVERSCAN);
    topPad.style.height = `${first * ROW}px`;
    bottomPad.style.height = `${(items.length - last) * ROW}px`;
    clear(body, top, items.slice(first, last).map(rowOf), bottom);
  };
  const schedule = () => { if (!frame) frame = requestAnimationFrame(render); };
  scroller.addEventListener('scroll', schedule, { passive: true });
  return {
    body,
    set: (list) => { items = list; schedule(); },
    items: () => items,
    stop: () => { if (frame) cancelAnimationFrame(frame); },
  };
}

export function alarmsScreen(go) {
  const operator = S.me.role === 'operator' || S.me.role === 'admin';
  const selected = new Set();
  let mode = 'standing';
  const journal = h('section', { class: 'card journal', 'aria-label': 'Journal' });
  const comment = h('input', { 'aria-label': 'Comment', placeholder: 'comment (for acknowledging)' });
  const reason = h('input', { 'aria-label': 'Shelve reason', placeholder: 'reason (for shelving)' });
  const duration = h('select', { 'aria-label': 'Shelve for' }, PRESETS.map(([m, l]) => h('option', { value: m }, l)));
  const count = h('p', { class: 'muted', role: 'status', id: 'alarm-count' });
  const act = async (f, msg) => {
    try { const r = await f(); if (msg) toast(typeof msg === 'function' ? msg(r) : msg); } catch (e) { toast(e.message, 'error'); }
  };
  const show = async (id) => {
    try {
      const d = await api.detail(id);
      clear(journal, h('h3', {}, `${d.source} · ${d.condition} (#${d.occurrence})`),
        h('ol', {}, d.journal.map((j) => h('li', { dataset: { kind: j.kind } },
          `${time(j.ts_us)} ${j.kind.slice(6)} by ${j.by}${j.note ? ` — ${j.note}` : ''}`))));
    } catch (e) { toast(e.message, 'error'); }
  };
  const link = (a) => h('a', { href: '#', onclick: (e) => { e.preventDefault(); show(a.id); } }, `${a.source} · ${a.condition}`);

  const scroller = h('div', { class: 'vlist', tabindex: '0', 'aria-label': 'Alarm list' });
  const standingRow = (a) => {
    const actions = h('div', { class: 'row nowrap' });
    if (operator && !a.acked) {
      actions.append(h('button', { class: 'primary', onclick: () => act(() => api.ack(a.id, comment.value.trim()), 'Acknowledged') }, 'Ack'));
    }
    if (operator && a.shelved) actions.append(h('button', { onclick: () => act(() => api.unshelve(a.id), 'Unshelved') }, 'Unshelve'));
    if (operator) actions.append(h('button', { class: 'open-incident', onclick: () => go(`/incidents/new?alarm=${a.id}`) }, 'Open incident'));
    const pick = h('input', {
      type: 'checkbox', class: 'pick', 'aria-label': `Select ${a.source} ${a.condition}`,
      onchange: (e) => { if (e.target.checked) selected.add(a.id); else selected.delete(a.id); paintCount(); },
    });
    pick.checked = selected.has(a.id);
    return h('tr', { class: `alarm ${a.state}`, dataset: { id: a.id, priority: a.priority, state: a.state } },
      operator ? h('td', { class: 'pick-cell' }, h('label', { class: 'hit' }, pick)) : null,
      prioCell(a.priority),
      h('td', {}, STATE[a.state] + (a.shelved ? ' · shelved' : '') + (a.out_of_service ? ' · out of service' : '')),
      h('td', { class: 'alarm-name' }, link(a)),
      h('td', { class: 'alarm-msg' }, a.message),
      h('td', { class: 'alarm-time' }, time(a.raised_at_us)),
      h('td', {}, actions));
  };
  const shelvedRow = (a) => h('tr', { class: `alarm shelved-row ${a.state}`, dataset: { id: a.id, priority: a.priority, state: a.state } },
    prioCell(a.priority),
    h('td', { class: 'alarm-name' }, link(a)),
    h('td', {}, a.shelf && a.shelf.mode === 'one_shot' ? 'until normal' : `until ${time(a.shelf ? a.shelf.until_us : 0)}`),
    h('td', { class: 'alarm-msg' }, a.shelf ? `${a.shelf.reason} (${a.shelf.by})` : ''),
    h('td', {}, operator ? h('button', { onclick: () => act(() => api.unshelve(a.id), 'Unshelved') }, 'Unshelve') : null));

  const cols = operator ? 7 : 6;
  const vStanding = virtualBody(scroller, cols, standingRow, 'No standing alarms: every alarm is back to normal. New ones appear here live, highest priority first.');
  const vShelved = virtualBody(scroller, 5, shelvedRow, 'Nothing is shelved. To shelve a standing alarm, tick it under Standing and use Shelve selected.');
  const all = h('input', {
    type: 'checkbox', 'aria-label': 'Select all',
    onchange: (e) => {
      for (const a of vStanding.items()) { if (e.target.checked) selected.add(a.id); else selected.delete(a.id); }
      paint();
    },
  });
  const heads = (names) => h('thead', {}, h('tr', {}, names.map((x) => h('th', { scope: 'col' }, x))));
  const standingTable = h('table', { class: 'alarm-table' },
    heads([operator ? h('label', { class: 'hit' }, all) : null, 'Priority', 'State', 'Alarm', 'Message', 'Raised', ''].filter((x) => x !== null)), vStanding.body);
  const shelvedTable = h('table', { class: 'alarm-table' }, heads(['Priority', 'Alarm', 'Shelved', 'Reason (by)', '']), vShelved.body);

  function paintCount() {
    const list = vStanding.items();
    for (const id of [...selected]) if (!alarms.has(id)) selected.delete(id);
    count.textContent = mode === 'shelved'
      ? `${vShelved.items().length} shelved`
      : `${list.length} standing · ${list.filter((a) => !a.acked).length} unacknowledged · ${selected.size} selected`;
  }
  let frame = 0;
  function paint() {
    if (frame) return;
    // Batched per animation frame: a flood of entries recomputes the lists once.
    frame = requestAnimationFrame(() => {
      frame = 0;
      vStanding.set(standing());
      vShelved.set(shelvedList());
      paintCount();
    });
  }
  const ackIds = (ids) => {
    if (!ids.length) { toast('Nothing to acknowledge'); return; }
    act(async () => {
      let acked = 0;
      for (let i = 0; i < ids.length; i += MAX_IDS) acked += (await api.ackMany(ids.slice(i, i + MAX_IDS), comment.value.trim())).acked;
      return acked;
    }, (n) => `Acknowledged ${n}`);
  };
  const ackVisible = () => ackIds(vStanding.items().filter((a) => !a.acked).map((a) => a.id));
  const ackSelected = () => ackIds(vStanding.items().filter((a) => !a.acked && selected.has(a.id)).map((a) => a.id));
  const shelveSelected = () => {
    const ids = vStanding.items().filter((a) => selected.has(a.id) && !a.shelved).map((a) => a.id);
    if (!ids.length) { toast('Select alarms to shelve'); return; }
    act(async () => {
      for (const id of ids) await api.shelve(id, Number(duration.value), reason.value.trim());
      selected.clear();
      return ids.length;
    }, (n) => `Shelved ${n}`);
  };

  const hist = historyPanel();
  const tabs = h('div', { class: 'row tabs', role: 'group', 'aria-label': 'View' });
  const panes = {
    standing: h('div', { class: 'pane-standing' },
      operator ? h('div', { class: 'row alarm-tools' }, comment,
        h('button', { onclick: ackSelected }, 'Ack selected'), h('button', { onclick: ackVisible }, 'Ack visible'),
        duration, reason, h('button', { onclick: shelveSelected }, 'Shelve selected')) : null),
    shelved: h('div', { class: 'pane-shelved' }),
    history: hist.el,
  };
  const listBox = h('div', { class: 'table-wrap' }, scroller);
  const setMode = (m) => {
    mode = m;
    for (const b of tabs.children) b.setAttribute('aria-pressed', String(b.dataset.mode === m));
    for (const [k, el] of Object.entries(panes)) el.hidden = k !== m;
    listBox.hidden = m === 'history';
    count.hidden = m === 'history';
    clear(scroller, m === 'shelved' ? shelvedTable : standingTable);
    scroller.scrollTop = 0;
    paint();
  };
  for (const [m, label] of [['standing', 'Standing'], ['shelved', 'Shelved'], ['history', 'History']]) {
    tabs.append(h('button', { dataset: { mode: m }, onclick: () => setMode(m) }, label));
  }
  tabs.append(h('a', { class: 'button', href: '/alarms/kpis', onclick: (e) => { e.preventDefault(); go('/alarms/kpis'); } }, 'KPIs'));

  const off = on('alarms', paint);
  api.list().then((r) => load(r.alarms)).catch((e) => toast(e.message, 'error'));
  setMode('standing');
  return {
    el: h('div', { class: 'screen alarms' }, h('h2', {}, 'Alarms'), tabs, panes.standing, panes.shelved, panes.history,
      count, listBox, journal),
    close: () => { off(); vStanding.stop(); vShelved.stop(); if (frame) cancelAnimationFrame(frame); },
  };
}

// The history: filters (source, priority, time range in local time), pages of 200 with "More",
// and the CSV export of everything the filters select.
function historyPanel() {
  const source = h('input', { 'aria-label': 'Source', placeholder: 'source' });
  const prio = h('select', { 'aria-label': 'Priority' }, h('option', { value: '' }, 'any priority'), PRIORITIES.map((p) => h('option', { value: p }, p)));
  const since = h('input', { type: 'datetime-local', 'aria-label': 'From' });
  const until = h('input', { type: 'datetime-local', 'aria-label': 'To' });
  const body = h('tbody');
  const more = h('button', { hidden: true }, 'More');
  const status = h('p', { class: 'muted', role: 'status' });
  const us = (input) => (input.value ? new Date(input.value).getTime() * 1000 : undefined);
  const filters = () => ({ source: source.value.trim(), priority: prio.value, since: us(since), until: us(until) });
  let next = null;
  let shown = 0;
  const rows = (list) => list.map((t) => h('tr', { class: 'hist', dataset: { seq: t.seq } },
    h('td', {}, time(t.ts_us)), prioCell(t.priority), h('td', {}, `${t.source} · ${t.condition}`),
    h('td', {}, t.kind.slice(6)), h('td', {}, t.by), h('td', {}, t.note || '')));
  const page = async (fresh) => {
    try {
      const r = await api.history({ ...filters(), limit: 200, after: fresh ? undefined : next });
      if (fresh) { clear(body); shown = 0; }
      body.append(...rows(r.transitions));
      shown += r.transitions.length;
      next = r.next ?? null;
      more.hidden = next === null;
      status.textContent = `${shown} transitions${next !== null ? ' (more follow)' : ''}`;
    } catch (e) { toast(e.message, 'error'); }
  };
  more.addEventListener('click', () => page(false));
  const exportCsv = async () => {
    try {
      const text = await api.historyCsv(filters(), (n) => { status.textContent = `Exporting… ${n} rows`; });
      const a = h('a', { href: URL.createObjectURL(new Blob([text], { type: 'text/csv' })), download: 'alarm-history.csv' });
      document.body.append(a);
      a.click();
      a.remove();
      status.textContent = `Exported ${text.split('\n').length - 2} rows`;
    } catch (e) { toast(e.message, 'error'); }
  };
  return {
    el: h('div', { class: 'pane-history' },
      h('div', { class: 'row ev-filters' }, source, prio, since, until,
        h('button', { class: 'primary', onclick: () => page(true) }, 'Show'),
        h('button', { onclick: exportCsv }, 'Export CSV')),
      status,
      h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, ['Time', 'Priority', 'Alarm', 'Transition', 'By', 'Note'].map((x) => h('th', { scope: 'col' }, x)))),
        body)),
      more),
  };
}
