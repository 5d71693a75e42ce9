// The WebSocket link: hello → subscribe{since} → replay → caught_up → live. Reconnects with
// backoff and resumes from the last seq seen; sends the outbox after every caught_up; a 4401
// close or a failed probe refreshes the session cookie before trying again. This module also
// holds the one connection of the signed-in page: app.js connects it, views send through it.

import { ApiError } from './api/http.js';
import { me, refresh } from './api/auth.js';
import { socketUrl } from './api/socket.js';
import * as outbox from './outbox.js';

class Live {
  constructor(handlers) {
    this.h = handlers;
    this.since = null;
    this.ws = null;
    this.attempt = 0;
    this.nextId = 1;
    this.inflight = new Map(); // frame id -> outbox key
    this.stopped = false;
    this.state = 'connecting';
  }

  setState(s) {
    this.state = s;
    this.h.onState(s);
  }

  start() { this.connect(); }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
  }

  connect() {
    if (this.stopped) return;
    this.setState(this.attempt ? 'reconnecting' : 'connecting');
    const ws = new WebSocket(socketUrl());
    this.ws = ws;
    this.inflight.clear();
    ws.onmessage = (ev) => {
      let f;
      try { f = JSON.parse(ev.data); } catch { return; }
      this.frame(f).catch((e) => this.h.onError(e));
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      this.setState('offline');
      this.retry(ev.code === 4401);
    };
  }

  async retry(sessionEnded) {
    if (sessionEnded && (await refresh()) === false) { this.h.onSignedOut(); return; }
    const delay = Math.min(15000, 500 * 2 ** Math.min(this.attempt, 5)) * (0.75 + Math.random() / 2);
    this.attempt += 1;
    this.timer = setTimeout(async () => {
      // Probe over REST first: it refreshes an expired access cookie, which the upgrade cannot.
      try {
        await me();
      } catch (e) {
        if (e instanceof ApiError && e.status === 401) { this.h.onSignedOut(); return; }
        this.retry(false);
        return;
      }
      this.connect();
    }, delay);
  }

  async frame(f) {
    switch (f.type) {
      case 'hello':
        if (this.since === null) {
          await this.h.onFirstHello(f.head);
          this.since = f.head;
        }
        this.send({ type: 'subscribe', since: this.since, domains: ['chat', 'alarms'] });
        break;
      case 'entry':
        if (f.seq > this.since) this.since = f.seq;
        this.h.onEntry(f);
        break;
      case 'caught_up':
        if (f.head > this.since) this.since = f.head;
        this.attempt = 0;
        this.setState('online');
        this.flush();
        break;
      case 'resync':
        this.since = f.head;
        await this.h.onResync();
        break;
      case 'ack':
        this.inflight.delete(f.id);
        outbox.remove(f.key);
        this.h.onAck(f);
        break;
      case 'error': {
        const key = this.inflight.get(f.id);
        if (key !== undefined) {
          this.inflight.delete(f.id);
          if (f.code !== 'busy') outbox.remove(key);
          this.h.onSendError(key, f);
        } else this.h.onError(new ApiError(0, f.code, f.message));
        break;
      }
      default:
        this.h.onFrame(f);
    }
  }

  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  // Sends every outbox item not already in flight on this connection; the server dedups by key.
  flush() {
    if (this.state !== 'online') return;
    const busy = new Set(this.inflight.values());
    for (const m of outbox.list()) {
      if (busy.has(m.key)) continue;
      const id = this.nextId++;
      const frame = { type: 'send', id, conv: m.conv, key: m.key, text: m.text };
      if (m.reply_to) frame.reply_to = m.reply_to;
      if (m.attachments && m.attachments.length) frame.attachments = m.attachments.map((a) => a.id);
      if (this.send(frame)) this.inflight.set(id, m.key);
    }
  }
}

// The page's one connection.
let current = null;

// Starts the page's connection (stopping any earlier one) with app.js's handlers.
export function connect(handlers) {
  disconnect();
  current = new Live(handlers);
  current.start();
}

export function disconnect() {
  if (current) current.stop();
  current = null;
}

// Sends one frame if the link is up; false tells the caller to fall back to REST.
export function send(frame) {
  return current ? current.send(frame) : false;
}

// Sends what the outbox holds, if the link is up.
export function flush() {
  if (current) current.flush();
}
