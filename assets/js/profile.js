// My account: profile, notifications permission, password change, sign out.

import { h } from './dom.js';
import * as auth from './api/auth.js';
import { S } from './model.js';
import { passwordScreen } from './login.js';

export function profileScreen(signedOut) {
  const me = S.me;
  const notif = h('button', { id: 'notify-btn' });
  const paintNotif = () => {
    const p = 'Notification' in window ? Notification.permission : 'unsupported';
    notif.textContent = p === 'granted' ? 'Notifications on' : p === 'denied' ? 'Notifications blocked by the browser' : 'Enable notifications';
    notif.disabled = p !== 'default';
  };
  notif.addEventListener('click', () => Notification.requestPermission().then(paintNotif));
  paintNotif();
  const out = h('button', { id: 'sign-out', class: 'danger', onclick: async () => { try { await auth.logout(); } finally { signedOut(); } } }, 'Sign out');
  return {
    el: h('div', { class: 'screen' },
      h('h2', {}, 'Me'),
      h('dl', { class: 'card' },
        h('dt', {}, 'Name'), h('dd', {}, me.display_name),
        h('dt', {}, 'Username'), h('dd', {}, me.username),
        h('dt', {}, 'Role'), h('dd', {}, me.role),
        h('dt', {}, 'Site'), h('dd', {}, me.site)),
      h('p', {}, notif, ' Direct messages and mentions while this tab is hidden.'),
      passwordScreen(() => {}, false),
      h('p', {}, out)),
  };
}
