// Paths of /api/v1/alarms: the current alarms, one alarm with its journal, what operators do to
// them (ack, ack visible, shelve, unshelve, comment), the history (JSON pages and CSV) and KPIs.

import { get, post, enc, refresh } from './http.js';

const one = (id) => `/api/v1/alarms/${enc(id)}`;

export const list = () => get('/api/v1/alarms');

export const detail = (id) => get(one(id));

export const ack = (id, comment) => post(`${one(id)}/ack`, comment ? { comment } : {});

export const ackMany = (ids, comment) => post('/api/v1/alarms/ack', comment ? { ids, comment } : { ids });

export const shelve = (id, minutes, reason) =>
  post(`${one(id)}/shelve`, minutes ? { mode: 'timed', minutes, reason } : { mode: 'one_shot', reason });

export const unshelve = (id) => post(`${one(id)}/unshelve`);

export const comment = (id, text) => post(`${one(id)}/comment`, { text });

// `q`: {since, until (UTC µs), source, priority, after, limit}; empty values are left out.
function query(q) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== null && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : '';
}

// One page of the history: {transitions, next?}.
export const history = (q) => get(`/api/v1/alarms/history${query(q)}`);

// The history as one CSV text: follows the pages' `x-next-after` header to the end.
export async function historyCsv(q, onPage) {
  let after = null;
  let out = '';
  for (;;) {
    const path = `/api/v1/alarms/history${query({ ...q, after, limit: 10000 })}`;
    let res = await fetch(path, { credentials: 'same-origin', headers: { accept: 'text/csv' } });
    if (res.status === 401 && await refresh()) res = await fetch(path, { credentials: 'same-origin', headers: { accept: 'text/csv' } });
    if (!res.ok) throw new Error(`export failed: HTTP ${res.status}`);
    const text = await res.text();
    out += out ? text.slice(text.indexOf('\n') + 1) : text;
    if (onPage) onPage(out.split('\n').length - 2);
    after = res.headers.get('x-next-after');
    if (!after) return out;
  }
}

export const kpis = (since, until) => get(`/api/v1/alarms/kpis${query({ since, until })}`);
