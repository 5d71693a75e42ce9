// The colour theme of this browser: follow the system, or always light or dark (the toggle on
// the Me page), kept in localStorage per browser and applied as html[data-theme] on load.

const KEY = 'plantwire.theme';
export const THEMES = ['system', 'light', 'dark'];

export function theme() {
  const t = localStorage.getItem(KEY);
  return THEMES.includes(t) ? t : 'system';
}

export function apply(t = theme()) {
  if (t === 'system') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = t;
}

export function setTheme(t) {
  if (!THEMES.includes(t)) return;
  if (t === 'system') localStorage.removeItem(KEY); else localStorage.setItem(KEY, t);
  apply(t);
}

apply();
