// Paths of /api/v1/alarms: the current alarms, one alarm with its journal, and what operators do
// to them (ack, ack visible, shelve, unshelve, comment).

import { get, post, enc } from './http.js';

const one = (id) => `/api/v1/alarms/${enc(id)}`;

export const list = () => get('/api/v1/alarms');

export const detail = (id) => get(one(id));

export const ack = (id, comment) => post(`${one(id)}/ack`, comment ? { comment } : {});

export const ackMany = (ids, comment) => post('/api/v1/alarms/ack', comment ? { ids, comment } : { ids });

export const shelve = (id, minutes, reason) =>
  post(`${one(id)}/shelve`, minutes ? { mode: 'timed', minutes, reason } : { mode: 'one_shot', reason });

export const unshelve = (id) => post(`${one(id)}/unshelve`);

export const comment = (id, text) => post(`${one(id)}/comment`, { text });
