// The alarm banner on every page (phone layout too): unacknowledged and active counts per
// priority and the highest priority present, each with a shape and a label besides its colour;
// flashing while anything is unacknowledged. Live from the socket's `alarms` domain; a tap opens
// the summary. Redrawn at most once per animation frame.

import { h, clear } from './dom.js';
import { on } from './model.js';
import * as api from './api/alarms.js';
import { alarms, load } from './reducers/alarms.js';

export const ORDER = ['critical', 'high', 'medium', 'low'];
export const SHAPE = { critical: '◆', high: '▲', medium: '■', low: '●', diagnostic: '○' };

// Whether the board annunciates `a` now: not back to normal and not shelved, out of service,
// suppressed or diagnostic.
export const annunciated = (a) =>
  a.state !== 'normal' && !a.shelved && !a.out_of_service && !a.suppressed && a.priority !== 'diagnostic';

// Counts per priority: {critical: {unack, active}, …}, with the highest priority present.
export function tally() {
  const by = Object.fromEntries(ORDER.map((p) => [p, { unack: 0, active: 0 }]));
  for (const a of alarms.values()) {
    if (!annunciated(a) || !by[a.priority]) continue;
    if (!a.acked) by[a.priority].unack += 1;
    if (a.active) by[a.priority].active += 1;
  }
  const top = ORDER.find((p) => by[p].unack || by[p].active) || null;
  return { by, top };
}

// Loads the current alarms into the model (at start and after a resync).
export function reload() {
  return api.list().then((r) => load(r.alarms)).catch(() => {});
}

export function alarmBanner(go) {
  const el = h('a', { id: 'alarm-banner', class: 'alarm-banner', href: '/alarms', onclick: (e) => { e.preventDefault(); go('/alarms'); } });
  let frame = 0;
  const paint = () => {
    frame = 0;
    const { by, top } = tally();
    const unack = ORDER.reduce((n, p) => n + by[p].unack, 0);
    const active = ORDER.reduce((n, p) => n + by[p].active, 0);
    el.dataset.top = top || 'none';
    el.dataset.unack = unack;
    el.dataset.active = active;
    el.classList.toggle('flash', unack > 0);
    const said = ORDER.filter((p) => by[p].unack || by[p].active)
      .map((p) => `${p}: ${by[p].unack} unacknowledged, ${by[p].active} active`);
    el.setAttribute('aria-label', said.length ? `Alarms, highest ${top}. ${said.join('; ')}. Open the alarm summary.` : 'No alarms. Open the alarm summary.');
    if (!top) { clear(el, h('span', { class: 'ab-none' }, '○ No alarms')); return; }
    clear(el,
      h('span', { class: `ab-top prio ${top}`, dataset: { priority: top } }, h('span', { 'aria-hidden': 'true' }, SHAPE[top]), ` ${top}`),
      ORDER.filter((p) => by[p].unack || by[p].active).map((p) =>
        h('span', { class: `ab-chip prio ${p}`, dataset: { priority: p, unack: by[p].unack, active: by[p].active } },
          h('span', { 'aria-hidden': 'true' }, SHAPE[p]),
          h('span', { class: 'ab-label' }, ` ${p} `),
          h('span', { class: 'ab-n', title: 'unacknowledged / active' }, `${by[p].unack}/${by[p].active}`))));
  };
  const soon = () => { if (!frame) frame = requestAnimationFrame(paint); };
  paint();
  on('alarms', soon);
  return el;
}
