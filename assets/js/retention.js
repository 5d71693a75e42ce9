// The retention screen for admins: how long each class is kept (configured, and the site's own
// keep over it), the site's legal hold, every override and hold by scope, and what waits in the
// grace period. The same as `plantwire retention …`; purges and restores stay on the CLI.

import { h, clear, toast } from './dom.js';
import * as retention from './api/retention.js';

const CLASSES = [
  ['events', 'Device events'],
  ['alarms', 'Alarms'],
  ['incidents', 'Incidents'],
  ['chat', 'Conversations and contacts'],
  ['admin', 'Administration and audit trail'],
];

const scopeName = (s) => (s === 'site' ? 'Whole site' : s.replace(/^stream:conv\//, 'conversation ').replace(/^stream:/, 'stream '));

const scopeOf = (s) => {
  if (s === 'site') return { site: true };
  const stream = s.replace(/^stream:/, '');
  return stream.startsWith('conv/') ? { conversation: stream.slice(5) } : { stream };
};

export function retentionScreen() {
  const classes = h('tbody');
  const scopes = h('tbody');
  const summary = h('p', { id: 'retention-summary' });
  const siteHold = h('div', { class: 'row' });
  let last = null;
  const act = async (f, msg) => {
    try { show(await f()); toast(msg); return true; } catch (e) { toast(e.message, 'error'); return false; }
  };
  const show = (r) => {
    last = r;
    const site = r.scopes.find((s) => s.scope === 'site') || { keep: null, hold: false, classes: {} };
    const held = r.config.legal_hold || site.hold;
    clear(summary, held
      ? h('strong', {}, 'Legal hold on the whole site: nothing is purged.')
      : `Payloads older than their keep are purged every ${Math.round(r.config.interval_secs / 60)} min; a purged payload can be restored for ${r.config.grace_days} days.`,
      ` ${r.restorable} purged ${r.restorable === 1 ? 'entry' : 'entries'} can still be restored (plantwire retention restore).`);
    clear(siteHold, r.config.legal_hold
      ? h('span', { class: 'muted' }, 'The site is held by the configuration (retention.legal_hold).')
      : h('button', {
        id: 'site-hold', class: site.hold ? '' : 'danger',
        onclick: () => act(() => retention.setScope({ site: true }, site.keep, !site.hold), site.hold ? 'Hold released' : 'Hold placed'),
      }, site.hold ? 'Release the legal hold on the site' : 'Place a legal hold on the whole site'));
    const fallback = site.keep && site.keep !== 'inherit' ? site.keep : r.config.default;
    clear(classes, CLASSES.map(([cls, label]) => {
      const configured = r.config[cls] === 'inherit' ? `inherit (${r.config.default})` : r.config[cls];
      const own = (site.classes || {})[cls];
      const effective = own || (r.config[cls] === 'inherit' ? fallback : r.config[cls]);
      const input = h('input', { 'aria-label': `Keep ${label}`, placeholder: 'forever, inherit or 30 days', value: own || '', size: 14 });
      const set = h('form', { class: 'row' }, input, h('button', {}, 'Set'));
      set.addEventListener('submit', (e) => {
        e.preventDefault();
        act(() => retention.setClass(cls, input.value.trim() || 'inherit'), `${label}: ${input.value.trim() || 'inherit'}`);
      });
      return h('tr', { dataset: { class: cls } },
        h('td', {}, label), h('td', {}, configured), h('td', { class: 'effective' }, effective), h('td', {}, set));
    }));
    const rows = r.scopes.filter((s) => s.scope !== 'site');
    clear(scopes, rows.length ? rows.map((s) => h('tr', { dataset: { scope: s.scope } },
      h('td', {}, scopeName(s.scope)), h('td', {}, s.keep || 'class default'), h('td', {}, s.hold ? 'held' : ''),
      h('td', {}, h('div', { class: 'row' },
        s.hold ? h('button', { onclick: () => act(() => retention.setScope(scopeOf(s.scope), s.keep, false), 'Hold released') }, 'Release hold') : null,
        s.keep ? h('button', { onclick: () => act(() => retention.setScope(scopeOf(s.scope), null, s.hold), 'Override removed') }, 'Remove override') : null))))
      : h('tr', {}, h('td', { colspan: 4, class: 'muted' }, 'No overrides or holds. Add one below for a conversation or a stream.')));
  };
  const load = async () => {
    try { show(await retention.status()); } catch (e) { toast(e.message, 'error'); }
  };
  load();
  const target = h('input', { required: true, 'aria-label': 'Conversation id or stream', placeholder: 'conversation id, or a stream such as events/pump-7' });
  const keep = h('input', { 'aria-label': 'Keep', placeholder: 'keep: forever or 90 days (optional)' });
  const hold = h('input', { type: 'checkbox', id: 'scope-hold' });
  const form = h('form', { class: 'card inline', id: 'retention-scope' }, h('h3', {}, 'Override or legal hold'),
    target, keep, h('label', { for: 'scope-hold', class: 'row' }, hold, 'Legal hold'), h('button', { class: 'primary' }, 'Save'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const t = target.value.trim();
    const scope = t.includes('/') ? { stream: t } : { conversation: t };
    act(() => retention.setScope(scope, keep.value.trim(), hold.checked), 'Saved').then((ok) => { if (ok) form.reset(); });
  });
  return {
    el: h('div', { class: 'screen' },
      h('h2', {}, 'Retention'), summary, siteHold,
      h('h3', {}, 'How long each class is kept'),
      h('div', { class: 'table-wrap' }, h('table', { id: 'retention-classes' }, h('thead', {}, h('tr', {}, ['Class', 'Configured', 'In force', 'Site keep'].map((x) => h('th', {}, x)))), classes)),
      h('h3', {}, 'Overrides and holds'),
      h('div', { class: 'table-wrap' }, h('table', { id: 'retention-scopes' }, h('thead', {}, h('tr', {}, ['Scope', 'Keep', 'Hold', ''].map((x) => h('th', {}, x)))), scopes)),
      form),
    last: () => last,
  };
}
