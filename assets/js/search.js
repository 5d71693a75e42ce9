// The header search box and the results screen (`/search?q=`): hits grouped by kind, each opening
// its message in the conversation, its event in the viewer, or the alarm list.

import { h, clear } from './dom.js';
import { enc } from './api/http.js';
import * as api from './api/search.js';
import { S, convTitle } from './model.js';

const KINDS = [['message', 'Messages'], ['event', 'Events'], ['alarm', 'Alarms']];

export function searchBox(go) {
  const input = h('input', {
    type: 'search', id: 'search-q', name: 'q', placeholder: 'Search… (pump*, valve seal)',
    'aria-label': 'Search messages, events and alarms', maxlength: '256', autocomplete: 'off',
  });
  const form = h('form', {
    class: 'search-box', role: 'search',
    onsubmit: (e) => {
      e.preventDefault();
      const q = input.value.trim();
      if (q) go(`/search?q=${enc(q)}`);
    },
  }, input);
  return form;
}

// The snippet's «marked» words as <mark>, the rest as text (never HTML).
function snippet(text) {
  const out = [];
  for (const [i, part] of text.split(/[«»]/).entries()) {
    if (part) out.push(i % 2 ? h('mark', {}, part) : part);
  }
  return h('span', { class: 'search-snippet' }, out);
}

function when(us) {
  return new Date(us / 1000).toLocaleString();
}

export function searchScreen(go) {
  const params = new URLSearchParams(location.search);
  const q = params.get('q') || '';
  const box = document.getElementById('search-q');
  if (box) box.value = q;
  const status = h('p', { class: 'search-status', role: 'status' }, 'Searching…');
  const groups = h('div', { class: 'search-groups' });
  const more = h('button', { type: 'button', hidden: true }, 'More');
  let next = null;
  const hits = { message: [], event: [], alarm: [] };

  const open = (hit) => {
    // An incident's answers and messages open in the incident's own screen; other messages in
    // their conversation, loaded back to the hit and scrolled to it (`?at=`).
    if (hit.kind === 'message' && hit.conv.startsWith('i-')) go(`/incidents/${enc(hit.conv)}`);
    else if (hit.kind === 'message') go(`/c/${enc(hit.conv)}?at=${hit.seq}`);
    else if (hit.kind === 'event') go(`/events?seq=${hit.seq}`);
    else go('/alarms');
  };
  const paint = () => {
    clear(groups, KINDS.filter(([k]) => hits[k].length).map(([k, label]) =>
      h('section', { class: 'search-group', dataset: { kind: k } },
        h('h3', {}, `${label} (${hits[k].length})`),
        h('ul', {}, hits[k].map((hit) => h('li', {},
          h('button', { type: 'button', class: 'search-hit-open', dataset: { seq: hit.seq }, onclick: () => open(hit) },
            h('span', { class: 'search-meta' },
              `${hit.author.replace(/^(user|device):/, '')} · ${hit.kind === 'message' ? convTitle(S.convs.get(hit.conv)) || hit.conv : hit.stream} · ${when(hit.ts_us)}`),
            snippet(hit.snippet))))))));
    const n = hits.message.length + hits.event.length + hits.alarm.length;
    status.textContent = n ? `${n} result${n === 1 ? '' : 's'} for “${q}”` : `Nothing found for “${q}”`;
    more.hidden = next === null;
  };
  const load = async () => {
    try {
      const r = await api.search(q, { before: next });
      for (const hit of r.hits) hits[hit.kind].push(hit);
      next = r.next ?? null;
      paint();
    } catch (e) {
      status.textContent = e.message || 'Search failed';
    }
  };
  more.addEventListener('click', load);
  if (q) load(); else status.textContent = 'Type words in the search box; end one with * to match its beginning.';
  return { el: h('div', { class: 'screen search-screen' }, h('h2', {}, 'Search'), status, groups, more) };
}
