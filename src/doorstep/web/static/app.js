// Doorstep resident pages: live updates from the server's event stream, approval
// countdowns, the time zone default, and the password reset link's token. Hand-written, no dependencies. The server renders
// every page complete; this only keeps the live parts fresh and never puts server text
// into HTML (textContent only).
"use strict";

(function () {
  var RECONNECT_MS = 2000;
  var RECONNECT_MAX_MS = 30000;

  // The one place that talks to the server for live data. An EventSource on `streamUrl`
  // says when something changed; the page then reads one JSON snapshot from `snapshotUrl`
  // (also on every (re)connect, so what changed while disconnected is not missed).
  // EventSource reconnects by itself after a dropped connection; after a refused one
  // (signed out, a server error) it stops, so this reconnects with a growing delay.
  function subscribe(streamUrl, snapshotUrl, onData, onProblem) {
    var fetching = false;
    var again = false;
    var delay = RECONNECT_MS;
    var stopped = false;
    var source = null;

    function refresh() {
      if (fetching) {
        again = true;
        return;
      }
      fetching = true;
      fetch(snapshotUrl, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (response.status === 401) {
            stopped = true;
            if (source) source.close();
            window.location.assign("/signin");
            return null;
          }
          if (!response.ok) throw new Error("live snapshot answered " + response.status);
          return response.json();
        })
        .then(function (data) {
          if (data) onData(data);
        })
        .catch(function () {
          onProblem(true);
        })
        .then(function () {
          fetching = false;
          if (again && !stopped) {
            again = false;
            refresh();
          }
        });
    }

    function connect() {
      if (stopped) return;
      source = new EventSource(streamUrl);
      source.addEventListener("open", function () {
        delay = RECONNECT_MS;
        onProblem(false);
        refresh();
      });
      source.addEventListener("change", refresh);
      source.addEventListener("error", function () {
        onProblem(true);
        if (source.readyState !== EventSource.CLOSED) return; // reconnecting by itself
        refresh(); // a 401 here sends the page to sign in
        window.setTimeout(connect, delay);
        delay = Math.min(delay * 2, RECONNECT_MAX_MS);
      });
    }

    window.addEventListener("pagehide", function () {
      stopped = true;
      if (source) source.close();
    });
    connect();
  }

  function showStatus(items) {
    items.forEach(function (item) {
      var node = document.querySelector('[data-live="' + CSS.escape(item.key) + '"]');
      if (!node) return;
      if (node.textContent !== item.text) node.textContent = item.text;
      node.setAttribute("data-tone", item.tone);
    });
    items.forEach(function (item) {
      if (item.key !== "hub") return;
      document.querySelectorAll("[data-when-hub-online]").forEach(function (node) {
        node.hidden = item.tone !== "ok";
      });
    });
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function paragraph(className, text) {
    return element("p", className, text);
  }

  // Mirrors templates/_entries.html.
  function entryItem(entry) {
    var li = element("li", "entry");
    li.setAttribute("data-tone", entry.tone);
    li.appendChild(paragraph("entry-outcome", entry.outcome));
    li.appendChild(paragraph("entry-who", entry.who));
    li.appendChild(paragraph("entry-how", entry.how));
    var when = paragraph("entry-when");
    var time = element("time", "", entry.when);
    time.setAttribute("datetime", entry.at);
    when.appendChild(time);
    li.appendChild(when);
    if (entry.reason) li.appendChild(paragraph("entry-reason", entry.reason));
    if (entry.flags.length) {
      var flags = element("ul", "flags");
      flags.setAttribute("aria-label", "Flags");
      entry.flags.forEach(function (flag) {
        flags.appendChild(element("li", "", flag));
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
      if (!list || !entries) return;
      var key = JSON.stringify(entries);
      if (key === shown) return;
      shown = key;
      list.replaceChildren.apply(list, entries.map(entryItem));
      if (empty) empty.hidden = entries.length > 0;
    };
  }

  function csrfToken() {
    var input = document.querySelector('input[name="csrf_token"]');
    return input ? input.value : "";
  }

  function hidden(name, value) {
    var input = element("input");
    input.type = "hidden";
    input.name = name;
    input.value = value;
    return input;
  }

  function answerButton(value, label, who, primary) {
    var button = element("button", primary ? "primary" : "", label + " ");
    button.type = "submit";
    button.name = "decision";
    button.value = value;
    button.appendChild(element("span", "visually-hidden", who));
    return button;
  }

  // Mirrors templates/_approvals.html.
  function approvalItem(item, back, showHome) {
    var li = element("li", "card approval");
    li.id = "approval-" + item.id;
    li.setAttribute("data-approval", item.id);
    var who = paragraph("approval-who");
    who.appendChild(element("strong", "", item.who + (item.carrier ? " (" + item.carrier + ")" : "")));
    who.appendChild(document.createTextNode(" is at the door"));
    li.appendChild(who);
    var where = (showHome ? item.home_name + ", " + item.door.toLowerCase() : item.door) +
      (item.barcode ? ", parcel " + item.barcode : "");
    li.appendChild(paragraph("approval-where", where));
    if (item.deadline) {
      var deadline = paragraph("approval-deadline", "Time to answer: ");
      var time = element("time", "", "");
      time.setAttribute("data-countdown", "");
      time.setAttribute("datetime", item.deadline);
      deadline.appendChild(time);
      deadline.appendChild(document.createTextNode(". No answer means no."));
      li.appendChild(deadline);
    }
    var slot = element("div", "live-view-slot");
    slot.setAttribute("data-live-view-slot", "");
    slot.setAttribute("data-entry-id", item.id);
    slot.hidden = true;
    li.appendChild(slot);
    var form = element("form", "answer");
    form.method = "post";
    form.action = "/entries/" + encodeURIComponent(item.id) + "/approval";
    form.appendChild(hidden("csrf_token", csrfToken()));
    form.appendChild(hidden("back", back));
    form.appendChild(answerButton("approve", "Approve", item.who, true));
    form.appendChild(answerButton("decline", "Decline", item.who, false));
    li.appendChild(form);
    return li;
  }

  // Keyed: an entry already shown keeps its node (and any focus inside it).
  function approvalsShower() {
    var list = document.querySelector('[data-live-list="approvals"]');
    var section = document.querySelector('[data-live-section="approvals"]');
    var empty = document.querySelector('[data-live-empty="approvals"]');
    if (!list) return function () {};
    var back = list.getAttribute("data-back") || "/approvals";
    var showHome = list.getAttribute("data-show-home") === "yes";
    return function (approvals) {
      if (!approvals) return;
      var wanted = {};
      approvals.forEach(function (item) {
        wanted[item.id] = true;
      });
      Array.prototype.slice.call(list.children).forEach(function (child) {
        if (!wanted[child.getAttribute("data-approval")]) child.remove();
      });
      approvals.forEach(function (item) {
        if (!list.querySelector('[data-approval="' + CSS.escape(item.id) + '"]')) {
          list.appendChild(approvalItem(item, back, showHome));
        }
      });
      if (section) section.hidden = approvals.length === 0;
      if (empty) empty.hidden = approvals.length > 0;
      showCountdowns();
    };
  }

  // "1:45 left" until each approval's deadline, by the second.
  function showCountdowns() {
    var now = Date.now();
    document.querySelectorAll("time[data-countdown]").forEach(function (node) {
      var left = Math.round((Date.parse(node.getAttribute("datetime")) - now) / 1000);
      var text;
      if (left <= 0) {
        text = "no time left";
      } else {
        var seconds = left % 60;
        text = Math.floor(left / 60) + ":" + (seconds < 10 ? "0" : "") + seconds + " left";
      }
      if (node.textContent !== text) node.textContent = text;
    });
  }

  function startLive() {
    var snapshot = document.body.getAttribute("data-live-url");
    var stream = document.body.getAttribute("data-live-stream");
    if (!snapshot || !stream) return;
    var problem = document.querySelector("[data-live-problem]");
    var showEntries = entriesShower();
    var showApprovals = approvalsShower();
    subscribe(
      stream,
      snapshot,
      function (data) {
        if (data.status) showStatus(data.status);
        showEntries(data.entries);
        showApprovals(data.approvals);
      },
      function (paused) {
        if (problem) problem.hidden = !paused;
      }
    );
  }

  function startCountdowns() {
    if (!document.querySelector('[data-live-list="approvals"]')) return;
    showCountdowns();
    window.setInterval(showCountdowns, 1000);
  }

  // Preselect the browser's own time zone in the "add a home" form.
  function defaultTimeZone() {
    var select = document.querySelector("select[data-default-zone]");
    if (!select || select.value) return;
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    var option = zone && select.querySelector('option[value="' + CSS.escape(zone) + '"]');
    if (option) select.value = zone;
  }

  // The token in the address's fragment; "" when the link was mangled on its way (a stray
  // "%" that does not decode), so the page says to open the link again instead of failing.
  function fragmentToken() {
    try {
      return decodeURIComponent(window.location.hash.slice(1));
    } catch (error) {
      return "";
    }
  }

  // The reset link carries its token in the fragment, which no server sees: move it into
  // the form, and out of the address bar (it is a password until it is used).
  function resetToken() {
    var form = document.getElementById("reset-form");
    if (!form) return;
    var field = document.getElementById("reset-token");
    var token = fragmentToken();
    if (window.location.hash) window.history.replaceState(null, "", window.location.pathname);
    if (token) field.value = token;
    if (field.value) {
      form.hidden = false;
      var first = form.querySelector("[aria-invalid=true]") || document.getElementById("password");
      if (first) first.focus();
    } else if (!document.querySelector(".alert[role=alert]:not([hidden])")) {
      document.getElementById("no-reset-token").hidden = false;
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    startLive();
    startCountdowns();
    defaultTimeZone();
    resetToken();
  });
})();
