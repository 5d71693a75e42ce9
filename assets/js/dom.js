// DOM helpers: build elements from plain data. User text only ever goes in as text nodes;
// nothing in the UI assigns innerHTML. Links are made only for http(s) URLs.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value') el.value = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

// `f` at most once per frame however often the returned function is called (a burst of socket
// entries repaints once); a timer stands in where frames do not run (a hidden tab).
export function perFrame(f) {
  let raf = 0;
  let timer = 0;
  const run = () => {
    cancelAnimationFrame(raf);
    clearTimeout(timer);
    raf = 0;
    timer = 0;
    f();
  };
  return () => {
    if (raf || timer) return;
    raf = requestAnimationFrame(run);
    timer = setTimeout(run, 100);
  };
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const URL_RE = /\bhttps?:\/\/[^\s<>"']+/g;

// Message text with http(s) links and @mentions; everything else stays text.
export function richText(text, me) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(URL_RE)) {
    out.push(...mentions(text.slice(last, m.index), me));
    let href = m[0].replace(/[).,;:!?]+$/, '');
    try {
      const u = new URL(href);
      if (u.protocol === 'http:' || u.protocol === 'https:') {
        out.push(h('a', { href: u.href, target: '_blank', rel: 'noopener noreferrer' }, href));
      } else out.push(href);
    } catch { out.push(href); }
    last = m.index + href.length;
  }
  out.push(...mentions(text.slice(last), me));
  return out;
}

function mentions(text, me) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(/@([A-Za-z0-9._-]{3,32})/g)) {
    out.push(text.slice(last, m.index));
    out.push(h('span', { class: m[1].toLowerCase() === (me || '').toLowerCase() ? 'mention me' : 'mention' }, m[0]));
    last = m.index + m[0].length;
  }
  out.push(text.slice(last));
  return out.filter((s) => s !== '');
}

export function time(us) {
  const d = new Date(us / 1000);
  const now = new Date();
  const t = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return d.toDateString() === now.toDateString() ? t : `${d.toLocaleDateString()} ${t}`;
}

export function size(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}

// A short-lived line in the status area (errors and confirmations).
export function toast(text, kind = 'info') {
  const box = document.getElementById('toasts');
  if (!box) return;
  const t = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
  box.append(t);
  setTimeout(() => t.remove(), 6000);
}
