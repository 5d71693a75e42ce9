// Path of /api/v1/site: the site's name and certificate fingerprints, public, shown on the
// sign-in page so people can compare them before typing a password.

import { get } from './http.js';

export const info = () => get('/api/v1/site');
