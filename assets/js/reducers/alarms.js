// The alarm part of the model: the newest occurrence of each alarm by id, kept current from
// `alarm.*` entries (each carries the occurrence as it is after the transition).

import { emit } from '../model.js';

export const alarms = new Map(); // id -> alarm, as the alarm listing shows it

// Replaces the model with a fresh listing.
export function load(list) {
  alarms.clear();
  for (const a of list) alarms.set(a.id, a);
  emit('alarms');
}

export function reduce(e) {
  const b = e.body;
  if (!b || !b.alarm) return null;
  const a = { ...b.alarm, state: b.state, shelved: !!b.alarm.shelf };
  // An occurrence replaced by a newer one of the same condition leaves the list.
  if (a.previous !== null && a.previous !== undefined) alarms.delete(a.previous);
  alarms.set(a.id, a);
  emit('alarms');
  return null;
}
