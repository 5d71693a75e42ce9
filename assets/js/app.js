// Entry point: signs in (or shows the sign-in screen), builds the shell, wires the live link
// to the model, routes between screens by path (the server answers every UI path with index.html).

import { h, clear, toast } from './dom.js';
import { setSignedOutHandler, ApiError } from './api/http.js';
import * as auth from './api/auth.js';
import { S, emit, on, loadConvs, setTyping, convTitle } from './model.js';
import { apply } from './reducers/index.js';
import * as live from './live.js';
import * as outbox from './outbox.js';
import { loginScreen, passwordScreen } from './login.js';
import { convList, openConversation } from './chat.js';
import { peopleScreen, channelsScreen } from './people.js';
import { profileScreen } from './profile.js';
import { adminScreen } from './admin.js';
import { retentionScreen } from './retention.js';
import { alarmsScreen } from './alarms.js';
import { devicesScreen } from './devices.js';
import { eventsScreen } from './events.js';
import { alarmBanner, reload as reloadAlarms } from './banner.js';
import { kpiScreen } from './kpis.js';
import { annunciate } from './annunciate.js';
import { incidentsScreen, incidentScreen, openIncidentScreen } from './incidents.js';
import { templatesScreen } from './templates.js';
import './theme.js';
import * as notifier from './notify.js';
import { searchBox, searchScreen } from './search.js';
import * as users from './api/users.js';
import { allSitesScreen, siteScreen } from './sites.js';

const root = document.getElementById('root');

function signedOut() {
  live.disconnect();
  S.me = null;
  history.replaceState(null, '', '/');
  clear(root, loginScreen(start));
}
setSignedOutHandler(signedOut);

async function start() {
  let me;
  try {
    me = await auth.me();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) { signedOut(); return; }
    if (e instanceof ApiError && e.code === 'password_change_required') {
      clear(root, passwordScreen(start, true));
      return;
    }
    clear(root, h('p', { class: 'center' }, 'Cannot reach the server; retrying…'));
    setTimeout(start, 3000);
    return;
  }
  if (me.must_change_password) { clear(root, passwordScreen(start, true)); return; }
  S.me = me;
  outbox.setOwner(me.username);
  shell();
  notifier.register(go);
  live.connect({
    onState: (s) => { S.conn = s; emit('conn'); },
    onFirstHello: async () => { await Promise.all([loadConvs(), reloadAlarms()]); },
    onResync: async () => { await Promise.all([loadConvs(), reloadAlarms()]); emit('resync'); },
    onEntry: (e) => {
      notify(apply(e));
      // Only entries arriving live sound: not a reconnect's replay (the link is not online then).
      if (S.conn === 'online') annunciate(e, () => go('/alarms'));
    },
    onAck: () => emit('outbox'),
    onSendError: (key, f) => { toast(`Not sent: ${f.message || f.code}`, 'error'); emit('outbox'); },
    onError: (e) => toast(e.message, 'error'),
    onSignedOut: signedOut,
    onFrame: (f) => {
      if (f.type === 'typing') setTyping(f.conv, f.user, f.expires_in_ms);
      else if (f.type === 'presence') { S.presence.set(f.user, f.status); emit('convs'); }
      else if (f.type === 'read_ack') {
        const c = S.convs.get(f.conv);
        if (c) { c.unread = f.unread; c.last_read_seq = f.last_read_seq; if (!f.unread) c.mentions = 0; }
        emit('convs');
      }
    },
  });
  route();
}

function notify(r) {
  if (!r || !document.hidden || r.msg.author === S.me.username) return;
  if (!('Notification' in window) || Notification.permission !== 'granted') return;
  const c = S.convs.get(r.conv);
  const mention = r.msg.mentions.includes(S.me.username);
  if ((c && c.kind === 'direct') || mention) {
    notifier.show(`${r.msg.author} · ${convTitle(c)}`, r.msg.text.slice(0, 140), r.conv, `/c/${encodeURIComponent(r.conv)}`, go).catch(() => {});
  }
}

document.addEventListener('visibilitychange', () => {
  live.send({ type: 'presence', status: document.hidden ? 'away' : 'online' });
  if (!document.hidden) emit('visible');
});

function connLabel(s) {
  return { online: 'Connected', connecting: 'Connecting…', reconnecting: 'Reconnecting…', offline: 'Offline — messages are kept' }[s] || s;
}

function shell() {
  const conn = h('span', { id: 'conn', role: 'status', 'aria-live': 'polite' });
  const paint = () => { conn.dataset.state = S.conn; conn.textContent = connLabel(S.conn); };
  paint();
  on('conn', paint);
  on('convs', () => notifier.title([...S.convs.values()].reduce((n, c) => n + (c.unread || 0), 0)));
  const nav = (path, label) => h('a', { href: path, class: 'nav', 'data-nav': path, onclick: (e) => { e.preventDefault(); go(path); } }, label);
  const links = [nav('/', 'Chats'), nav('/people', 'People'), nav('/channels', 'Channels'), nav('/alarms', 'Alarms'), nav('/events', 'Events'), nav('/incidents', 'Incidents'), nav('/profile', 'Me')];
  if (S.me.role === 'admin') links.push(adminNav(nav('/admin', 'Admin')));
  // At HQ (`me.hq`), the all-sites screen.
  if (S.me.hq) links.push(nav('/sites', 'Sites'));
  clear(root,
    h('header', { class: 'bar' },
      h('a', { class: 'brand', href: '/', onclick: (e) => { e.preventDefault(); go('/'); } }, 'plantwire'),
      conn,
      alarmBanner(go),
      searchBox(go),
      h('nav', { 'aria-label': 'Main' }, links)),
    notifier.askCard(S.me.username),
    h('main', { id: 'main' },
      h('aside', { id: 'side', 'aria-label': 'Conversations' }, convList(go)),
      h('section', { id: 'pane' })),
    h('div', { id: 'toasts', 'aria-live': 'polite' }));
}

export function go(path) {
  if (location.pathname + location.search !== path) history.pushState(null, '', path);
  route();
}
window.addEventListener('popstate', () => { if (S.me) route(); });

let closeView = null;
function route() {
  const pane = document.getElementById('pane');
  if (!pane) return;
  if (closeView) { closeView(); closeView = null; }
  const p = location.pathname;
  emit('route', p);
  S.current = null;
  document.body.classList.toggle('pane-open', p !== '/');
  for (const a of document.querySelectorAll('[data-nav]')) {
    a.classList.toggle('active', a.dataset.nav === p || (a.dataset.nav === '/' && p.startsWith('/c/')) || (a.dataset.nav === '/admin' && (p === '/admin/devices' || p === '/admin/retention')) || (a.dataset.nav === '/alarms' && p === '/alarms/kpis') || (a.dataset.nav === '/sites' && p.startsWith('/sites/')) || (a.dataset.nav === '/incidents' && (p.startsWith('/incidents/') || p === '/templates')));
  }
  let view;
  if (p.startsWith('/c/')) {
    view = openConversation(decodeURIComponent(p.slice(3)), go);
    const at = Number(new URLSearchParams(location.search).get('at'));
    if (at > 0) view.show(at);
  }
  else if (p === '/people') view = peopleScreen(go);
  else if (p === '/channels') view = channelsScreen(go);
  else if (p === '/profile') view = profileScreen(signedOut);
  else if (p === '/admin') view = adminScreen(go);
  else if (p === '/admin/devices' && S.me.role === 'admin') view = devicesScreen();
  else if (p === '/admin/retention' && S.me.role === 'admin') view = retentionScreen();
  else if (p === '/alarms') view = alarmsScreen(go);
  else if (p === '/alarms/kpis') view = kpiScreen(go);
  else if (p === '/events') view = eventsScreen(go, Number(new URLSearchParams(location.search).get('seq')) || null);
  else if (p === '/incidents') view = incidentsScreen(go);
  else if (p === '/incidents/new') view = openIncidentScreen(go, new URLSearchParams(location.search));
  else if (p.startsWith('/incidents/')) view = incidentScreen(decodeURIComponent(p.slice(11)), go);
  else if (p === '/templates' && S.me.role === 'admin') view = templatesScreen();
  else if (p === '/search') view = searchScreen(go);
  else if (p === '/sites') view = allSitesScreen(go);
  else if (p.startsWith('/sites/')) view = siteScreen(decodeURIComponent(p.slice(7)), go);
  else view = { el: h('div', { class: 'empty' }, h('p', {}, 'Choose a conversation, or start one from People.')) };
  clear(pane, view.el);
  closeView = view.close || null;
  emit('convs');
}

start();

// Admins: the Admin link carries the number of registrations waiting for approval, refreshed on
// each navigation and after each change on the admin screen.
function adminNav(link) {
  const badge = h('span', { class: 'badge unread', id: 'pending-badge', hidden: true });
  link.append(' ', badge);
  const paint = () => users.pendingAccounts().then((r) => {
    const n = r.users.length;
    badge.hidden = !n;
    badge.textContent = String(n);
    badge.title = `${n} registration${n === 1 ? '' : 's'} waiting for approval`;
    link.setAttribute('aria-label', n ? `Admin, ${badge.title}` : 'Admin');
  }, () => {});
  paint();
  on('route', paint);
  on('accounts', paint);
  return link;
}
