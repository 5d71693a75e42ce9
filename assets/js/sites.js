// HQ's site screens: "All sites" (per site connected, lag, last checkpoint and the unacknowledged
// alarms by priority; for admins and auditors each site's grants, which admins give and take
// back) and one site's replicated entries, read-only, with a site switcher.

import { h, clear, size, toast } from './dom.js';
import { S } from './model.js';
import * as sites from './api/sites.js';

const time = (us) => new Date(us / 1000).toLocaleString();
// Each priority has a shape and a label besides its colour, as in the alarm banner.
const PRIORITIES = [['critical', '◆'], ['high', '▲'], ['medium', '■'], ['low', '●']];
const GRANT_ROLES = ['viewer', 'operator', 'admin'];
const KINDS = [['', 'all kinds'], ['event', 'events'], ['alarm.', 'alarms'], ['incident.', 'incidents'], ['message.', 'messages']];


function switcher(go, current) {
  const sel = h('select', { id: 'site-switcher', 'aria-label': 'Site' },
    h('option', { value: '' }, 'All sites'));
  sites.list().then((r) => {
    for (const s of r.sites) sel.append(h('option', { value: s.site, selected: s.site === current }, s.site));
  }, (e) => toast(e.message, 'error'));
  sel.addEventListener('change', () => go(sel.value ? `/sites/${encodeURIComponent(sel.value)}` : '/sites'));
  return h('label', { class: 'row' }, 'Site ', sel);
}

function unackedCell(u) {
  const parts = PRIORITIES.filter(([p]) => u[p] > 0).map(([p, shape]) =>
    h('span', { class: `prio ${p}`, title: `${u[p]} unacknowledged ${p}` }, `${shape} ${p} ${u[p]}`));
  return parts.length ? parts : h('span', { class: 'muted' }, 'none');
}

// One site's grants: who holds which role; an admin gets a form to grant (or change a role) and
// a button per grant to take it back. Repainted after each change, not on the overview's timer,
// so a half-typed name survives.
function siteGrants(site, admin) {
  const list = h('ul', { class: 'grants' });
  const note = h('p', { class: 'muted', role: 'status' });
  const act = async (f, msg) => {
    try { await f(); toast(msg); paint(); } catch (e) { toast(e.message, 'error'); }
  };
  const paint = async () => {
    try {
      const r = await sites.grants(site);
      note.textContent = r.grants.length ? '' : 'No grants: only admins and auditors read this site.';
      clear(list, r.grants.map((g) => h('li', { dataset: { user: g.user, role: g.role } },
        h('span', {}, `${g.user}: ${g.role}`),
        admin ? h('button', { class: 'danger', 'aria-label': `Take back ${g.user}'s grant on ${site}`, onclick: () => act(() => sites.ungrant(site, g.user), `Took back ${g.user}'s grant on ${site}`) }, 'Take back') : null)));
    } catch (e) { note.textContent = e.message; }
  };
  paint();
  let form = null;
  if (admin) {
    const user = h('input', { required: true, name: 'user', 'aria-label': `User to grant ${site}`, placeholder: 'HQ user', autocapitalize: 'none' });
    const role = h('select', { name: 'role', 'aria-label': `Role on ${site}` }, GRANT_ROLES.map((r) => h('option', { value: r }, r)));
    form = h('form', { class: 'row grant' }, user, role, h('button', { class: 'primary' }, 'Grant'));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const u = user.value.trim();
      act(() => sites.grant(site, u, role.value).then(() => { user.value = ''; }), `Granted ${site} to ${u}`);
    });
  }
  return h('section', { class: 'card site-grants', dataset: { site } }, h('h4', {}, `Grants on ${site}`), note, list, form);
}

// The grants of every site, for admins (who change them) and auditors (who read them).
function grantsPanel() {
  const admin = S.me && S.me.role === 'admin';
  const panel = h('section', { id: 'site-grants', 'aria-label': 'Grants' }, h('h3', {}, 'Who may read which site'));
  sites.list().then((r) => {
    for (const s of r.sites) panel.append(siteGrants(s.site, admin));
  }, (e) => toast(e.message, 'error'));
  return panel;
}

// A site's gaps: ranges it dropped before HQ had them, named by signed gap records.
function gapNote(g) {
  if (!g || !g.count || !g.latest) return null;
  const l = g.latest;
  const unverified = g.unverified ? `, ${g.unverified} unverified` : '';
  return h('span', { class: 'prio high gap', dataset: { from: String(l.from), to: String(l.to) } },
    ` ${g.count} gap${g.count === 1 ? '' : 's'}: dropped before replication, latest seq ${l.from}–${l.to}${unverified}`);
}

export function allSitesScreen(go) {
  const body = h('tbody', {});
  const note = h('p', { class: 'muted', role: 'status' }, 'Loading…');
  const table = h('table', { class: 'sites', id: 'all-sites' },
    h('caption', {}, 'Every site you may read: replication and unacknowledged alarms'),
    h('thead', {}, h('tr', {}, ['Site', 'Connected', 'Lag', 'Last checkpoint', 'Unacknowledged alarms', ''].map((t) => h('th', { scope: 'col' }, t)))),
    body);
  const paint = async () => {
    try {
      const r = await sites.overview();
      note.textContent = r.sites.length ? '' : 'No site to show: none is enrolled, or none is granted to you.';
      clear(body, r.sites.map((s) => h('tr', { dataset: { site: s.site } },
        h('th', { scope: 'row' }, s.site, s.history_rewritten ? h('span', { class: 'prio critical' }, ' history rewritten') : null,
          gapNote(s.gaps)),
        h('td', { class: 'connected', dataset: { connected: String(s.connected) } },
          s.revoked ? 'revoked' : s.connected ? '● connected' : `○ silent ${s.silent_seconds} s`),
        h('td', {}, `${s.lag_entries} entries, ${s.lag_seconds} s`),
        h('td', {}, s.checkpoint ? `${s.checkpoint.size} at ${time(s.checkpoint.witnessed_s * 1e6)}` : '—'),
        h('td', { class: 'unacked' }, unackedCell(s.unacked)),
        h('td', {}, h('a', { href: `/sites/${encodeURIComponent(s.site)}`, onclick: (e) => { e.preventDefault(); go(`/sites/${encodeURIComponent(s.site)}`); } }, `Open ${s.site}`)))));
    } catch (e) { note.textContent = e.message; }
  };
  paint();
  const timer = setInterval(paint, 15000);
  return {
    el: h('div', { class: 'screen all-sites' }, h('h2', {}, 'All sites'), switcher(go, ''), note, table,
      S.me && (S.me.role === 'admin' || S.me.role === 'auditor') ? grantsPanel() : null),
    close: () => clearInterval(timer),
  };
}

function summary(e) {
  if (e.purged) return 'purged by retention';
  if (e.stub) return 'not shipped by the site (hash only)';
  if (e.withheld) return 'withheld: your grant on this site reads events, alarms and incidents only';
  const b = e.body;
  if (b && typeof b === 'object' && typeof b.text === 'string' && Array.isArray(b.attachments)) return b.text;
  if (b && typeof b === 'object') return b.message || b.text || (b.alarm && `${b.alarm.source} ${b.alarm.condition}: ${b.state}`) || JSON.stringify(b).slice(0, 200);
  return String(b).slice(0, 200);
}

// The attachments an entry's body names (a message's `attachments`, an incident answer's file):
// objects shaped like {id, name, mime, size}, looked for a few levels deep, at most 20.
function attachmentsOf(body) {
  const found = [];
  const walk = (v, depth) => {
    if (!v || typeof v !== 'object' || depth > 4 || found.length >= 20) return;
    if (typeof v.id === 'string' && typeof v.name === 'string' && typeof v.mime === 'string' && typeof v.size === 'number') {
      found.push(v);
      return;
    }
    for (const x of Array.isArray(v) ? v : Object.values(v)) walk(x, depth + 1);
  };
  walk(body, 0);
  return found;
}

// The "What" cell: the summary, then each attachment as a download link when the caller may
// download the site's attachments, else by name only.
function what(site, e, downloads) {
  const files = e.body ? attachmentsOf(e.body) : [];
  const cell = h('td', { class: 'summary' }, summary(e));
  if (files.length) {
    cell.append(h('ul', { class: 'site-attachments' }, files.map((a) => h('li', {},
      downloads
        ? h('a', { href: sites.attachmentUrl(site, a.id), download: a.name }, a.name)
        : h('span', { title: 'downloads need a grant that reads this site whole' }, a.name),
      ` · ${size(a.size)}`))));
  }
  return cell;
}

export function siteScreen(site, go) {
  const body = h('tbody', {});
  const note = h('p', { class: 'muted', role: 'status' });
  const kind = h('select', { 'aria-label': 'Kind' }, KINDS.map(([v, l]) => h('option', { value: v }, l)));
  const more = h('button', { id: 'site-older', hidden: true }, 'Older entries');
  let next = null;
  const load = async (reset) => {
    try {
      const r = await sites.entries(site, { kind: kind.value, limit: 100, before: reset ? null : next });
      if (reset) clear(body);
      for (const e of r.entries) {
        body.append(h('tr', { dataset: { seq: String(e.seq) } },
          h('td', {}, String(e.seq)), h('td', {}, time(e.ts_us)), h('td', {}, e.kind),
          h('td', {}, e.author), what(site, e, r.attachments)));
      }
      next = r.next || null;
      more.hidden = !next;
      note.textContent = body.children.length ? '' : 'No entries here yet.';
    } catch (e) { note.textContent = e.status === 404 ? 'No such site, or not one you may read.' : e.message; }
  };
  kind.addEventListener('change', () => load(true));
  more.addEventListener('click', () => load(false));
  load(true);
  return {
    el: h('div', { class: 'screen site-entries' },
      h('h2', {}, `Site ${site}`),
      h('p', { class: 'read-only', role: 'note' }, 'Read only: what this site replicated to HQ, newest first.'),
      h('div', { class: 'row' }, switcher(go, site), kind),
      note,
      h('table', { class: 'entries', id: 'site-entries' },
        h('caption', {}, `Entries of ${site}`),
        h('thead', {}, h('tr', {}, ['Seq', 'Time', 'Kind', 'Author', 'What'].map((t) => h('th', { scope: 'col' }, t)))),
        body),
      more),
  };
}
