// plantwire's service worker: shows notifications for the page (registration.showNotification, the
// only way on Chrome for Android), caches the versioned shell of this build and nothing else (never
// `/api/`), and sends a clicked notification's path back to the page. Served at `/sw.js`, no-cache.

const VERSION = '__VERSION__';
const SHELL = __SHELL__;
const CACHE = `plantwire-shell-${VERSION}`;

self.addEventListener('install', (e) => {
  e.waitUntil(caches.open(CACHE).then((c) => c.addAll(['/', ...SHELL])).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (e) => {
  e.waitUntil(caches.keys()
    .then((ks) => Promise.all(ks.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

self.addEventListener('fetch', (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== 'GET' || url.origin !== self.location.origin || url.pathname.startsWith('/api/')) return;
  if (url.pathname.startsWith(`/assets/${VERSION}/`)) {
    e.respondWith(caches.match(e.request).then((hit) => hit || fetch(e.request)));
  } else if (e.request.mode === 'navigate') {
    // The page itself from the network (no-cache); the cached shell only when offline.
    e.respondWith(fetch(e.request).catch(() => caches.match('/')));
  }
});

self.addEventListener('notificationclick', (e) => {
  e.notification.close();
  const path = (e.notification.data && e.notification.data.path) || '/';
  e.waitUntil(self.clients.matchAll({ type: 'window', includeUncontrolled: true }).then((cs) => {
    const c = cs[0];
    if (c) { c.postMessage({ go: path }); return c.focus(); }
    return self.clients.openWindow(path);
  }));
});
