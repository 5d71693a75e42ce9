// Messages written but not yet acknowledged, kept in localStorage per user so a reload, a
// dropped link or a server restart loses nothing; each keeps its idempotency key until acked.

let owner = '';
const slot = () => `plantwire.outbox.${owner}`;

export function setOwner(username) { owner = username; }

export function list() {
  try { return JSON.parse(localStorage.getItem(slot()) || '[]'); } catch { return []; }
}

function save(items) { localStorage.setItem(slot(), JSON.stringify(items)); }

export function add(item) { save([...list(), item]); }

export function remove(key) {
  const items = list();
  const rest = items.filter((m) => m.key !== key);
  if (rest.length !== items.length) save(rest);
  return rest.length !== items.length;
}

export function newKey() {
  const b = crypto.getRandomValues(new Uint8Array(9));
  return `w-${Date.now().toString(36)}-${Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('')}`;
}
