// The UI's own glyphs as inline SVG (reactions, the paperclip, message actions), so nothing
// depends on an emoji font the control-room PC may not have: no glyph ever renders as tofu.

const NS = 'http://www.w3.org/2000/svg';

// Each glyph: 24×24 paths, stroked in the current text colour unless `fill` is set.
const GLYPHS = {
  thumbs: { d: ['M7 11v9H4v-9z', 'M7 11l4-8c1.5 0 2.5 1 2.3 2.6L13 9h5.2c1.3 0 2.2 1.2 1.9 2.4l-1.6 6.8c-.2.9-1 1.8-2 1.8H7'] },
  check: { d: ['M3 3h18v18H3z', 'M7 12.5l3.2 3.2L17 9'] },
  eyes: { d: ['M2 12c0-4 2-7 4.5-7S11 8 11 12s-2 7-4.5 7S2 16 2 12z', 'M13 12c0-4 2-7 4.5-7S22 8 22 12s-2 7-4.5 7S13 16 13 12z'], dots: [[8, 13], [19, 13]] },
  bang: { d: ['M12 3v12'], dots: [[12, 20]] },
  clip: { d: ['M20 11.5l-8.2 8.2a5 5 0 01-7.1-7.1l8.5-8.5a3.4 3.4 0 014.8 4.8l-8.5 8.5a1.7 1.7 0 01-2.4-2.4L15 7.2'] },
  reply: { d: ['M10 8L4 13l6 5', 'M4 13h10a6 6 0 016 6'] },
  edit: { d: ['M4 20h4L19 9l-4-4L4 16z', 'M13 7l4 4'] },
  trash: { d: ['M4 7h16', 'M9 7V4h6v3', 'M6 7l1 13h10l1-13'] },
  close: { d: ['M6 6l12 12', 'M18 6L6 18'] },
};

// The reactions the UI offers, each with its glyph and its spoken name.
export const REACTIONS = [
  { emoji: '👍', glyph: 'thumbs', name: 'thumbs up' },
  { emoji: '✅', glyph: 'check', name: 'done' },
  { emoji: '👀', glyph: 'eyes', name: 'looking' },
  { emoji: '❗', glyph: 'bang', name: 'important' },
];

export function icon(name, label) {
  const g = GLYPHS[name];
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', '20');
  svg.setAttribute('height', '20');
  svg.setAttribute('class', `icon icon-${name}`);
  svg.setAttribute('fill', 'none');
  svg.setAttribute('stroke', 'currentColor');
  svg.setAttribute('stroke-width', '2');
  svg.setAttribute('stroke-linecap', 'round');
  svg.setAttribute('stroke-linejoin', 'round');
  if (label) { svg.setAttribute('role', 'img'); svg.setAttribute('aria-label', label); } else svg.setAttribute('aria-hidden', 'true');
  for (const d of g.d) {
    const p = document.createElementNS(NS, 'path');
    p.setAttribute('d', d);
    svg.append(p);
  }
  for (const [cx, cy] of g.dots || []) {
    const c = document.createElementNS(NS, 'circle');
    c.setAttribute('cx', String(cx));
    c.setAttribute('cy', String(cy));
    c.setAttribute('r', '1.6');
    c.setAttribute('fill', 'currentColor');
    svg.append(c);
  }
  return svg;
}

// A reaction as a glyph: SVG for the offered ones, the text itself (as text) for any other.
export function reactionGlyph(emoji) {
  const r = REACTIONS.find((x) => x.emoji === emoji);
  if (r) return icon(r.glyph, r.name);
  const s = document.createElement('span');
  s.textContent = emoji;
  return s;
}
