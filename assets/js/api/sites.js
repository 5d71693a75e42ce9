// Paths of /api/v1/sites (HQ only; 404 elsewhere): the sites the signed-in person may read (all
// for admins and auditors, the granted ones for others), the all-sites overview, one site's
// entries, and a site's grants (admins and auditors read them, admins change them).

import { get, put, del, enc } from './http.js';

export const list = () => get('/api/v1/sites');
export const overview = () => get('/api/v1/sites/overview');

// `q`: { since | before, limit, kind } (kind `alarm.` takes every alarm kind).
export function entries(site, q) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q || {})) if (v !== undefined && v !== null && v !== '') p.set(k, String(v));
  const qs = p.toString();
  return get(`/api/v1/sites/${encodeURIComponent(site)}/entries${qs ? `?${qs}` : ''}`);
}

// Download URL of an attachment a site's entry names (for callers reading the site whole).
export const attachmentUrl = (site, id) => `/api/v1/sites/${enc(site)}/attachments/${enc(id)}`;

export const grants = (site) => get(`/api/v1/sites/${enc(site)}/grants`);
// `role`: viewer | operator | admin.
export const grant = (site, user, role) => put(`/api/v1/sites/${enc(site)}/grants/${enc(user)}`, { role });
export const ungrant = (site, user) => del(`/api/v1/sites/${enc(site)}/grants/${enc(user)}`);
