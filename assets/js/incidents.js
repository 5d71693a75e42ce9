// Incidents: the list with filters (state, severity, assignee, age), opening one from an alarm or
// event, and the incident view: state and links, the form of its pinned template version with each
// refused field's reason next to it, the timeline with seqs and hashes, and its conversation.

import { h, clear, toast, time } from './dom.js';
import { S } from './model.js';
import * as api from './api/incidents.js';
import * as templates from './api/templates.js';
import * as alarms from './api/alarms.js';
import { upload } from './api/attachments.js';
import { openConversation } from './chat.js';

const STATES = ['open', 'investigating', 'resolved', 'closed'];
const SEVERITIES = ['critical', 'high', 'medium', 'low'];
const AGES = [['', 'any age'], ['60', 'last hour'], ['1440', 'last day'], ['10080', 'last week']];

const link = (go, path, text, attrs = {}) =>
  h('a', { href: path, ...attrs, onclick: (e) => { e.preventDefault(); go(path); } }, text);

export function incidentsScreen(go) {
  const state = h('select', { 'aria-label': 'State' }, h('option', { value: '' }, 'any state'), STATES.map((s) => h('option', { value: s }, s)));
  const severity = h('select', { 'aria-label': 'Severity' }, h('option', { value: '' }, 'any severity'), SEVERITIES.map((s) => h('option', { value: s }, s)));
  const assignee = h('input', { 'aria-label': 'Assignee', placeholder: 'assignee' });
  const age = h('select', { 'aria-label': 'Age' }, AGES.map(([v, l]) => h('option', { value: v }, l)));
  const body = h('tbody');
  const status = h('p', { class: 'muted', role: 'status' });
  const load = async () => {
    try {
      const r = await api.list({ state: state.value, severity: severity.value, assignee: assignee.value.trim(), max_age_minutes: age.value });
      clear(body, r.incidents.length ? r.incidents.map((i) => h('tr', { class: `incident ${i.state}`, dataset: { id: i.id } },
        h('td', {}, link(go, `/incidents/${i.id}`, i.title)),
        h('td', {}, h('span', { class: `badge state-${i.state}` }, i.state)),
        h('td', { class: `prio ${i.severity}` }, i.severity),
        h('td', {}, i.assignee || '—'),
        h('td', {}, time(i.opened_at_us)))) : h('tr', {}, h('td', { colspan: 5 }, 'No incidents.')));
      status.textContent = `${r.incidents.length} incidents`;
    } catch (e) { toast(e.message, 'error'); }
  };
  for (const el of [state, severity, age]) el.addEventListener('change', load);
  assignee.addEventListener('change', load);
  load();
  return {
    el: h('div', { class: 'screen incidents' },
      h('div', { class: 'row' }, h('h2', {}, 'Incidents'),
        link(go, '/incidents/new', 'Open incident', { class: 'button' }),
        S.me.role === 'admin' ? link(go, '/templates', 'Templates', { class: 'button' }) : null),
      h('div', { class: 'row ev-filters' }, state, severity, assignee, age),
      status,
      h('div', { class: 'table-wrap' }, h('table', { class: 'incident-table' },
        h('thead', {}, h('tr', {}, ['Incident', 'State', 'Severity', 'Assignee', 'Opened'].map((x) => h('th', { scope: 'col' }, x)))),
        body))),
  };
}

// `/incidents/new?alarm=ID` or `?event=SEQ`: choose the template, then open.
export function openIncidentScreen(go, params) {
  const alarm = params.get('alarm');
  const event = params.get('event');
  const tpl = h('select', { id: 'incident-template', 'aria-label': 'Template' });
  const title = h('input', { id: 'incident-title', 'aria-label': 'Title', placeholder: 'title (default: the template\u2019s)' });
  const members = h('input', { id: 'incident-members', 'aria-label': 'Members', placeholder: 'members, comma-separated' });
  const what = h('p', { class: 'muted' }, alarm ? `From alarm #${alarm}` : event ? `From event #${event}` : 'Not linked to an alarm or event');
  const submit = async (e) => {
    e.preventDefault();
    const body = { template: tpl.value, members: members.value.split(',').map((m) => m.trim()).filter(Boolean) };
    if (alarm) body.alarm = Number(alarm);
    if (event) body.event_seq = Number(event);
    if (title.value.trim()) body.title = title.value.trim();
    try {
      const r = await api.open(body);
      go(`/incidents/${r.id}`);
    } catch (err) { toast(err.message, 'error'); }
  };
  (async () => {
    try {
      if (alarm) {
        const d = await alarms.detail(alarm);
        if (d.incident) { go(`/incidents/${d.incident}`); return; }
        what.textContent = `From alarm #${alarm}: ${d.source} · ${d.condition} (${d.priority})`;
      }
      const r = await templates.list();
      clear(tpl, r.templates.map((t) => h('option', { value: t.id }, `${t.name} (v${t.version})`)));
      if (!r.templates.length) toast('No templates yet: an admin creates them under Incidents → Templates', 'error');
    } catch (err) { toast(err.message, 'error'); }
  })();
  return {
    el: h('div', { class: 'screen incident-new' }, h('h2', {}, 'Open incident'), what,
      h('form', { class: 'card stack', onsubmit: submit },
        h('label', {}, 'Template', tpl), h('label', {}, 'Title', title), h('label', {}, 'Members', members),
        h('div', { class: 'row' }, h('button', { class: 'primary', type: 'submit', id: 'incident-open' }, 'Open incident')))),
  };
}

// One input for a question of the pinned version; `value()` gives the answer or undefined.
function field(q, current, id) {
  const opts = q.options || [];
  const has = current !== undefined;
  let input;
  let value;
  switch (q.type) {
    case 'number':
      input = h('input', { type: 'number', step: 'any', value: has ? String(current) : '' });
      value = () => (input.value === '' ? undefined : Number(input.value));
      break;
    case 'choice':
      input = h('select', {}, h('option', { value: '' }, '—'), opts.map((o) => h('option', { value: o }, o)));
      input.value = has ? current : '';
      value = () => (input.value === '' ? undefined : input.value);
      break;
    case 'multi_choice': {
      const boxes = opts.map((o) => {
        const b = h('input', { type: 'checkbox', value: o });
        b.checked = has && current.includes(o);
        return h('label', { class: 'check' }, b, ` ${o}`);
      });
      input = h('div', { class: 'choices', role: 'group' }, boxes);
      value = () => {
        const v = boxes.map((l) => l.firstChild).filter((b) => b.checked).map((b) => b.value);
        return v.length || has ? v : undefined;
      };
      break;
    }
    case 'boolean':
      input = h('select', {}, h('option', { value: '' }, '—'), h('option', { value: 'true' }, 'yes'), h('option', { value: 'false' }, 'no'));
      input.value = has ? String(current) : '';
      value = () => (input.value === '' ? undefined : input.value === 'true');
      break;
    case 'datetime':
      input = h('input', { type: 'datetime-local', value: has ? current.slice(0, 16) : '' });
      value = () => (input.value === '' ? undefined : new Date(input.value).toISOString());
      break;
    case 'file': {
      let id2 = has ? current : undefined;
      const name = h('span', { class: 'muted' }, has ? current : '');
      const pick = h('input', { type: 'file', accept: (q.allowed_types || []).join(',') });
      pick.addEventListener('change', async () => {
        const f = pick.files[0];
        if (!f) return;
        try { const a = await upload(f, () => {}); id2 = a.id; name.textContent = `${a.name} (${a.mime})`; } catch (e) { toast(e.message, 'error'); }
      });
      input = h('div', {}, pick, name);
      value = () => id2;
      break;
    }
    default:
      input = h('input', { type: 'text', value: has ? current : '', maxlength: q.max_length || 2000 });
      value = () => (input.value === '' ? undefined : input.value);
  }
  input.id = id;
  const unit = q.unit ? h('span', { class: 'muted' }, ` ${q.unit}`) : null;
  const error = h('p', { class: 'field-error', role: 'alert', hidden: true });
  const el = h('div', { class: 'field', dataset: { qid: q.id } },
    h('label', { for: id }, q.label_filled, q.required ? h('span', { class: 'req', 'aria-label': 'required' }, ' *') : null),
    q.help_filled ? h('p', { class: 'help muted' }, q.help_filled) : null,
    h('div', { class: 'row' }, input, unit), error);
  return {
    el,
    value,
    initial: has ? JSON.stringify(current) : undefined,
    error: (why) => { error.textContent = why || ''; error.hidden = !why; el.classList.toggle('invalid', Boolean(why)); },
  };
}

export function incidentScreen(id, go) {
  const head = h('div', { class: 'incident-head' });
  const form = h('form', { class: 'card incident-form', novalidate: true });
  const timeline = h('ol', { class: 'timeline' });
  const reason = h('input', { 'aria-label': 'Reason', placeholder: 'reason (to reopen)', id: 'incident-reason' });
  const stateRow = h('div', { class: 'row state-actions' });
  const assignee = h('input', { 'aria-label': 'Assignee', placeholder: 'assignee', id: 'incident-assignee' });
  const severity = h('select', { 'aria-label': 'Severity', id: 'incident-severity' }, SEVERITIES.map((s) => h('option', { value: s }, s)));
  const assignRow = h('div', { class: 'row assign-actions' }, assignee, severity,
    h('button', { onclick: async () => {
      try {
        await api.assign(id, { assignee: assignee.value.trim(), severity: severity.value });
        toast('Assigned');
        await load();
      } catch (e) { toast(e.message, 'error'); }
    } }, 'Assign'));
  let fields = new Map();
  const conv = openConversation(id, go);

  const change = async (to) => {
    try {
      await api.setState(id, to, reason.value.trim());
      reason.value = '';
      toast(`Incident ${to}`);
      await load();
    } catch (e) {
      showErrors(e.fields);
      toast(e.message, 'error');
    }
  };
  const showErrors = (errs) => {
    for (const [qid, f] of fields) f.error(errs ? errs[qid] : '');
  };
  const submit = async (e) => {
    e.preventDefault();
    const answers = {};
    for (const [qid, f] of fields) {
      const v = f.value();
      if (v !== undefined && JSON.stringify(v) !== f.initial) answers[qid] = v;
    }
    if (!Object.keys(answers).length) { toast('Nothing changed'); return; }
    try {
      await api.answer(id, answers);
      showErrors(null);
      toast('Answers saved');
      await load();
    } catch (err) {
      if (err.fields) showErrors(err.fields);
      toast(err.message, 'error');
    }
  };
  form.addEventListener('submit', submit);

  async function load() {
    let d;
    try { d = await api.detail(id); } catch (e) { clear(head, h('p', {}, e.message)); return; }
    clear(head,
      h('h2', { class: 'incident-title' }, d.title),
      h('p', {}, h('span', { class: `badge state-${d.state}`, id: 'incident-state' }, d.state), ' ',
        h('span', { class: `prio ${d.severity}` }, d.severity),
        ` · template ${d.template} v${d.version} · opened ${time(d.opened_at_us)} by ${d.opened_by}`,
        d.assignee ? ` · assignee ${d.assignee}` : ''),
      d.alarms.length ? h('p', {}, 'Alarms: ', d.alarms.map((a) => link(go, '/alarms', `#${a}`, { class: 'alarm-link' }))) : null,
      h('p', {}, h('a', { href: api.reportUrl(id), target: '_blank', rel: 'noopener', id: 'incident-report' }, 'Printable report')));
    clear(stateRow);
    assignRow.hidden = !d.can_answer;
    assignee.value = d.assignee || '';
    severity.value = d.severity;
    if (d.can_answer) {
      const i = STATES.indexOf(d.state);
      for (const s of STATES.slice(i + 1)) stateRow.append(h('button', { dataset: { to: s }, onclick: () => change(s) }, s[0].toUpperCase() + s.slice(1)));
      if (i >= 2) stateRow.append(reason, h('button', { dataset: { to: 'investigating' }, onclick: () => change('investigating') }, 'Reopen'));
    }
    fields = new Map();
    clear(form, h('h3', {}, 'Questions'));
    d.questions.forEach((q, n) => {
      const a = d.answers[q.id];
      const f = field(q, a ? a.value : undefined, `q-${n}`);
      if (a) f.el.append(h('p', { class: 'muted who' }, `answered by ${a.by} · ${time(a.ts_us)} · seq ${a.seq}`));
      if (!d.can_answer) for (const el of f.el.querySelectorAll('input, select')) el.disabled = true;
      fields.set(q.id, f);
      form.append(f.el);
    });
    if (d.can_answer) form.append(h('div', { class: 'row' }, h('button', { class: 'primary', type: 'submit', id: 'answers-save' }, 'Save answers')));
    try {
      const r = await api.report(id);
      clear(timeline, r.timeline.map((t) => h('li', { dataset: { seq: t.seq, kind: t.kind } },
        h('span', { class: 'muted' }, `${time(t.ts_us)} · #${t.seq} `), h('strong', {}, t.kind), ` ${t.author}: ${t.summary} `,
        h('code', { class: 'hash', title: t.hash }, t.hash.slice(0, 12)))));
    } catch (e) { toast(e.message, 'error'); }
  }
  load();
  return {
    el: h('div', { class: 'screen incident' },
      h('div', { class: 'incident-pane' }, head, stateRow, assignRow, form,
        h('details', { class: 'card' }, h('summary', {}, 'Timeline'), timeline)),
      h('div', { class: 'incident-conv' }, conv.el)),
    close: () => { if (conv.close) conv.close(); },
  };
}
