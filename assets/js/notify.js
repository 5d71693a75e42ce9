// Browser notifications through the service worker (`/sw.js`, the only way phones allow them),
// the first-sign-in request for permission with its explanation, and the unread count in the
// tab title.

import { h } from './dom.js';

const WORKER = '/sw.js';
let registration = null;

// Registers the worker (it caches the versioned shell only, never API data). A click on one of
// its notifications comes back as a message `{go: path}`.
export function register(go) {
  if (!('serviceWorker' in navigator)) return;
  navigator.serviceWorker.register(WORKER, { scope: '/' })
    .then((r) => { registration = r; })
    .catch(() => { /* notifications fall back to the page's own */ });
  navigator.serviceWorker.addEventListener('message', (e) => {
    if (e.data && typeof e.data.go === 'string' && e.data.go.startsWith('/')) { window.focus(); go(e.data.go); }
  });
}

export const permitted = () => 'Notification' in window && Notification.permission === 'granted';

// Shows a notification through the worker when there is one, else with the page's constructor.
// `extra` adds options (an alarm's `requireInteraction`).
export async function show(title, body, tag, path, go, extra = {}) {
  if (!permitted()) return;
  const reg = registration || (navigator.serviceWorker ? await navigator.serviceWorker.getRegistration('/') : null);
  if (reg) {
    await reg.showNotification(title, { ...extra, body, tag, data: { path } });
    return;
  }
  const n = new Notification(title, { ...extra, body, tag });
  n.onclick = () => { window.focus(); go(path); };
}

// The first time a user signs in on this browser (permission not yet asked): what notifications
// are for, and a button that asks (browsers only ask after a click). "Not now" is remembered.
export function askCard(username) {
  const key = `plantwire.notify-asked.${username}`;
  if (!('Notification' in window) || Notification.permission !== 'default' || localStorage.getItem(key)) return null;
  const done = () => { localStorage.setItem(key, '1'); card.remove(); };
  const card = h('section', { id: 'notify-ask', class: 'notify-ask', 'aria-labelledby': 'notify-ask-title' },
    h('h2', { id: 'notify-ask-title' }, 'Get notified'),
    h('p', {}, 'For direct messages and @mentions while plantwire is in the background, and new alarms (priority on the Me page). The browser asks once.'),
    h('div', { class: 'row' },
      h('button', { type: 'button', class: 'primary', onclick: () => Notification.requestPermission().finally(done) }, 'Allow notifications'),
      h('button', { type: 'button', onclick: done }, 'Not now')));
  return card;
}

// "(3) plantwire" while 3 messages are unread.
export function title(unread) {
  document.title = unread ? `(${unread}) plantwire` : 'plantwire';
}
