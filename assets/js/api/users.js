// Paths of /api/v1/users, /api/v1/presence and /api/v1/admin/users: people search, presence of
// named users, and the administration of accounts (admins only).

import { get, post, put, enc } from './http.js';

export const search = (q, limit, after) => get(`/api/v1/users?q=${enc(q)}&limit=${limit}${after ? `&after=${enc(after)}` : ''}`);

export const presence = (usernames) => get(`/api/v1/presence?users=${enc(usernames.join(','))}`);

const account = (username) => `/api/v1/admin/users/${enc(username)}`;

export const accounts = () => get('/api/v1/admin/users');

export const pendingAccounts = () => get('/api/v1/admin/users?status=pending');

export const createAccount = ({ username, display_name, role }) =>
  post('/api/v1/admin/users', { username, display_name, role });

export const setRole = (username, role) => put(`${account(username)}/role`, { role });

export const approve = (username) => post(`${account(username)}/approve`);

export const disable = (username) => post(`${account(username)}/disable`);

export const enable = (username) => post(`${account(username)}/enable`);

// Answers with the one-time password, shown once.
export const resetPassword = (username) => post(`${account(username)}/reset-password`);
