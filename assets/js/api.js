// REST client: same-origin fetch with the session cookies; a 401 triggers one refresh
// (POST /api/v1/auth/refresh with the refresh cookie) and a retry. Uploads use XHR for progress.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

let refreshing = null;
let onSignedOut = () => {};

export function setSignedOutHandler(f) { onSignedOut = f; }

// Single flight: parallel 401s share one refresh.
export function refresh() {
  if (!refreshing) {
    refreshing = fetch('/api/v1/auth/refresh', { method: 'POST', credentials: 'same-origin' })
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
  if (!res.ok) throw new ApiError(res.status, body && body.code, body && body.error);
  return body;
}

export async function api(method, path, body, retry = true) {
  const init = { method, credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 401 && retry && !path.startsWith('/api/v1/auth/login')) {
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

// Raw-body upload with progress: resolves to {id, name, mime, size, sha256}.
export function upload(file, onProgress, retry = true) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `/api/v1/attachments?name=${enc(file.name || 'pasted')}`);
    xhr.withCredentials = true;
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.onerror = () => reject(new ApiError(0, 'network', 'upload failed: no connection'));
    xhr.onload = async () => {
      if (xhr.status === 401 && retry && (await refresh())) {
        upload(file, onProgress, false).then(resolve, reject);
        return;
      }
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { body = null; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body && body.code, body && body.error));
    };
    xhr.send(file);
  });
}
