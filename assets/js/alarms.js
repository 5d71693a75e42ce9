// The alarm summary: current alarms by priority then time, unacknowledged ones flashing, each
// priority with a shape and a label; ack one or all visible with a comment, shelve with a preset
// duration and a reason, unshelve; a click shows the alarm's journal. Live from the socket.

import { h, clear, toast } from './dom.js';
import { on, S } from './model.js';
import * as api from './api/alarms.js';
import { alarms, load } from './reducers/alarms.js';

const RANK = { critical: 4, high: 3, medium: 2, low: 1, diagnostic: 0 };
const SHAPE = { critical: '◆', high: '▲', medium: '■', low: '●', diagnostic: '○' };
const STATE = { unack: 'Unacknowledged', acked: 'Acknowledged', rtn_unack: 'Cleared, unacknowledged', normal: 'Normal' };
const PRESETS = [[15, '15 min'], [60, '1 h'], [240, '4 h'], [480, '8 h'], [0, 'Until normal']];

const time = (us) => new Date(us / 1000).toLocaleString();

// Standing alarms (not back to normal, or still shelved), highest priority first, then newest.
function visible() {
  return [...alarms.values()]
    .filter((a) => a.state !== 'normal' || a.shelved || a.out_of_service)
    .sort((a, b) => RANK[b.priority] - RANK[a.priority] || b.raised_at_us - a.raised_at_us);
}

export function alarmsScreen() {
  const operator = S.me.role !== 'viewer';
  const body = h('tbody');
  const journal = h('section', { class: 'card journal', 'aria-label': 'Journal' });
  const comment = h('input', { 'aria-label': 'Comment', placeholder: 'comment (for acknowledging)' });
  const reason = h('input', { 'aria-label': 'Shelve reason', placeholder: 'reason (for shelving)' });
  const duration = h('select', { 'aria-label': 'Shelve for' }, PRESETS.map(([m, l]) => h('option', { value: m }, l)));
  const act = async (f, msg) => {
    try { await f(); if (msg) toast(msg); } catch (e) { toast(e.message, 'error'); }
  };
  const show = async (id) => {
    try {
      const d = await api.detail(id);
      clear(journal, h('h3', {}, `${d.source} · ${d.condition} (#${d.occurrence})`),
        h('ol', {}, d.journal.map((j) => h('li', { dataset: { kind: j.kind } },
          `${time(j.ts_us)} ${j.kind.slice(6)} by ${j.by}${j.note ? ` — ${j.note}` : ''}`))));
    } catch (e) { toast(e.message, 'error'); }
  };
  const row = (a) => {
    const actions = h('div', { class: 'row' });
    if (operator && !a.acked) {
      actions.append(h('button', { class: 'primary', onclick: () => act(() => api.ack(a.id, comment.value.trim()), 'Acknowledged') }, 'Ack'));
    }
    if (operator && !a.shelved) {
      actions.append(h('button', { onclick: () => act(() => api.shelve(a.id, Number(duration.value), reason.value.trim()), 'Shelved') }, 'Shelve'));
    }
    if (operator && a.shelved) actions.append(h('button', { onclick: () => act(() => api.unshelve(a.id), 'Unshelved') }, 'Unshelve'));
    return h('tr', { class: `alarm ${a.state}`, dataset: { id: a.id, priority: a.priority, state: a.state } },
      h('td', { class: `prio ${a.priority}` }, h('span', { 'aria-hidden': 'true' }, SHAPE[a.priority]), ` ${a.priority}`),
      h('td', {}, STATE[a.state] + (a.shelved ? ' · shelved' : '') + (a.out_of_service ? ' · out of service' : '')),
      h('td', {}, h('a', { href: '#', onclick: (e) => { e.preventDefault(); show(a.id); } }, `${a.source} · ${a.condition}`)),
      h('td', {}, a.message),
      h('td', {}, time(a.raised_at_us)),
      h('td', {}, actions));
  };
  let frame = 0;
  const paint = () => {
    if (frame) return;
    // Batched per animation frame: a flood of entries redraws once.
    frame = requestAnimationFrame(() => {
      frame = 0;
      const list = visible();
      clear(body, list.length ? list.map(row) : h('tr', {}, h('td', { colspan: 6 }, 'No standing alarms.')));
    });
  };
  const ackVisible = () => {
    const ids = visible().filter((a) => !a.acked).map((a) => a.id);
    if (ids.length) act(() => api.ackMany(ids, comment.value.trim()), `Acknowledged ${ids.length}`);
  };
  const off = on('alarms', paint);
  api.list().then((r) => load(r.alarms)).catch((e) => toast(e.message, 'error'));
  const tools = operator
    ? h('div', { class: 'row' }, comment, h('button', { onclick: ackVisible }, 'Ack visible'), duration, reason)
    : null;
  return {
    el: h('div', { class: 'screen alarms' }, h('h2', {}, 'Alarms'), tools,
      h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, ['Priority', 'State', 'Alarm', 'Message', 'Raised', ''].map((x) => h('th', {}, x)))),
        body)),
      journal),
    close: () => { off(); if (frame) cancelAnimationFrame(frame); },
  };
}
