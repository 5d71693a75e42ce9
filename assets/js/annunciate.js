// Alarm annunciation in the browser: a notification and a short Web Audio tone for each new
// unacknowledged alarm arriving live at or above the user's minimum priority; the settings.

import { S } from './model.js';
import { annunciated } from './banner.js';
import { show } from './notify.js';

export const LEVELS = ['low', 'medium', 'high', 'critical'];
const RANK = { diagnostic: 0, low: 1, medium: 2, high: 3, critical: 4 };
const DEFAULT_MIN = 'high';

// The settings live in localStorage per user.
const slot = (what) => `plantwire.alarm.${what}.${S.me ? S.me.username : ''}`;

export function soundOn() { return localStorage.getItem(slot('sound')) !== 'off'; }
export function setSound(on) { localStorage.setItem(slot('sound'), on ? 'on' : 'off'); }
export function minPriority() {
  const p = localStorage.getItem(slot('min'));
  return LEVELS.includes(p) ? p : DEFAULT_MIN;
}
export function setMinPriority(p) { if (LEVELS.includes(p)) localStorage.setItem(slot('min'), p); }

// Whether entry `e` announces a new alarm the user asked to hear about: a raise (a new
// occurrence or an occurrence active again), unacknowledged, annunciated (not shelved, out of
// service, suppressed or diagnostic) and at or above the minimum priority.
export function worthAnnouncing(e) {
  const b = e.body;
  if (e.kind !== 'alarm.raise' || !b || !b.alarm) return false;
  const a = { ...b.alarm, state: b.state, shelved: !!b.alarm.shelf };
  return !a.acked && annunciated(a) && RANK[a.priority] >= RANK[minPriority()];
}

let audio = null;

// A short two-tone beep generated on the fly (no asset file). Browsers may keep the context
// suspended until the user has interacted with the page; then the tone is silently skipped.
function beep() {
  const Ctx = window.AudioContext || window.webkitAudioContext;
  if (!Ctx) return;
  try {
    if (!audio) audio = new Ctx();
    if (audio.state === 'suspended' && audio.resume) audio.resume().catch(() => {});
    const t = audio.currentTime;
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.type = 'square';
    osc.frequency.setValueAtTime(880, t);
    osc.frequency.setValueAtTime(660, t + 0.18);
    gain.gain.setValueAtTime(0.0001, t);
    gain.gain.exponentialRampToValueAtTime(0.2, t + 0.02);
    gain.gain.setValueAtTime(0.2, t + 0.32);
    gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.36);
    osc.connect(gain);
    gain.connect(audio.destination);
    osc.start(t);
    osc.stop(t + 0.37);
  } catch { /* no sound is better than a broken page */ }
}

// Called by app.js for every entry that arrives live (not replayed after a reconnect, not at
// page load or a resync). `open` opens the alarm summary. The notification goes through the
// service worker like the chat's (notify.js): Chrome for Android refuses `new Notification()`;
// a click on it comes back to the page as `/alarms`.
export function annunciate(e, open) {
  if (!worthAnnouncing(e)) return;
  const a = e.body.alarm;
  if (soundOn()) beep();
  show(`${a.priority.toUpperCase()} alarm · ${a.source}`,
    `${a.condition}${a.message ? ` — ${a.message}` : ''}`.slice(0, 200),
    `alarm-${a.id}`, '/alarms', () => open(),
    { requireInteraction: RANK[a.priority] >= RANK.high }).catch(() => {});
}
