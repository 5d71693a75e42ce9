// Administration of accounts: approve, role, disable/enable, reset password, create.

import { h, clear, toast } from './dom.js';
import * as users from './api/users.js';
import { S, emit } from './model.js';

// `go` navigates within the app (to the devices screen).
export function adminScreen(go) {
  const table = h('tbody');
  const secret = h('div', { role: 'status' });
  const act = async (f, msg) => {
    try {
      const r = await f();
      if (r && r.one_time_password) showSecret(r.user.username, r.one_time_password);
      else if (msg) toast(msg);
      paint();
      emit('accounts');
      return true;
    } catch (e) { toast(e.message, 'error'); return false; }
  };
  // The one-time password, shown once: monospace (no l/1 or O/0 guessing) with a copy button.
  const showSecret = (user, pw) => {
    const value = h('output', { id: 'otp-value', class: 'otp-value' }, pw);
    const copied = h('span', { class: 'muted', 'aria-live': 'polite' });
    const copy = async () => {
      try { await navigator.clipboard.writeText(pw); copied.textContent = 'Copied'; } catch {
        getSelection().selectAllChildren(value);
        copied.textContent = 'Selected: copy it with Ctrl+C';
      }
    };
    clear(secret, h('div', { class: 'card inline otp', id: 'otp' },
      h('p', {}, `One-time password for ${user} (shown once; they choose their own at the first sign-in):`),
      h('div', { class: 'row' }, value, h('button', { type: 'button', id: 'otp-copy', onclick: copy }, 'Copy'), copied)));
  };
  const paint = async () => {
    try {
      const r = await users.accounts();
      clear(table, r.users.map((u) => {
        const self = u.username === S.me.username;
        const role = h('select', { 'aria-label': `Role of ${u.username}`, disabled: self },
          ['viewer', 'auditor', 'operator', 'admin'].map((x) => h('option', { value: x, selected: x === u.role }, x)));
        role.addEventListener('change', () => act(() => users.setRole(u.username, role.value), 'Role changed'));
        return h('tr', { dataset: { user: u.username } },
          h('td', {}, u.username), h('td', {}, u.display_name), h('td', {}, role), h('td', {}, u.status),
          h('td', {}, h('div', { class: 'row' },
            u.status === 'pending' ? h('button', { class: 'primary', onclick: () => act(() => users.approve(u.username), 'Approved') }, 'Approve') : null,
            !self && u.status === 'active' ? h('button', { onclick: () => act(() => users.disable(u.username), 'Disabled') }, 'Disable') : null,
            !self && u.status === 'disabled' ? h('button', { onclick: () => act(() => users.enable(u.username), 'Enabled') }, 'Enable') : null,
            !self ? h('button', { onclick: () => act(() => users.resetPassword(u.username)) }, 'Reset password') : null)));
      }));
    } catch (e) { toast(e.message, 'error'); }
  };
  paint();
  const uname = h('input', { required: true, name: 'username', 'aria-label': 'Username', placeholder: 'username', autocapitalize: 'none' });
  const dname = h('input', { required: true, 'aria-label': 'Display name', placeholder: 'display name' });
  const role = h('select', { 'aria-label': 'Role' }, ['operator', 'viewer', 'auditor', 'admin'].map((x) => h('option', { value: x }, x)));
  const form = h('form', { class: 'card inline', id: 'new-account' }, h('h3', {}, 'New account'), uname, dname, role, h('button', { class: 'primary' }, 'Create'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    act(() => users.createAccount({ username: uname.value.trim(), display_name: dname.value.trim(), role: role.value }))
      .then((ok) => { if (ok) form.reset(); });
  });
  return {
    el: h('div', { class: 'screen' },
      h('p', { class: 'row' },
        h('a', { href: '/admin/devices', class: 'nav', onclick: (e) => { e.preventDefault(); go('/admin/devices'); } }, 'Devices: tokens and certificates →'),
        h('a', { href: '/admin/retention', class: 'nav', onclick: (e) => { e.preventDefault(); go('/admin/retention'); } }, 'Retention and legal holds →')),
      h('h2', {}, 'Accounts'), secret,
      h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, ['User', 'Name', 'Role', 'Status', ''].map((x) => h('th', {}, x)))), table)),
      form),
  };
}
