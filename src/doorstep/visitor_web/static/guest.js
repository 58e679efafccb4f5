// Doorstep guest and worker app: the invitation page (the token from the link's
// fragment into the form, and out of the address bar), and "Open the door": this
// phone's key, the visit request, the door's challenge signed, and the entry's live
// status until the door is verified locked. Hand-written, no dependencies; server text
// goes in with textContent only.
//
// The key, the JSON client and the signature are phonekey.js's (loaded first on signed-in
// pages): the key lives in IndexedDB database "doorstep-visitor", store "device-keys",
// one record per person: {id, privateKey, created}.
"use strict";

(function () {
  const WAIT_SECONDS = 20;
  const RETRY_MS = 2000;
  const SIGN_IN = "/guest/signin";
  const $ = (id) => document.getElementById(id);

  // --- the invitation ------------------------------------------------------------------

  function acceptPage(form) {
    let token = "";
    try {
      token = decodeURIComponent(window.location.hash.slice(1));
    } catch (error) {
      // A link mangled on its way (a stray "%"): the page says to open it again.
    }
    // The token is a password until it is used: keep it out of history and bookmarks.
    if (window.location.hash) window.history.replaceState(null, "", window.location.pathname);
    if (token) $("token").value = token;
    if ($("token").value) {
      form.hidden = false;
      const first = form.querySelector("[aria-invalid=true]") || $("name");
      if (first) first.focus();
    } else {
      $("no-token").hidden = false;
    }
  }

  // --- one grant: "Open the door" ---------------------------------------------------------

  function visitPage(root) {
    const { ApiError, client, prepare, sign, locate } = window.DoorstepPhone;
    const api = client(SIGN_IN);
    const grantId = root.dataset.grant;
    const button = $("open");
    const hint = $("open-hint");
    const problem = $("form-problem");
    const panel = $("entry");
    const outcome = $("outcome");
    let key = null;
    let keyProblem = null;
    let busy = false;
    let signed = null;
    let shown = null;

    const keyReady = prepare({
      ownerId: document.body.dataset.person,
      dbName: "doorstep-visitor",
      keysPath: "/guest/api/device-keys",
      label: "Doorstep guest app",
      api,
    });

    function refresh() {
      let why = "";
      if (busy) why = "Asking the door…";
      else if (keyProblem) why = "This phone is not registered; reload the page or sign in again.";
      else if (!key) why = "Getting this phone ready…";
      button.disabled = why !== "";
      hint.textContent = why || "Ready. The door checks your access before it opens.";
    }

    function showProblem(message) {
      problem.querySelector("p").textContent = message;
      problem.hidden = !message;
    }

    function show(entry) {
      shown = entry;
      panel.hidden = false;
      panel.dataset.entry = entry.id;
      outcome.dataset.tone = entry.tone;
      outcome.dataset.state = entry.state;
      $("headline").textContent = entry.headline;
      $("detail").textContent = entry.detail;
      $("retry").hidden = !entry.ended || entry.state === "done";
      $("next").hidden = !entry.ended;
    }

    async function prove(entry) {
      signed = entry.to_sign;
      if (!key) throw new ApiError(0, "This phone has no key for entries; reload the page or sign in again.");
      const proof = await sign(key, entry.to_sign);
      return api("POST", "/guest/api/visits/" + encodeURIComponent(entry.id) + "/unlock", { proof });
    }

    async function follow(first) {
      let entry = first;
      show(entry);
      outcome.focus(); // the button has gone; what to do now is here
      while (!entry.ended) {
        try {
          if (entry.state === "authorized" && entry.to_sign && entry.to_sign !== signed) {
            entry = await prove(entry);
          } else {
            const path = "/guest/api/entries/" + encodeURIComponent(entry.id);
            entry = await api("GET", path + "?seen=" + entry.version + "&wait=" + WAIT_SECONDS);
          }
          $("connection").hidden = true;
          // The hub did not answer in time (a 202, "not answered yet"): a read that finds
          // the entry where it was says so still, not "Checking the door…" again.
          if (!(shown && shown.step === "late" && shown.version === entry.version)) show(entry);
        } catch (error) {
          if (error instanceof ApiError && error.status === 409) {
            // The entry moved on while this phone signed (ended meanwhile): the next
            // read shows where it is now; the challenge is never signed twice.
            continue;
          }
          if (error instanceof ApiError && error.status < 500) {
            $("connection").hidden = true; // asking again will not help: say so, stop
            $("detail").textContent = error.message;
            $("retry").hidden = false;
            return;
          }
          $("connection").hidden = false; // the network or the service: try again
          await new Promise((resolve) => window.setTimeout(resolve, RETRY_MS));
        }
      }
    }

    button.addEventListener("click", async () => {
      if (button.disabled) return;
      busy = true;
      showProblem("");
      refresh();
      try {
        const body = { grant_id: grantId, device_key_id: key.id };
        if (root.dataset.geofence) {
          const position = await locate();
          body.latitude = position.coords.latitude;
          body.longitude = position.coords.longitude;
          body.accuracy_m = Math.min(position.coords.accuracy, 10000);
        }
        const answer = await api("POST", "/guest/api/visits", body);
        $("prepare").hidden = true;
        follow(answer);
      } catch (error) {
        showProblem(error.message);
      } finally {
        busy = false;
        refresh();
      }
    });

    $("retry").addEventListener("click", () => {
      panel.hidden = true;
      signed = null;
      shown = null;
      $("prepare").hidden = false;
      refresh();
      button.focus();
    });

    keyReady.then(
      (found) => { key = found; refresh(); },
      (error) => { keyProblem = error; refresh(); }
    );

    const open = root.dataset.openEntry;
    if (open) {
      $("prepare").hidden = true;
      keyReady.catch(() => null).then(async () => {
        try {
          await follow(await api("GET", "/guest/api/entries/" + encodeURIComponent(open)));
        } catch (error) {
          $("prepare").hidden = false; // it could not be read again: start afresh
        }
      });
    }
    refresh();
  }

  document.addEventListener("DOMContentLoaded", () => {
    const accept = $("accept-form");
    if (accept) acceptPage(accept);
    if (!document.body.dataset.person) return;
    const root = $("visit");
    if (root) {
      visitPage(root);
    } else if ($("device-status")) {
      // The person's list makes and registers the key too, so the door is quick later
      // (not the provider portal: an admin at a desk needs no key there).
      const { client, prepare } = window.DoorstepPhone;
      prepare({
        ownerId: document.body.dataset.person,
        dbName: "doorstep-visitor",
        keysPath: "/guest/api/device-keys",
        label: "Doorstep guest app",
        api: client(SIGN_IN),
      }).catch(() => {}); // shown in the footer
    }
  });
})();
