/* The companion's page script: nothing a learner types is lost without a word.

   - Text typed in an activity's text box is kept in this browser (localStorage, keyed by learner,
     session, activity and box) until the server confirms it: each activity's status line carries
     data-saved="<box>:<fingerprint> ..." of what the server holds (companion/activities/page.py,
     fingerprint(): FNV-1a over UTF-16 code units, computed the same way here).
   - A banner (role="alert") says when the connection to the server or the page's kernel is lost,
     or typed text is not confirmed within a few seconds, and offers to reload once the server answers.
   - When the page opens again, text kept here that the server does not have is put back and saved;
     if the saved text changed elsewhere meanwhile, the learner chooses which to keep. A saved text
     this page had in its box (saved, but the server stopped before the page heard) is not a change
     made elsewhere: the kept text is its continuation.
   - The browser asks before leaving a page with unconfirmed text.
   - <time class="companion-local"> elements are shown in the learner's own time zone.
   - The loading screen says "Opening your workbook..." instead of Voila's cell counter.
   - Once the page is drawn, it asks for the service worker (worker.js) that keeps the page's front
     end (static/page-scripts.js, companion.page_scripts) in this browser for the next visit.
   Everything a learner wrote is put on the page with textContent, never as HTML. */
(function () {
  "use strict";
  var PREFIX = "companion:v1:";
  var UNCONFIRMED_MS = 4000;  // the kernel autosaves 1 s after the last keystroke
  var CHECK_MS = 500;
  var TYPED_KEPT = 200;  // fingerprints of the latest texts a box held while the page could save them
  var OFFLINE = "Not connected: your last changes are kept in this browser and will be saved when the connection is back.";
  var UNSAVED = "Your latest changes have not reached the server yet. They are kept in this browser and will be saved when the connection is back.";
  var BACK = "The connection is back. Reload the page to save your changes: they are kept in this browser until then.";
  var KERNEL = "Not connected: this page lost its link to your workbook. Your last changes are kept in this browser; reload the page to save them.";
  var STUCK = "Your latest changes could not be saved on this page. Reload the page to save them: they are kept in this browser until then.";
  var PAUSED = "This page was paused because it was left open without activity, to keep the server free for others. Everything you wrote is kept. Resume to carry on where you left off.";

  // lost: the server or the page's kernel is gone; offered: the banner offers a reload (the page cannot save).
  var state = { learner: null, session: null, lost: false, offered: false, orphaned: false, paused: false, leaving: false, reloading: false, polling: null, kernel: null, keeping: false };
  var pending = {};  // storage key -> {text, at, base, typed: [fingerprint of each text since base, while connected]}

  // Loading screen ------------------------------------------------------------------------------
  var opening = /\/dashboard|dashboard\.ipynb/.test(location.pathname) ? "Opening the dashboard\u2026" : "Opening your workbook\u2026";
  window.voila_process = function () {
    var text = document.getElementById("loading_text");
    if (text) { text.textContent = opening; }
  };
  window.voila_process();

  // The page's front end kept compiled in this browser for the next visit (worker.js) ---------------
  // Asked for once the page's widgets are drawn, when the page is next idle, so that the worker's work
  // (it keeps and compiles 1.4 MB of script) does not hold up the page's own start.
  function keepScripts() {
    var script = document.querySelector('script[src*="page-scripts.js?v="]');
    var config = document.getElementById("jupyter-config-data");
    if (!script || !config || !("serviceWorker" in navigator)) { return; }
    var base = JSON.parse(config.textContent).baseUrl || "/";
    navigator.serviceWorker.register(base + "companion-worker.js?scripts=" + encodeURIComponent(script.src), { scope: base })
      .catch(function () { /* not allowed here (a private window, some frames): the page works the same */ });
  }

  // Fingerprints, as companion.activities.fingerprint computes them --------------------------------
  function fingerprint(text) {
    var value = 0x811c9dc5;
    for (var i = 0; i < text.length; i++) {
      value = Math.imul(value ^ text.charCodeAt(i), 0x01000193) >>> 0;
    }
    return ("00000000" + value.toString(16)).slice(-8);
  }

  // Where a text box belongs -----------------------------------------------------------------
  function classValue(element, prefix) {
    if (!element) { return null; }
    for (var i = 0; i < element.classList.length; i++) {
      var name = element.classList[i];
      if (name.indexOf(prefix) === 0 && name.length > prefix.length) { return name.slice(prefix.length); }
    }
    return null;
  }
  // The nearest element around ``element`` marked with a class ``<prefix><value>``: {value, element}.
  function marked(element, prefix) {
    for (var node = element; node && node !== document.body; node = node.parentElement) {
      var value = classValue(node, prefix);
      if (value) { return { value: value, element: node }; }
    }
    return null;
  }
  function savedMarks(activity) {
    var status = activity.querySelector(".companion-status[data-saved]");
    if (!status) { return null; }
    var marks = {};
    (status.getAttribute("data-saved") || "").split(" ").forEach(function (pair) {
      var at = pair.indexOf(":");
      if (at > 0) { marks[pair.slice(0, at)] = pair.slice(at + 1); }
    });
    return marks;
  }
  function key(activityId, field) {
    return PREFIX + state.learner + ":" + state.session + ":" + activityId + ":" + field;
  }
  function textBox(activityId, field) {
    var activity = document.querySelector(".companion-a-" + activityId);
    var box = activity && activity.querySelector(".companion-field-" + field + " textarea");
    return box ? { activity: activity, box: box } : null;
  }
  function remember(storageKey, entry) {
    pending[storageKey] = entry;
    try { localStorage.setItem(storageKey, JSON.stringify(entry)); } catch (error) { /* full or blocked: the page still warns */ }
  }
  function forget(storageKey) {
    delete pending[storageKey];
    try { localStorage.removeItem(storageKey); } catch (error) { /* nothing kept */ }
  }
  function type(box, text) {
    box.value = text;
    box.dispatchEvent(new Event("input", { bubbles: true }));
    box.dispatchEvent(new Event("change", { bubbles: true }));
  }

  // The banner -----------------------------------------------------------------------------------
  function banner() {
    var element = document.getElementById("companion-connection");
    if (!element) {
      element = document.createElement("div");
      element.id = "companion-connection";
      element.className = "companion-banner";
      element.setAttribute("role", "alert");
      element.hidden = true;
      var text = document.createElement("p");
      text.className = "companion-banner-text";
      var button = document.createElement("button");
      button.type = "button";
      button.className = "companion-banner-button";
      button.textContent = RELOAD;
      button.hidden = true;
      button.addEventListener("click", function () { state.reloading = true; location.reload(); });
      element.appendChild(text);
      element.appendChild(button);
      document.body.insertBefore(element, document.body.firstChild);
    }
    return element;
  }
  var RELOAD = "Reload the page";
  function say(message, offerReload, label) {
    var element = banner();
    var text = element.querySelector(".companion-banner-text");
    if (text.textContent !== message) { text.textContent = message; }
    var button = element.querySelector(".companion-banner-button");
    button.textContent = label || RELOAD;
    button.hidden = !offerReload;
    element.hidden = false;
  }
  function quiet() {
    var element = document.getElementById("companion-connection");
    if (element) { element.hidden = true; }
    state.offered = false;
  }
  function offerReload(message) {
    if (state.paused) { return; }
    state.offered = true;
    say(message, true);
  }
  function poll() {
    if (!state.polling) { state.polling = setInterval(probe, 3000); }
  }

  // The connection -------------------------------------------------------------------------------
  // The server is away (the socket closed): say so, and offer a reload once it answers again.
  function lost() {
    if (state.leaving || state.lost) { return; }
    state.lost = true;
    say(OFFLINE, false);
    poll();
    askIfPaused();
  }
  // The server stops the kernel of a page left idle (companion.kernels): then the page was paused, not lost.
  function askIfPaused() {
    if (!state.kernel || state.paused) { return; }
    fetch(state.kernel.paused, { cache: "no-store" }).then(function (answer) {
      return answer.ok ? answer.json() : { paused: false };
    }).then(function (answer) {
      if (!answer.paused || state.paused) { return; }
      state.paused = state.lost = state.orphaned = true;
      clearInterval(state.polling);
      state.polling = null;
      say(PAUSED, true, "Resume");
      var button = document.querySelector("#companion-connection .companion-banner-button");
      if (button) { button.focus(); }
    }).catch(function () { /* the server is away: the page says so already */ });
  }
  // The page's kernel died (the server said so): its widgets cannot save any more, so only a reload helps.
  function orphaned() {
    if (state.leaving) { return; }
    state.lost = state.orphaned = true;
    clearInterval(state.polling);
    state.polling = null;
    offerReload(KERNEL);
    askIfPaused();
  }
  function probe() {
    var base = (document.body && document.body.getAttribute("data-base-url")) || "/voila/";
    fetch(base + "static/voila.js", { method: "HEAD", cache: "no-store" }).then(function (answer) {
      if (answer.ok) {
        clearInterval(state.polling);
        state.polling = null;
        if (!state.orphaned) { offerReload(state.lost ? BACK : STUCK); }
        askIfPaused();
      }
    }).catch(function () { /* still away */ });
  }
  var DEAD = /"execution_state":\s*"(restarting|autorestarting|dead)"/;
  function watch(socket) {
    socket.addEventListener("close", function () { setTimeout(lost, 300); });
    socket.addEventListener("message", function (message) {
      var data = message.data;
      if (typeof data === "string") {
        if (DEAD.test(data)) { orphaned(); }
      } else if (data instanceof ArrayBuffer) {
        if (DEAD.test(new TextDecoder("utf-8", { fatal: false }).decode(data))) { orphaned(); }
      } else if (data && typeof data.text === "function") {
        data.text().then(function (text) { if (DEAD.test(text)) { orphaned(); } });
      }
    });
  }
  // The page's front end (tools/frontend) found no kernel to connect to: the page cannot work, so say so.
  window.addEventListener("companion:no-kernel", orphaned);
  var NativeSocket = window.WebSocket;
  var CHANNELS = /^ws(s?:\/\/.*\/)api\/kernels\/([0-9a-f-]+)\/channels/;
  function CompanionSocket(url, protocols) {
    var socket = protocols === undefined ? new NativeSocket(url) : new NativeSocket(url, protocols);
    var kernel = CHANNELS.exec(String(url));
    if (kernel) {
      state.kernel = { id: kernel[2], paused: "http" + kernel[1] + "companion/paused/" + kernel[2] };
      watch(socket);
    }
    return socket;
  }
  CompanionSocket.prototype = NativeSocket.prototype;
  ["CONNECTING", "OPEN", "CLOSING", "CLOSED"].forEach(function (name) { CompanionSocket[name] = NativeSocket[name]; });
  window.WebSocket = CompanionSocket;

  // Typing ---------------------------------------------------------------------------------------
  document.addEventListener("input", function (event) {
    var box = event.target;
    // Typing can come before the first tick has found the learner: find them now, so nothing typed goes unkept.
    if (!box || box.tagName !== "TEXTAREA" || (!state.learner && !identify())) { return; }
    var activity = marked(box, "companion-a-");
    var mark = marked(box, "companion-field-");
    if (!activity || !mark) { return; }
    var field = mark.value;
    var storageKey = key(activity.value, field);
    var marks = savedMarks(activity.element) || {};
    var earlier = pending[storageKey];
    var base = earlier ? earlier.base : (marks[field] || fingerprint(""));
    // Any of these may be saved before this page hears so (the kernel saves what the box held).
    var typed = (earlier && earlier.typed) || [];
    if (!state.lost) { typed = typed.concat([fingerprint(box.value)]).slice(-TYPED_KEPT); }
    remember(storageKey, { text: box.value, at: Date.now(), base: base, typed: typed });
  }, true);

  // Confirmation, and the banner when typed text is not confirmed ---------------------------------
  function check() {
    var stale = false;
    Object.keys(pending).forEach(function (storageKey) {
      var parts = storageKey.slice(PREFIX.length).split(":");
      var found = textBox(parts[2], parts[3]);
      if (!found) { return; }
      var marks = savedMarks(found.activity) || {};
      var saved = marks[parts[3]];
      var entry = pending[storageKey];
      if (saved && (saved === fingerprint(entry.text) || saved === fingerprint(found.box.value))) {
        forget(storageKey);
        return;
      }
      // The text this page's kernel last read or saved is what the kept text was written over.
      if (saved && saved !== entry.base && !found.activity.querySelector(".companion-conflict")) {
        remember(storageKey, { text: entry.text, at: entry.at, base: saved, typed: entry.typed || [] });
      }
      // While the kernel retries a save the store refused for now, its status line says so; no banner.
      var waiting = found.activity.querySelector(".companion-conflict, .companion-retrying");
      if (!waiting && Date.now() - entry.at > UNCONFIRMED_MS) {
        stale = true;
      }
    });
    if (state.lost) { return; }
    if (!stale) { quiet(); return; }
    if (!state.offered) { say(UNSAVED, false); }
    poll();
  }

  // Opening the page again: text kept here goes back in its box ----------------------------------
  // Each kept text is handled once its box and its status (what the server holds) are on the page.
  var kept = null;  // storage keys still to handle
  function identify() {
    var page = document.querySelector(".companion-page[data-learner]");
    if (!page) { return false; }
    state.learner = page.getAttribute("data-learner");
    state.session = page.getAttribute("data-session");
    var mine = PREFIX + state.learner + ":" + state.session + ":";
    kept = [];
    for (var i = 0; i < localStorage.length; i++) {
      var storageKey = localStorage.key(i);
      if (storageKey && storageKey.indexOf(mine) === 0) { kept.push(storageKey); }
    }
    return true;
  }
  function restore() {
    kept = kept.filter(function (storageKey) {
      var entry;
      try { entry = JSON.parse(localStorage.getItem(storageKey)); } catch (error) { entry = null; }
      if (!entry || typeof entry.text !== "string") { localStorage.removeItem(storageKey); return false; }
      var parts = storageKey.slice(PREFIX.length).split(":");
      var found = textBox(parts[2], parts[3]);
      var marks = found && savedMarks(found.activity);
      if (!marks) { return true; }  // not on the page yet
      var saved = marks[parts[3]] || fingerprint("");
      if (saved === fingerprint(entry.text)) {
        localStorage.removeItem(storageKey);
      } else if ((saved === entry.base || (entry.typed || []).indexOf(saved) >= 0) && !found.box.disabled) {
        remember(storageKey, { text: entry.text, at: Date.now(), base: saved });
        type(found.box, entry.text);
        notice("Text you wrote earlier on this device had not reached the server. It is back in its box and being saved now.");
      } else {
        offer(storageKey, entry, found);
      }
      return false;
    });
  }
  function notice(message) {
    if (document.querySelector(".companion-notice")) { return; }
    var element = document.createElement("p");
    element.className = "companion-notice";
    element.setAttribute("role", "status");
    element.textContent = message;
    var page = document.querySelector(".companion-page");
    page.appendChild(element);
  }
  // Unsaved text kept here, while the server's text changed elsewhere: the learner chooses.
  function offer(storageKey, entry, found) {
    var box = document.createElement("div");
    box.className = "companion-conflict companion-kept";
    box.setAttribute("role", "alert");
    var intro = document.createElement("p");
    intro.textContent = "This browser kept text you wrote here that never reached the server, and the saved version has changed since. Your kept text:";
    var text = document.createElement("div");
    text.className = "companion-other-text";
    text.textContent = entry.text;
    var use = document.createElement("button");
    use.type = "button";
    use.className = "companion-banner-button";
    use.textContent = "Use the text kept in this browser";
    var drop = document.createElement("button");
    drop.type = "button";
    drop.className = "companion-banner-button companion-secondary";
    drop.textContent = "Keep the saved version";
    use.addEventListener("click", function () {
      var marks = savedMarks(found.activity) || {};
      remember(storageKey, { text: entry.text, at: Date.now(), base: marks[storageKey.split(":").pop()] || fingerprint("") });
      type(found.box, entry.text);
      box.remove();
    });
    drop.addEventListener("click", function () { forget(storageKey); box.remove(); });
    box.appendChild(intro);
    box.appendChild(text);
    box.appendChild(use);
    box.appendChild(drop);
    found.box.closest(".companion-activity").appendChild(box);
  }

  // Leaving -------------------------------------------------------------------------------------
  window.addEventListener("beforeunload", function (event) {
    state.leaving = true;
    setTimeout(function () { state.leaving = false; }, 1000);  // the learner chose to stay
    if (!state.reloading && Object.keys(pending).length) {
      event.preventDefault();
      event.returnValue = "";
      return "";
    }
  });
  window.addEventListener("pagehide", function () { state.leaving = true; });

  // Local times -----------------------------------------------------------------------------------
  var FORMATS = {
    time: { hour: "numeric", minute: "2-digit" },
    date: { day: "numeric", month: "short", year: "numeric" },
    datetime: { day: "numeric", month: "short", year: "numeric", hour: "numeric", minute: "2-digit" }
  };
  function localTimes(root) {
    var found = root.querySelectorAll ? root.querySelectorAll("time.companion-local:not([data-local])") : [];
    Array.prototype.forEach.call(found, function (element) {
      var moment = new Date(element.getAttribute("datetime"));
      if (isNaN(moment.getTime())) { return; }
      var form = element.getAttribute("data-format") || "datetime";
      var shown = form === "time"
        ? moment.toLocaleTimeString([], FORMATS.time) + " on " + moment.toLocaleDateString([], FORMATS.date)
        : moment.toLocaleString([], FORMATS[form] || FORMATS.datetime);
      element.setAttribute("data-local", "");
      element.textContent = shown;
    });
  }

  // Start -----------------------------------------------------------------------------------------
  function tick() {
    if (!state.keeping && document.querySelector(".jupyter-widgets")) {
      state.keeping = true;
      (window.requestIdleCallback || setTimeout)(keepScripts);
    }
    if (!state.learner && !identify()) { return; }
    if (kept.length) { restore(); }
    check();
  }
  function start() {
    localTimes(document);
    new MutationObserver(function () { localTimes(document); }).observe(document.body, { childList: true, subtree: true });
    setInterval(tick, CHECK_MS);
  }
  if (document.body) { start(); } else { document.addEventListener("DOMContentLoaded", start); }
})();
