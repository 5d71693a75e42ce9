// Paths of /api/v1/admin/devices (admins only): list, add with a token or a certificate (the
// answer carries the secret once), renew a certificate, revoke.

import { get, post, del, enc } from './http.js';

const device = (name) => `/api/v1/admin/devices/${enc(name)}`;

export const list = () => get('/api/v1/admin/devices');

// `credential` is 'token' or 'certificate'; `csr` (PEM) only with a certificate.
export const add = (name, credential, csr) =>
  post('/api/v1/admin/devices', csr ? { name, credential, csr } : { name, credential });

export const renew = (name, csr) => post(`${device(name)}/renew`, csr ? { csr } : {});

export const revoke = (name) => del(device(name));
