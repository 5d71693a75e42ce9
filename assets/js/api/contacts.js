// Paths of /api/v1/contacts: my contacts with the requests both ways, asking, answering,
// removing.

import { get, post, del, enc } from './http.js';

export const list = () => get('/api/v1/contacts');

export const request = (username) => post('/api/v1/contacts/requests', { username });

export const accept = (username) => post(`/api/v1/contacts/requests/${enc(username)}/accept`);

export const reject = (username) => post(`/api/v1/contacts/requests/${enc(username)}/reject`);

export const remove = (username) => del(`/api/v1/contacts/${enc(username)}`);
