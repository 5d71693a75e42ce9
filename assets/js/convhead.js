// A conversation's header details: its members with presence, invite people, rename (groups and
// channels) and leave. Opened from the member count in the conversation's head.

import { h, clear, toast } from './dom.js';
import * as conversations from './api/conversations.js';
import * as users from './api/users.js';
import { S, loadConvs, loadDetail, convTitle } from './model.js';

export function convDetails(id, go) {
  const summary = h('summary', { id: 'conv-members' }, 'Members');
  const list = h('ul', { class: 'plain members', id: 'members' });
  const invite = h('input', { id: 'invite-users', placeholder: 'usernames, comma separated', 'aria-label': 'Invite people', autocapitalize: 'none' });
  const inviteForm = h('form', { class: 'row nowrap' }, invite, h('button', { type: 'submit' }, 'Invite'));
  const name = h('input', { id: 'conv-rename', 'aria-label': 'New name', maxlength: 64 });
  const renameForm = h('form', { class: 'row nowrap' }, name, h('button', { type: 'submit' }, 'Rename'));
  const leaveBtn = h('button', { type: 'button', class: 'danger', id: 'conv-leave' }, 'Leave this conversation');
  const body = h('div', { class: 'conv-details-body' }, list, inviteForm, renameForm, leaveBtn);
  const el = h('details', { class: 'conv-details' }, summary, body);
  let asked = '';

  const paint = () => {
    const c = S.convs.get(id);
    if (!c) return;
    const members = c.members || [];
    summary.textContent = `${members.length} member${members.length === 1 ? '' : 's'}`;
    clear(list, members.map((m) => h('li', { class: 'row' },
      h('span', { class: `dot ${S.presence.get(m.username) || 'offline'}`, title: S.presence.get(m.username) || 'offline' }),
      m.username)));
    inviteForm.hidden = c.kind === 'direct';
    renameForm.hidden = c.kind === 'direct';
    if (document.activeElement !== name) name.value = c.name || '';
    // Presence of the members once per member list (the socket keeps it current afterwards).
    const names = members.map((m) => m.username).filter((u) => u !== S.me.username);
    if (names.length && names.join() !== asked) {
      asked = names.join();
      users.presence(names).then((p) => {
        for (const u of p.users) S.presence.set(u.username, u.status);
        paint();
      }, () => {});
    }
  };

  const run = async (f) => { try { await f(); await loadDetail(id); await loadConvs(); } catch (x) { toast(x.message, 'error'); } };
  inviteForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const who = invite.value.split(/[\s,]+/).filter(Boolean);
    if (who.length) run(async () => { await conversations.addMembers(id, who); invite.value = ''; });
  });
  renameForm.addEventListener('submit', (e) => {
    e.preventDefault();
    if (name.value.trim()) run(() => conversations.rename(id, name.value.trim()));
  });
  leaveBtn.addEventListener('click', async () => {
    if (!confirm(`Leave ${convTitle(S.convs.get(id)) || 'this conversation'}?`)) return;
    try { await conversations.leave(id); await loadConvs(); go('/'); } catch (x) { toast(x.message, 'error'); }
  });
  return { el, paint };
}
