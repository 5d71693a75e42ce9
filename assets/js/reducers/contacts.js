// The contacts domain's reducer: any `contact.*` entry (request, accepted, rejected, removed)
// tells the people screen to reload its lists.

import { emit } from '../model.js';

export function reduce() {
  emit('contacts');
  return null;
}
