// Paths of /api/v1/search: one page of hits for a query, newest first, continued with `before`.

import { get, enc } from './http.js';

export const search = (q, { limit = 50, before = null } = {}) =>
  get(`/api/v1/search?q=${enc(q)}&limit=${limit}${before ? `&before=${enc(String(before))}` : ''}`);
