// My account: profile, notifications permission, alarm sound and notification settings,
// password change, my sessions, sign out.

import { clear, h, time, toast } from './dom.js';
import * as auth from './api/auth.js';
import { S } from './model.js';
import { passwordScreen } from './login.js';
import * as annunciation from './annunciate.js';
import { THEMES, theme, setTheme } from './theme.js';

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
      h('p', {}, notif, ' Direct messages and mentions while this tab is hidden, and new alarms at the priority chosen below.'),
      themeSettings(),
      alarmSettings(),
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

// How new alarms announce themselves in this browser: the sound on or off and the lowest
// priority that notifies (kept in localStorage per user).
function alarmSettings() {
  const sound = h('input', {
    type: 'checkbox', id: 'alarm-sound',
    onchange: (e) => annunciation.setSound(e.target.checked),
  });
  sound.checked = annunciation.soundOn();
  const min = h('select', {
    id: 'alarm-min-priority',
    onchange: (e) => annunciation.setMinPriority(e.target.value),
  }, annunciation.LEVELS.map((p) => h('option', { value: p }, p)));
  min.value = annunciation.minPriority();
  return h('section', { class: 'card alarm-settings', 'aria-labelledby': 'alarm-settings-title' },
    h('h3', { id: 'alarm-settings-title' }, 'Alarms'),
    h('p', {}, h('label', { class: 'hit', for: 'alarm-sound' }, sound), h('label', { for: 'alarm-sound' }, 'Alarm sound')),
    h('p', {}, h('label', { for: 'alarm-min-priority' }, 'Alarm notifications from priority '), min),
    h('p', { class: 'muted' }, 'New unacknowledged alarms arriving while this page is open; diagnostic, shelved, suppressed and out-of-service alarms stay quiet.'));
}

// The theme toggle: system, light or dark, for this browser (a control-room PC whose OS theme is
// light can still run the UI dark).
function themeSettings() {
  const names = { system: 'Same as the system', light: 'Light', dark: 'Dark' };
  return h('fieldset', { class: 'card theme-settings' },
    h('legend', {}, 'Theme'),
    THEMES.map((t) => {
      const r = h('input', { type: 'radio', name: 'theme', value: t, id: `theme-${t}`, onchange: () => setTheme(t) });
      r.checked = theme() === t;
      return h('label', { class: 'hit-row', for: `theme-${t}` }, r, ` ${names[t]}`);
    }));
}
