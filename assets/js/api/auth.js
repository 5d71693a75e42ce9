// Paths of /api/v1/auth: who I am, sign in and out, registration, password change; `refresh`
// is the transport's single-flight cookie refresh, offered here for the live link.

import { api, del, enc, get, post } from './http.js';

export { refresh } from './http.js';

export const me = () => get('/api/v1/auth/me');

// A 401 here means wrong credentials, not an expired cookie: no refresh and retry.
export const login = (username, password) =>
  api('POST', '/api/v1/auth/login', { username, password, session: 'cookie' }, false);

export const logout = () => post('/api/v1/auth/logout');

export const register = ({ username, display_name, password }) =>
  post('/api/v1/auth/register', { username, display_name, password });

export const changePassword = (current_password, new_password) =>
  post('/api/v1/auth/password', { current_password, new_password });

// My open sessions (device, address, last use), and ending one of them.
export const sessions = () => get('/api/v1/auth/sessions');

export const endSession = (id) => del(`/api/v1/auth/sessions/${enc(id)}`);
