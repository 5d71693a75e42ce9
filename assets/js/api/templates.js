// Paths of /api/v1/templates: list, one (with a past version), create, new version, archive, delete
// (only one never used), and the builder's preview filled from a sample context.

import { get, post, put, del, enc } from './http.js';

const one = (id) => `/api/v1/templates/${enc(id)}`;

export const list = (archived) => get(`/api/v1/templates${archived ? '?archived=true' : ''}`);

export const detail = (id) => get(one(id));

export const create = (t) => post('/api/v1/templates', t);

export const update = (id, t) => put(one(id), t);

export const archive = (id, archived) => post(`${one(id)}/archive`, { archived });

export const preview = (template, context) => post('/api/v1/templates/preview', { template, context });

export const remove = (id) => del(one(id));
