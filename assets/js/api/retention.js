// Paths of /api/v1/admin/retention (admins only): the policy with every override and hold, and
// setting one scope (the site, a stream, a conversation) or one class's keep for the site.

import { get, put } from './http.js';

export const status = () => get('/api/v1/admin/retention');

// `scope` is { site: true } | { stream } | { conversation }; the row replaces the stored one.
export const setScope = (scope, keep, hold) => put('/api/v1/admin/retention/scope', { ...scope, keep: keep || null, hold: !!hold });

// The site's keep for one class (`inherit` returns it to the configured one).
export const setClass = (cls, keep) => put('/api/v1/admin/retention/scope', { site: true, class: cls, keep });
