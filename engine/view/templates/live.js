// Live updates for `ratchet ui`: when the server says the store changed (server-sent
// events on /events), fetch this page's fragment again and swap it in; rows that were
// not there before flash once. No reload, no framework. A page refreshes at most once a
// second, and never more often than twice its last refresh took: a busy home with
// thousands of runs must not keep the server rendering for pages nobody reads faster.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var badge = document.getElementById("live-badge");
  if (!live || !window.EventSource || !window.fetch) { return; }
  var shown = live.getAttribute("data-generation");
  var busy = false, again = false, timer = null, last = 0, cost = 0;

  function keys() {
    var found = {};
    live.querySelectorAll("[data-key]").forEach(function (row) { found[row.getAttribute("data-key")] = true; });
    return found;
  }

  function schedule() {
    if (busy) { again = true; return; }
    if (timer !== null) { return; }
    var wait = Math.max(0, last + Math.max(1000, 2 * cost) - Date.now());
    timer = setTimeout(function () { timer = null; refresh(); }, wait);
  }

  function refresh() {
    busy = true;
    var began = Date.now();
    var url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    var before = keys();
    fetch(url.toString(), {cache: "no-store"}).then(function (response) {
      return response.ok ? response.text() : null;
    }).then(function (html) {
      if (html === null) { return; }
      live.innerHTML = html;
      live.querySelectorAll("[data-key]").forEach(function (row) {
        if (!before[row.getAttribute("data-key")]) { row.classList.add("new"); }
      });
    }).catch(function () {}).then(function () {
      busy = false;
      last = Date.now();
      cost = last - began;
      if (again) { again = false; schedule(); }
    });
  }

  var source = new EventSource("/events");
  source.onopen = function () { if (badge) { badge.classList.add("on"); badge.textContent = "live"; } };
  source.onerror = function () { if (badge) { badge.classList.remove("on"); badge.textContent = "reconnecting…"; } };
  source.onmessage = function (event) {
    if (event.data !== shown) { shown = event.data; schedule(); }
  };
})();
