// Paths of /api/v1/conversations/<id>/messages: history pages, edit, delete, reactions.
// Sending is not here: new messages go over the live socket from the outbox (live.js).

import { get, post, put, del, enc } from './http.js';

const base = (conv) => `/api/v1/conversations/${enc(conv)}/messages`;

// The 50 messages before `before` (a seq), or the newest 50 without it.
export const history = (conv, before) => get(`${base(conv)}${before ? `?before=${before}&limit=50` : '?limit=50'}`);

export const edit = (conv, seq, text) => put(`${base(conv)}/${seq}`, { text });

export const remove = (conv, seq) => del(`${base(conv)}/${seq}`);

export const react = (conv, seq, emoji) => post(`${base(conv)}/${seq}/reactions`, { emoji });

export const unreact = (conv, seq, emoji) => del(`${base(conv)}/${seq}/reactions/${enc(emoji)}`);
