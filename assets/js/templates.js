// The template builder (admins): the list of templates with archive/restore, and a form for a new
// template or the next version of one, with a live preview filled from a sample event (the newest
// one, or a made-up pump when there is none) and each refused field's reason next to it.

import { h, clear, toast } from './dom.js';
import * as api from './api/templates.js';
import * as events from './api/events.js';

const TYPES = ['text', 'number', 'choice', 'multi_choice', 'boolean', 'datetime', 'file'];
const SAMPLE = { source: 'pump-7', condition: 'pressure.high', priority: 'high', site: 'plant', occurred_at: new Date().toISOString(), attributes: { bar: '12.4' } };

// Options shown for each type: [key, label, kind].
const OPTIONS = {
  text: [['max_length', 'max length', 'int'], ['pattern', 'pattern', 'text']],
  number: [['min', 'min', 'num'], ['max', 'max', 'num'], ['unit', 'unit', 'text'], ['decimals', 'decimals', 'int']],
  choice: [['options', 'options (one per line)', 'lines']],
  multi_choice: [['options', 'options (one per line)', 'lines']],
  file: [['allowed_types', 'allowed types (comma-separated)', 'list'], ['max_bytes', 'max bytes', 'int']],
};

function questionEditor(q, onChange, onRemove) {
  const inp = (attrs) => h('input', { ...attrs, oninput: onChange });
  const id = inp({ value: q.id || '', 'aria-label': 'Question id', placeholder: 'id' });
  const label = inp({ value: q.label || '', 'aria-label': 'Label', placeholder: 'label, e.g. Why did {source} trip?' });
  const help = inp({ value: q.help || '', 'aria-label': 'Help', placeholder: 'help (optional)' });
  const required = h('input', { type: 'checkbox', onchange: onChange });
  required.checked = Boolean(q.required);
  const type = h('select', { 'aria-label': 'Type' }, TYPES.map((t) => h('option', { value: t }, t)));
  type.value = q.type || 'text';
  const opts = h('div', { class: 'row' });
  let inputs = {};
  const drawOptions = () => {
    inputs = {};
    clear(opts, (OPTIONS[type.value] || []).map(([key, l, kind]) => {
      const v = q[key];
      const el = kind === 'lines'
        ? h('textarea', { rows: 3, 'aria-label': l, placeholder: l, oninput: onChange }, Array.isArray(v) ? v.join('\n') : '')
        : inp({ 'aria-label': l, placeholder: l, value: v === undefined ? '' : Array.isArray(v) ? v.join(', ') : String(v) });
      inputs[key] = [el, kind];
      return el;
    }));
  };
  type.addEventListener('change', () => { drawOptions(); onChange(); });
  drawOptions();
  const errors = h('p', { class: 'field-error', role: 'alert', hidden: true });
  const el = h('fieldset', { class: 'card question' },
    h('div', { class: 'row' }, id, type, h('label', { class: 'check' }, required, ' required'),
      h('button', { type: 'button', onclick: onRemove, 'aria-label': 'Remove question' }, '×')),
    label, help, opts, errors);
  const value = () => {
    const out = { id: id.value.trim(), label: label.value, type: type.value, required: required.checked };
    if (help.value.trim()) out.help = help.value;
    for (const [key, [input, kind]] of Object.entries(inputs)) {
      const raw = input.value.trim();
      if (!raw) continue;
      if (kind === 'int' || kind === 'num') out[key] = Number(raw);
      else if (kind === 'lines') out[key] = raw.split('\n').map((s) => s.trim()).filter(Boolean);
      else if (kind === 'list') out[key] = raw.split(',').map((s) => s.trim()).filter(Boolean);
      else out[key] = raw;
    }
    return out;
  };
  return { el, value, errors: (why) => { errors.textContent = why.join(' · '); errors.hidden = !why.length; } };
}

export function templatesScreen() {
  const list = h('tbody');
  const name = h('input', { id: 'tpl-name', 'aria-label': 'Template name', placeholder: 'name' });
  const title = h('input', { id: 'tpl-title', 'aria-label': 'Incident title', placeholder: 'title, e.g. {source} tripped at {attr.bar} bar' });
  const topErrors = h('p', { class: 'field-error', id: 'tpl-errors', role: 'alert', hidden: true });
  const qbox = h('div', { class: 'stack' });
  const preview = h('div', { class: 'card preview', 'aria-label': 'Preview' });
  const heading = h('h3', {}, 'New template');
  let editing = null;
  let editors = [];
  let sample = SAMPLE;
  let timer = 0;

  const def = () => ({ name: name.value, title: title.value, questions: editors.map((e) => e.value()) });
  const showErrors = (fields) => {
    const f = fields || {};
    const top = Object.entries(f).filter(([k]) => !k.startsWith('questions[')).map(([k, v]) => `${k}: ${v}`);
    topErrors.textContent = top.join(' · ');
    topErrors.hidden = !top.length;
    editors.forEach((e, i) => e.errors(Object.entries(f).filter(([k]) => k.startsWith(`questions[${i}].`)).map(([k, v]) => `${k.split('.').pop()}: ${v}`)));
  };
  const refresh = () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      try {
        const r = await api.preview(def(), sample);
        showErrors(null);
        clear(preview, h('h4', {}, r.title), h('ol', {}, r.questions.map((q) => h('li', {}, q.label_filled,
          q.help_filled ? h('p', { class: 'muted' }, q.help_filled) : null))));
      } catch (e) {
        if (e.fields) showErrors(e.fields);
        clear(preview, h('p', { class: 'muted' }, e.message));
      }
    }, 300);
  };
  const addQuestion = (q = {}) => {
    const ed = questionEditor(q, refresh, () => { editors = editors.filter((x) => x !== ed); ed.el.remove(); refresh(); });
    editors.push(ed);
    qbox.append(ed.el);
  };
  const edit = (t) => {
    editing = t ? t.id : null;
    heading.textContent = t ? `New version of ${t.id} (now v${t.version})` : 'New template';
    name.value = t ? t.current.name : '';
    title.value = t ? t.current.title : '';
    editors = [];
    clear(qbox);
    for (const q of t ? t.current.questions : [{}]) addQuestion(q);
    refresh();
  };
  const save = async (e) => {
    e.preventDefault();
    try {
      const r = editing ? await api.update(editing, def()) : await api.create(def());
      toast(`Saved ${r.id} v${r.version}`);
      showErrors(null);
      edit(null);
      loadList();
    } catch (err) {
      if (err.fields) showErrors(err.fields);
      toast(err.message, 'error');
    }
  };
  async function loadList() {
    try {
      const r = await api.list(true);
      clear(list, r.templates.map((t) => h('tr', { dataset: { id: t.id } },
        h('td', {}, t.name), h('td', {}, `v${t.version}`), h('td', {}, String(t.incidents)),
        h('td', {}, h('div', { class: 'row nowrap' },
          h('button', { onclick: async () => { try { edit(await api.detail(t.id)); } catch (x) { toast(x.message, 'error'); } } }, 'Edit'),
          h('button', { onclick: async () => { try { await api.archive(t.id, !t.archived); loadList(); } catch (x) { toast(x.message, 'error'); } } }, t.archived ? 'Restore' : 'Archive'),
          t.incidents === 0 ? h('button', { class: 'danger', onclick: async () => {
            if (!window.confirm(`Delete template ${t.name}? No incident uses it.`)) return;
            try { await api.remove(t.id); loadList(); } catch (x) { toast(x.message, 'error'); }
          } }, 'Delete') : null)))));
    } catch (e) { toast(e.message, 'error'); }
  }
  for (const el of [name, title]) el.addEventListener('input', refresh);
  events.list({ limit: 1, order: 'desc' }).then((r) => {
    const ev = r.events && r.events[0];
    if (!ev) return;
    const attributes = {};
    for (const [k, v] of Object.entries(ev.attributes || {})) attributes[k] = String(v);
    sample = { source: ev.source, condition: ev.condition || ev.type, priority: ev.severity, site: SAMPLE.site, occurred_at: new Date(ev.ts_us / 1000).toISOString(), attributes };
    refresh();
  }).catch(() => {});
  loadList();
  edit(null);
  return {
    el: h('div', { class: 'screen templates' }, h('h2', {}, 'Question templates'),
      h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, ['Name', 'Version', 'Incidents', ''].map((x) => h('th', { scope: 'col' }, x)))), list)),
      h('form', { class: 'builder', onsubmit: save }, heading, name, title, topErrors, qbox,
        h('div', { class: 'row' }, h('button', { type: 'button', onclick: () => { addQuestion(); refresh(); } }, 'Add question'),
          h('button', { class: 'primary', type: 'submit', id: 'tpl-save' }, 'Save'))),
      h('h3', {}, 'Preview from a sample event'), preview),
    close: () => clearTimeout(timer),
  };
}
