// Initials avatars: a circle with up to two initials, its colour from the name (the same name
// always gets the same colour); white text on a dark hue, at least 4.5:1 whatever the hue.

import { h } from './dom.js';

export function initials(name) {
  const parts = String(name || '?').split(/[\s._-]+/).filter(Boolean);
  const two = parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : (parts[0] || '?')[0];
  return two.toUpperCase();
}

// FNV-1a of the name picks the hue; 26 % lightness keeps white text above 5.5:1 for every hue.
export function hue(name) {
  let x = 0x811c9dc5;
  for (const ch of String(name)) { x ^= ch.codePointAt(0); x = Math.imul(x, 0x01000193) >>> 0; }
  return x % 360;
}

// The colour goes through the CSSOM: the page's CSP refuses `style` attributes.
export function avatar(name) {
  const el = h('span', { class: 'avatar', 'aria-hidden': 'true' }, initials(name));
  el.style.backgroundColor = `hsl(${hue(name)} 60% 26%)`;
  return el;
}
