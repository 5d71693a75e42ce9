// Paths of /api/v1/incidents: the list with filters, one incident, opening one, answers, state
// changes, assignment, and the report (JSON for the timeline, the page's URL for printing).

import { get, post, enc, refresh, ApiError } from './http.js';

const one = (id) => `/api/v1/incidents/${enc(id)}`;

function query(q) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q || {})) if (v !== undefined && v !== null && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : '';
}

export const list = (filters) => get(`/api/v1/incidents${query(filters)}`);

export const detail = (id) => get(one(id));

export const open = (body) => post('/api/v1/incidents', body);

export const answer = (id, answers) => post(`${one(id)}/answers`, { answers });

export const setState = (id, state, reason) => post(`${one(id)}/state`, reason ? { state, reason } : { state });

export const assign = (id, body) => post(`${one(id)}/assign`, body);

export const reportUrl = (id) => `${one(id)}/report`;

// The report as JSON (the page asks with Accept: application/json).
export async function report(id, retry = true) {
  const res = await fetch(reportUrl(id), { credentials: 'same-origin', headers: { accept: 'application/json' } });
  if (res.status === 401 && retry && (await refresh())) return report(id, false);
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(res.status, body && body.code, body && body.error);
  return body;
}
