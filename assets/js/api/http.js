// The REST transport under every resource module in api/: same-origin fetch with the session
// cookies; a 401 triggers one refresh (POST /api/v1/auth/refresh, the refresh cookie) and a retry.
// Views never import this file for paths: each resource's paths live in its own api/<resource>.js.

export class ApiError extends Error {
  constructor(status, code, message, fields) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    // Per-field refusals of a 422 (`invalid_answers`, `invalid_template`): field → why.
    this.fields = fields || null;
  }
}

// The transport's own path: refreshing is how it answers a 401, so it cannot ask api/auth.js.
const REFRESH = '/api/v1/auth/refresh';

let refreshing = null;
let onSignedOut = () => {};

export function setSignedOutHandler(f) { onSignedOut = f; }

// Single flight: parallel 401s share one refresh.
export function refresh() {
  if (!refreshing) {
    refreshing = fetch(REFRESH, { method: 'POST', credentials: 'same-origin' })
      .then((r) => r.ok)
      .catch(() => null)
      .finally(() => { refreshing = null; });
  }
  return refreshing;
}

async function parse(res) {
  if (res.status === 204) return null;
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!res.ok) throw new ApiError(res.status, body && body.code, body && body.error, body && body.fields);
  return body;
}

// `retry = false` answers a 401 as it is, without a refresh (signing in does that).
export async function api(method, path, body, retry = true) {
  const init = { method, credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 401 && retry) {
    const ok = await refresh();
    if (ok) return api(method, path, body, false);
    if (ok === false) onSignedOut();
  }
  return parse(res);
}

export const get = (p) => api('GET', p);
export const post = (p, b = {}) => api('POST', p, b);
export const put = (p, b) => api('PUT', p, b);
export const del = (p) => api('DELETE', p);
export const enc = encodeURIComponent;
