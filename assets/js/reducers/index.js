// The reducer table: one reducer per domain, keyed by the kind prefix of the log entries it
// owns. A new domain adds its own reducers/<domain>.js and one row here; no other reducer changes.

import * as alarms from './alarms.js';
import * as chat from './chat.js';
import * as contacts from './contacts.js';

const REDUCERS = new Map([
  ['chat.', chat.reduce],
  ['contact.', contacts.reduce],
  ['alarm.', alarms.reduce],
]);

// The prefix of a kind, dot included (`chat.message` -> `chat.`); '' for a kind without one.
const prefixOf = (kind) => kind.slice(0, kind.indexOf('.') + 1);

// Applies one log entry from the socket to the model. Returns what the domain's reducer returns
// ({conv, msg} for a chat message, for notifications), null for kinds no reducer owns.
export function apply(e) {
  const reduce = REDUCERS.get(prefixOf(e.kind));
  return reduce ? reduce(e) : null;
}
