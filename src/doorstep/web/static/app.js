// Doorstep resident pages: live status by polling, and the time zone default.
// Hand-written, no dependencies. The server renders every page complete; this only
// keeps the live parts fresh and never puts server text into HTML (textContent only).
"use strict";

(function () {
  var POLL_MS = 2000;

  // The one place that talks to the server for live data. It polls now; a server-sent
  // events stream can replace it without touching the callers.
  function subscribe(url, onData, onProblem) {
    var stopped = false;
    function schedule() {
      if (!stopped) window.setTimeout(tick, POLL_MS);
    }
    function tick() {
      if (document.hidden) return schedule();
      fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (response.status === 401) {
            stopped = true;
            window.location.assign("/signin");
            return null;
          }
          if (!response.ok) throw new Error("live update answered " + response.status);
          return response.json();
        })
        .then(function (data) {
          if (data) onData(data);
        })
        .catch(function () {
          onProblem();
        })
        .then(schedule);
    }
    schedule();
  }

  function showStatus(items) {
    items.forEach(function (item) {
      var node = document.querySelector('[data-live="' + CSS.escape(item.key) + '"]');
      if (!node) return;
      if (node.textContent !== item.text) node.textContent = item.text;
      node.setAttribute("data-tone", item.tone);
    });
  }

  function paragraph(className, text) {
    var p = document.createElement("p");
    p.className = className;
    p.textContent = text;
    return p;
  }

  // Mirrors templates/_entries.html.
  function entryItem(entry) {
    var li = document.createElement("li");
    li.className = "entry";
    li.setAttribute("data-tone", entry.tone);
    li.appendChild(paragraph("entry-outcome", entry.outcome));
    li.appendChild(paragraph("entry-who", entry.who));
    li.appendChild(paragraph("entry-how", entry.how));
    var when = paragraph("entry-when", "");
    var time = document.createElement("time");
    time.setAttribute("datetime", entry.at);
    time.textContent = entry.when;
    when.appendChild(time);
    li.appendChild(when);
    if (entry.reason) li.appendChild(paragraph("entry-reason", entry.reason));
    if (entry.flags.length) {
      var flags = document.createElement("ul");
      flags.className = "flags";
      flags.setAttribute("aria-label", "Flags");
      entry.flags.forEach(function (flag) {
        var item = document.createElement("li");
        item.textContent = flag;
        flags.appendChild(item);
      });
      li.appendChild(flags);
    }
    return li;
  }

  function entriesShower() {
    var list = document.querySelector('[data-live-list="entries"]');
    var empty = document.querySelector("[data-live-empty]");
    var shown = null;
    return function (entries) {
      if (!list) return;
      var key = JSON.stringify(entries);
      if (key === shown) return;
      shown = key;
      list.replaceChildren.apply(list, entries.map(entryItem));
      if (empty) empty.hidden = entries.length > 0;
    };
  }

  function startLive() {
    var url = document.body.getAttribute("data-live-url");
    if (!url) return;
    var problem = document.querySelector("[data-live-problem]");
    var showEntries = entriesShower();
    subscribe(
      url,
      function (data) {
        showStatus(data.status);
        showEntries(data.entries);
        if (problem) problem.hidden = true;
      },
      function () {
        if (problem) problem.hidden = false;
      }
    );
  }

  // Preselect the browser's own time zone in the "add a home" form.
  function defaultTimeZone() {
    var select = document.querySelector("select[data-default-zone]");
    if (!select || select.value) return;
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    var option = zone && select.querySelector('option[value="' + CSS.escape(zone) + '"]');
    if (option) select.value = zone;
  }

  document.addEventListener("DOMContentLoaded", function () {
    startLive();
    defaultTimeZone();
  });
})();
