// Sign-in, the forced first password change, and the registration request.

import { h, clear } from './dom.js';
import * as auth from './api/auth.js';
import * as site from './api/site.js';

function field(label, name, type = 'text', extra = {}) {
  const id = `f-${name}-${Math.random().toString(36).slice(2, 7)}`;
  return h('div', { class: 'field' },
    h('label', { for: id }, label),
    h('input', { id, name, type, required: true, ...extra }));
}

export function loginScreen(done) {
  const err = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { id: 'login-form', class: 'card' },
    h('h1', {}, 'Sign in to plantwire'),
    field('Username', 'username', 'text', { autocomplete: 'username', autocapitalize: 'none' }),
    field('Password', 'password', 'password', { autocomplete: 'current-password' }),
    err,
    h('button', { type: 'submit', class: 'primary' }, 'Sign in'),
    h('button', { type: 'button', class: 'link', onclick: () => form.replaceWith(registerForm(() => form)) }, 'Request an account'),
    siteInfo());
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.textContent = '';
    const username = form.elements.username.value.trim();
    const password = form.elements.password.value;
    try {
      const r = await auth.login(username, password);
      if (r.user.must_change_password) form.replaceWith(passwordScreen(done, true, password));
      else done();
    } catch (x) {
      err.textContent = x.message;
    }
  });
  return h('div', { class: 'center' }, form);
}

// Which site this is and its CA fingerprint, to compare with the one the administrator gave out
// (or `plantwire discover` shows) before typing a password.
function siteInfo() {
  const box = h('p', { id: 'site-info', class: 'site-info muted' });
  site.info().then((s) => {
    clear(box, 'Site ', h('strong', {}, s.site),
      s.ca_fingerprint ? [' · CA fingerprint (SHA-256), compare it with the one you were given: ', h('code', { class: 'fingerprint' }, s.ca_fingerprint)] : null);
  }, () => {});
  return box;
}

function registerForm(back) {
  const msg = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'card', id: 'register-form' },
    h('h1', {}, 'Request an account'),
    field('Username', 'username', 'text', { autocapitalize: 'none' }),
    field('Your name', 'display_name'),
    field('Password (10+ characters)', 'password', 'password', { autocomplete: 'new-password', minlength: 10 }),
    msg,
    h('button', { type: 'submit', class: 'primary' }, 'Send request'),
    h('button', { type: 'button', class: 'link', onclick: () => form.replaceWith(back()) }, 'Back to sign in'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    msg.textContent = '';
    try {
      const r = await auth.register({
        username: form.elements.username.value.trim(),
        display_name: form.elements.display_name.value.trim(),
        password: form.elements.password.value,
      });
      msg.className = 'ok';
      msg.textContent = r.status === 'pending'
        ? 'Request sent. An administrator must approve it before you can sign in.'
        : 'Account created. You can sign in now.';
    } catch (x) {
      msg.className = 'error';
      msg.textContent = x.code === 'registration_closed' ? 'This server does not take registrations; ask an administrator.' : x.message;
    }
  });
  return form;
}

// Also used from the profile screen (forced = the first sign-in with a one-time password).
export function passwordScreen(done, forced, current = '') {
  const msg = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'card', id: 'password-form' },
    h('h1', {}, forced ? 'Choose your password' : 'Change password'),
    forced ? h('p', {}, 'You signed in with a one-time password. Choose your own to continue.') : null,
    field('Current password', 'current_password', 'password', { autocomplete: 'current-password', value: current }),
    field('New password (10+ characters)', 'new_password', 'password', { autocomplete: 'new-password', minlength: 10 }),
    field('New password again', 'confirm_password', 'password', { autocomplete: 'new-password', minlength: 10 }),
    h('label', { class: 'hit-row' }, h('input', {
      type: 'checkbox', name: 'show_passwords',
      onchange: (e) => { for (const i of form.querySelectorAll('input[name$=_password]')) i.type = e.target.checked ? 'text' : 'password'; },
    }), ' Show passwords'),
    msg,
    h('button', { type: 'submit', class: 'primary' }, 'Change password'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    msg.textContent = '';
    // One typo on a phone with gloves would otherwise cost an admin reset.
    if (form.elements.new_password.value !== form.elements.confirm_password.value) {
      msg.className = 'error';
      msg.textContent = 'The two new passwords differ.';
      form.elements.confirm_password.focus();
      return;
    }
    try {
      await auth.changePassword(form.elements.current_password.value, form.elements.new_password.value);
      msg.className = 'ok';
      msg.textContent = 'Password changed.';
      form.reset();
      if (forced) done();
    } catch (x) {
      msg.className = 'error';
      msg.textContent = x.message;
    }
  });
  return forced ? h('div', { class: 'center' }, form) : form;
}
