// Paths of /api/v1/events for people: the filtered listing, one event with its chain fields, and
// the export links (CSV / JSON Lines), all from the same filter object.

import { get, enc } from './http.js';

// {source, type, severity, device, since, until, before, after, order, limit} -> query string;
// empty values are left out.
function query(filters) {
  return Object.entries(filters)
    .filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => `${enc(k)}=${enc(String(v))}`)
    .join('&');
}

export const list = (filters) => get(`/api/v1/events?${query(filters)}`);

export const one = (seq) => get(`/api/v1/events/${enc(String(seq))}`);

export const exportUrl = (filters, format) => `/api/v1/events/export?${query({ ...filters, format })}`;
