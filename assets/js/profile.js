// My account: profile, notifications permission, password change, my sessions, sign out.

import { clear, h, time, toast } from './dom.js';
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
      sessionsCard(),
      h('p', {}, out)),
  };
}

// Where I am signed in: each session's device, address and last use; any but this one can be
// ended here (a lost phone, a shared PC).
function sessionsCard() {
  const list = h('ul', { class: 'plain sessions', 'aria-live': 'polite' });
  const paint = async () => {
    try {
      const { sessions } = await auth.sessions();
      clear(list, ...sessions.map((s) => h('li', { class: 'card' },
        h('strong', {}, s.device || 'Unknown device'),
        s.current ? h('span', { class: 'badge' }, 'this device') : null,
        h('div', { class: 'meta' },
          `${s.address || 'address unknown'} · last used ${s.last_used_us ? time(s.last_used_us) : 'unknown'}`),
        s.current ? null : h('button', {
          class: 'danger',
          onclick: async () => {
            try { await auth.endSession(s.id); toast('Session ended'); } catch (e) { toast(e.message, 'error'); }
            paint();
          },
        }, 'End session'))));
    } catch (e) {
      clear(list, h('li', {}, `Sessions cannot be listed: ${e.message}`));
    }
  };
  paint();
  return h('section', { 'aria-labelledby': 'sessions-title' }, h('h3', { id: 'sessions-title' }, 'Signed in on'), list);
}
