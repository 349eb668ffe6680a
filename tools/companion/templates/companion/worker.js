/* The companion's service worker: the page's front end (static/page-scripts.js, 1.4 MB) kept in this
   browser's Cache Storage, so a later visit runs it from there. Chromium compiles a script that a
   service worker stores while it installs, and keeps the compiled code with it; from the HTTP cache,
   a script is compiled again on the second visit and only kept compiled from the third.

   The worker has no fetch handler: one static route (InstallEvent.addRoutes) sends the page's
   request for that one file to the cache, and every other request goes to the server as before,
   without starting the worker. A browser without static routes keeps nothing. The file's address
   carries its version (?v=<hash>), so a new version is a new worker that keeps the new file and
   drops the old one; a file missing from the cache comes from the server. */
"use strict";
var SCRIPTS = new URL(new URL(self.location.href).searchParams.get("scripts") || "", self.location.href);
var PREFIX = "companion-page-scripts:";  // other caches on this origin (JupyterLab's, another app's) are not ours
var CACHE = PREFIX + SCRIPTS.search;

self.addEventListener("install", function (event) {
  if (!event.addRoutes || SCRIPTS.origin !== self.location.origin || !SCRIPTS.search) { return; }
  event.addRoutes([{ condition: { urlPattern: { pathname: SCRIPTS.pathname, search: SCRIPTS.search.slice(1) } }, source: "cache" }]);
  event.waitUntil(caches.open(CACHE).then(function (cache) { return cache.add(SCRIPTS.href); }).then(function () { return self.skipWaiting(); }));
});

self.addEventListener("activate", function (event) {
  event.waitUntil(caches.keys().then(function (names) {
    var old = names.filter(function (name) { return name.indexOf(PREFIX) === 0 && name !== CACHE; });
    return Promise.all(old.map(function (name) { return caches.delete(name); }));
  }));
});
