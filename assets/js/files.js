// Attachments: upload with progress (picker, drag-and-drop, paste), image previews that
// enlarge on click, downloads for everything else.

import { h, clear, size, toast } from './dom.js';
import * as attachments from './api/attachments.js';
import { icon } from './icons.js';

export function attachmentView(a) {
  const url = attachments.url(a.id);
  if (a.mime && a.mime.startsWith('image/')) {
    return h('figure', { class: 'attachment image' },
      h('button', { class: 'thumb', type: 'button', 'aria-label': `Enlarge ${a.name}`, onclick: () => enlarge(url, a.name) },
        h('img', { src: url, alt: a.name, loading: 'lazy' })),
      h('figcaption', {}, h('a', { href: url, download: a.name }, a.name), ` · ${size(a.size)}`));
  }
  return h('div', { class: 'attachment file' }, icon('clip'), ' ', h('a', { href: url, download: a.name }, a.name), ` · ${size(a.size)}`);
}

function enlarge(url, name) {
  const dlg = h('dialog', { class: 'lightbox', 'aria-label': name },
    h('img', { src: url, alt: name }),
    h('form', { method: 'dialog' }, h('button', { class: 'primary' }, 'Close')));
  dlg.addEventListener('close', () => dlg.remove());
  dlg.addEventListener('click', (e) => { if (e.target === dlg) dlg.close(); });
  document.body.append(dlg);
  dlg.showModal();
}

// The composer's attachment tray: uploads start at once; `take()` hands over the finished ones.
export function uploader() {
  const tray = h('div', { class: 'tray' });
  const input = h('input', { type: 'file', multiple: true, hidden: true, id: 'file-input' });
  const done = [];
  const add = (file) => {
    const bar = h('progress', { max: 1, value: 0 });
    const item = h('div', { class: 'upload' }, h('span', {}, file.name || 'pasted image'), bar);
    tray.append(item);
    attachments.upload(file, (p) => { bar.value = p; }).then((info) => {
      done.push(info);
      clear(item, h('span', {}, `✓ ${info.name} (${size(info.size)})`),
        h('button', { type: 'button', class: 'link', 'aria-label': `Remove ${info.name}`, onclick: () => { done.splice(done.indexOf(info), 1); item.remove(); } }, '✕'));
    }, (e) => { item.remove(); toast(`Upload failed: ${e.message}`, 'error'); });
  };
  input.addEventListener('change', () => { [...input.files].forEach(add); input.value = ''; });
  const button = h('button', { type: 'button', class: 'attach', title: 'Attach a file (or drop or paste it)', onclick: () => input.click() }, 'Attach');
  return {
    el: h('div', {}, input, tray),
    button,
    add,
    take: () => { const out = done.splice(0); clear(tray); return out; },
  };
}
