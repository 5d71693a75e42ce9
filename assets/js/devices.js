// The devices screen for admins: the machines that publish events, their credential (token or
// certificate: serial, expiry), add (the token or the bundle is offered once), renew, revoke.

import { h, clear, toast } from './dom.js';
import * as devices from './api/devices.js';

const day = (us) => (us ? new Date(us / 1000).toISOString().slice(0, 10) : '');

// A download link for one file of a bundle, from a blob URL that is revoked when the screen goes.
function fileLink(urls, name, data, type) {
  const url = URL.createObjectURL(new Blob([data], { type }));
  urls.push(url);
  return h('a', { href: url, download: name, class: 'button' }, name);
}

function fromBase64(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function devicesScreen() {
  const urls = [];
  const table = h('tbody');
  const secret = h('div', { class: 'ok', role: 'status' });
  const showSecret = (name, r) => {
    if (r.token) {
      clear(secret, h('p', {}, `API token for ${name} (shown once): `, h('code', {}, r.token)));
      return;
    }
    const c = r.certificate;
    if (!c) return;
    const links = [fileLink(urls, `${name}.crt`, c.cert_pem, 'application/x-pem-file'),
      fileLink(urls, 'ca.crt', c.ca_pem, 'application/x-pem-file')];
    if (c.key_pem) links.push(fileLink(urls, `${name}.key`, c.key_pem, 'application/x-pem-file'));
    if (c.p12_base64) links.push(fileLink(urls, `${name}.p12`, fromBase64(c.p12_base64), 'application/x-pkcs12'));
    clear(secret,
      h('p', {}, `Certificate for ${name}, serial ${c.serial}, valid until ${day(c.not_after_us)}. Download it now: it is shown once.`),
      c.p12_password ? h('p', {}, 'PKCS#12 password: ', h('code', {}, c.p12_password)) : null,
      h('div', { class: 'row' }, links));
  };
  const act = async (name, f, msg) => {
    try { const r = await f(); if (r) showSecret(name, r); else if (msg) toast(msg); paint(); } catch (e) { toast(e.message, 'error'); }
  };
  const paint = async () => {
    try {
      const r = await devices.list();
      clear(table, r.devices.map((d) => {
        const live = (d.certificates || []).filter((c) => !c.revoked_at_us);
        const newest = live[live.length - 1];
        const kind = [d.has_token ? 'token' : null, live.length ? 'certificate' : null].filter(Boolean).join(' + ') || '—';
        const cell = (v) => h('td', {}, v === undefined || v === null ? '' : String(v));
        return h('tr', { dataset: { device: d.name } },
          h('td', {}, d.name), h('td', {}, kind),
          h('td', {}, newest ? `${newest.serial.slice(0, 12)}… until ${day(newest.not_after_us)}` : ''),
          h('td', {}, `${d.created_by}, ${day(d.created_at_us)}`),
          h('td', {}, d.revoked_at_us ? `revoked ${day(d.revoked_at_us)}` : 'active'),
          cell(d.last_seen_us ? day(d.last_seen_us) : d.last_seen), cell(d.rate_per_min), cell(d.refused),
          h('td', {}, d.revoked_at_us ? null : h('div', { class: 'row' },
            h('button', { onclick: () => act(d.name, () => devices.renew(d.name)) }, 'New certificate'),
            h('button', { class: 'danger', onclick: () => { if (confirm(`Revoke ${d.name}? Its token and certificates stop working at once.`)) act(d.name, () => devices.revoke(d.name), 'Revoked'); } }, 'Revoke'))));
      }));
    } catch (e) { toast(e.message, 'error'); }
  };
  paint();
  const name = h('input', { required: true, 'aria-label': 'Device name', placeholder: 'device name', autocapitalize: 'none' });
  const credential = h('select', { 'aria-label': 'Credential' },
    h('option', { value: 'token' }, 'API token'), h('option', { value: 'certificate' }, 'client certificate'));
  const csr = h('textarea', { 'aria-label': 'CSR (optional, PEM)', placeholder: 'CSR (optional, PEM): the key stays on the device', rows: 3 });
  const form = h('form', { class: 'card inline' }, h('h3', {}, 'New device'), name, credential, csr, h('button', { class: 'primary' }, 'Add'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const n = name.value.trim();
    const pem = credential.value === 'certificate' ? csr.value.trim() : '';
    act(n, () => devices.add(n, credential.value, pem || undefined));
  });
  return {
    el: h('div', { class: 'screen' }, h('h2', {}, 'Devices'), secret,
      h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {},
        ['Device', 'Credential', 'Certificate', 'Created', 'Status', 'Last seen', 'Rate/min', 'Refused', ''].map((x) => h('th', {}, x)))), table)),
      form),
    close: () => { for (const u of urls) URL.revokeObjectURL(u); },
  };
}
