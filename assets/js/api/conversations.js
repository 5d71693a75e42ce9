// Paths of /api/v1/conversations and /api/v1/channels: my list, one conversation's detail,
// new direct/group/channel conversations, joining a channel, the read marker.

import { api, get, post, enc } from './http.js';

export const list = () => get('/api/v1/conversations');

export const detail = (id) => get(`/api/v1/conversations/${enc(id)}`);

export const openDirect = (username) => post(`/api/v1/conversations/direct/${enc(username)}`);

export const createGroup = (name, members) => post('/api/v1/conversations', { kind: 'group', name, members });

export const createChannel = (name) => post('/api/v1/conversations', { kind: 'channel', name });

export const channels = () => get('/api/v1/channels');

export const join = (id) => post(`/api/v1/conversations/${enc(id)}/join`);

// The REST fallback for the socket's `read` frame.
export const markRead = (id, seq) => post(`/api/v1/conversations/${enc(id)}/read`, { seq });

// A conversation's header: rename, invite, leave.
export const rename = (id, name) => api('PUT', `/api/v1/conversations/${enc(id)}/name`, { name });

export const addMembers = (id, users) => post(`/api/v1/conversations/${enc(id)}/members`, { users });

export const leave = (id) => post(`/api/v1/conversations/${enc(id)}/leave`);
