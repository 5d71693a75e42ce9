// Paths of /api/v1/attachments: the download URL of one attachment, and the raw-body upload by
// XHR (for its progress events) with the same one-refresh-on-401 rule as the fetch transport.

import { ApiError, refresh, enc } from './http.js';

export const url = (id) => `/api/v1/attachments/${enc(id)}`;

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
