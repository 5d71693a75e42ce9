// The alarm KPI page: figures (ISA-18.2 / EEMUA 191) over a chosen range and three charts drawn
// here as SVG (no library): annunciations per 10 minutes, the top-10 bad actors, the priority mix.
// Every chart has a title, a description and its numbers as text.

import { h, clear, toast } from './dom.js';
import * as api from './api/alarms.js';
import { SHAPE } from './banner.js';

const NS = 'http://www.w3.org/2000/svg';
const HOUR = 3600e6;
const RANGES = [[HOUR, 'Last hour'], [24 * HOUR, 'Last 24 h'], [7 * 24 * HOUR, 'Last 7 days'], [30 * 24 * HOUR, 'Last 30 days']];
const PRIORITIES = ['critical', 'high', 'medium', 'low', 'diagnostic'];

function s(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

let chartNo = 0;
// An accessible SVG frame: role img, labelled by its title and described by its description.
function chart(cls, w, ht, title, desc, parts) {
  const id = `chart-${++chartNo}`;
  return s('svg', { class: `chart ${cls}`, viewBox: `0 0 ${w} ${ht}`, role: 'img', 'aria-labelledby': `${id}-t ${id}-d`, preserveAspectRatio: 'xMinYMin meet' },
    s('title', { id: `${id}-t` }, title), s('desc', { id: `${id}-d` }, desc), parts);
}

const fmt = (x, d = 1) => (x === null || x === undefined ? '—' : Number(x).toFixed(d));
const when = (us) => new Date(us / 1000).toLocaleString();

// Annunciations per 10-minute period, one bar per period, with the flood line at 10.
function histogram(k) {
  const w = 720; const ht = 200; const pad = 28;
  const n = k.per_10min.length;
  const max = Math.max(11, ...k.per_10min);
  const bw = (w - pad) / Math.max(1, n);
  const y = (v) => ht - 20 - (v / max) * (ht - 30);
  const bars = k.per_10min.map((v, i) => s('rect', { class: `bar${v > 10 ? ' over' : ''}`, x: pad + i * bw, y: y(v), width: Math.max(0.5, bw - 1), height: ht - 20 - y(v) },
    s('title', {}, `${when(k.since_us + i * 600e6)}: ${v}`)));
  return chart('histogram', w, ht, 'Annunciated alarms per 10 minutes',
    `${n} periods from ${when(k.since_us)} to ${when(k.until_us)}; maximum ${k.per_10min_max}, average ${fmt(k.per_10min_avg, 2)}; ${fmt(k.periods_over_10_pct)} % of periods above 10 (the dashed line).`,
    [s('line', { class: 'axis', x1: pad, y1: ht - 20, x2: w, y2: ht - 20 }),
      s('line', { class: 'flood', x1: pad, y1: y(10), x2: w, y2: y(10) }),
      s('text', { x: 2, y: y(10) + 4, class: 'tick' }, '10'),
      s('text', { x: 2, y: y(max) + 10, class: 'tick' }, String(max)),
      bars]);
}

// The top 10 bad actors as horizontal bars with their counts and shares.
function badActors(k) {
  const w = 720; const rowH = 26; const label = 300;
  const ht = Math.max(1, k.bad_actors.length) * rowH + 4;
  const max = Math.max(1, ...k.bad_actors.map((a) => a.count));
  const rows = k.bad_actors.map((a, i) => {
    const len = ((w - label - 110) * a.count) / max;
    return s('g', {},
      s('text', { x: 0, y: i * rowH + 17, class: 'lbl' }, `${a.source} · ${a.condition}`.slice(0, 40)),
      s('rect', { class: 'bar', x: label, y: i * rowH + 4, width: Math.max(1, len), height: rowH - 8 }, s('title', {}, `${a.source} · ${a.condition}: ${a.count}`)),
      s('text', { x: label + len + 6, y: i * rowH + 17, class: 'lbl' }, `${a.count} (${fmt(a.share_pct)} %)`));
  });
  return chart('bad-actors', w, ht, 'Top 10 bad actors',
    k.bad_actors.length ? `The ${k.bad_actors.length} conditions with the most annunciations: ${fmt(k.top10_share_pct)} % of all. ` + k.bad_actors.map((a) => `${a.source} ${a.condition} ${a.count}`).join(', ') : 'No annunciations in the range.',
    rows);
}

// The priority mix as one bar per priority with shape, label and count.
function priorityMix(k) {
  const w = 720; const rowH = 30; const label = 150;
  const total = Object.values(k.priority_mix).reduce((a, b) => a + b, 0);
  const present = PRIORITIES.filter((p) => k.priority_mix[p]);
  const ht = Math.max(1, present.length) * rowH + 4;
  const rows = present.map((p, i) => {
    const n = k.priority_mix[p];
    const len = ((w - label - 120) * n) / Math.max(1, total);
    return s('g', { class: `prio ${p}` },
      s('text', { x: 0, y: i * rowH + 20, class: 'lbl' }, `${SHAPE[p]} ${p}`),
      s('rect', { class: `bar mix ${p}`, x: label, y: i * rowH + 5, width: Math.max(1, len), height: rowH - 10 }, s('title', {}, `${p}: ${n}`)),
      s('text', { x: label + len + 6, y: i * rowH + 20, class: 'lbl' }, `${n} (${fmt((n * 100) / Math.max(1, total))} %)`));
  });
  return chart('priority-mix', w, ht, 'Priority mix',
    present.length ? present.map((p) => `${p} ${k.priority_mix[p]}`).join(', ') : 'No annunciations in the range.', rows);
}

function figures(k) {
  const f = [
    ['Annunciated', k.annunciated],
    ['Per 10 min (average / maximum)', `${fmt(k.per_10min_avg, 2)} / ${k.per_10min_max}`],
    ['Periods over 10', `${fmt(k.periods_over_10_pct)} %`],
    ['Time in flood', `${fmt(k.flood_time_pct)} %`],
    ['Top-10 share', `${fmt(k.top10_share_pct)} %`],
    ['Chattering', k.chattering.length ? k.chattering.map((c) => `${c.source} · ${c.condition} (${c.max_in_60s} in 60 s)`).join(', ') : 'none'],
    ['Stale (active > 24 h)', k.stale],
    ['Mean time to acknowledge', k.mean_time_to_ack_secs === null ? '—' : `${fmt(k.mean_time_to_ack_secs)} s`],
    ['Standing / shelved now', `${k.standing} / ${k.shelved}`],
  ];
  return h('dl', { class: 'kpi-figures' }, f.map(([t, v]) => [h('dt', {}, t), h('dd', {}, String(v))]));
}

export function kpiScreen(go) {
  const range = h('select', { 'aria-label': 'Range' }, RANGES.map(([us, l]) => h('option', { value: us, selected: us === 24 * HOUR }, l)), h('option', { value: 'custom' }, 'Custom'));
  const from = h('input', { type: 'datetime-local', 'aria-label': 'From', hidden: true });
  const to = h('input', { type: 'datetime-local', 'aria-label': 'To', hidden: true });
  const out = h('div', { class: 'kpi-body', 'aria-live': 'polite' });
  // `/alarms/kpis?since=&until=` (UTC µs) opens a given range.
  const asked = new URLSearchParams(location.search);
  let fixed = asked.get('since') && asked.get('until') ? [Number(asked.get('since')), Number(asked.get('until'))] : null;
  const load = async () => {
    const custom = range.value === 'custom';
    from.hidden = !custom; to.hidden = !custom;
    let since; let until;
    if (fixed) {
      [since, until] = fixed;
      fixed = null;
    } else if (custom) {
      if (!from.value || !to.value) return;
      since = new Date(from.value).getTime() * 1000;
      until = new Date(to.value).getTime() * 1000;
    } else {
      until = Date.now() * 1000;
      since = until - Number(range.value);
    }
    try {
      const k = await api.kpis(since, until);
      clear(out, figures(k),
        h('section', { class: 'kpi-chart' }, h('h3', {}, 'Alarm rate'), k.per_10min.length ? histogram(k) : h('p', { class: 'muted' }, 'The range is too long for the rate chart; choose a shorter one.')),
        h('section', { class: 'kpi-chart' }, h('h3', {}, 'Bad actors'), badActors(k)),
        h('section', { class: 'kpi-chart' }, h('h3', {}, 'Priority mix'), priorityMix(k)),
        k.truncated ? h('p', { class: 'error' }, 'The range holds more alarm entries than one read visits; the figures are cut short.') : null);
    } catch (e) { toast(e.message, 'error'); }
  };
  range.addEventListener('change', load);
  from.addEventListener('change', load);
  to.addEventListener('change', load);
  load();
  return {
    el: h('div', { class: 'screen kpis' },
      h('div', { class: 'row' }, h('h2', {}, 'Alarm KPIs'),
        h('a', { class: 'button', href: '/alarms', onclick: (e) => { e.preventDefault(); go('/alarms'); } }, 'Alarm summary')),
      h('div', { class: 'row' }, range, from, to, h('button', { onclick: load }, 'Refresh')),
      out),
  };
}
