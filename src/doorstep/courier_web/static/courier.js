// Doorstep courier app: this phone's key, the scan, the knock step, the entry request
// with proof of possession, and the entry's live status until the door is verified
// locked. Hand-written, no dependencies. Server text goes in with textContent only.
//
// The key, the JSON client and the signature are phonekey.js's (loaded first): the key
// lives in IndexedDB database "doorstep-courier", store "device-keys", one record per
// courier: {id, privateKey, created}.
"use strict";

(function () {
  const DB_NAME = "doorstep-courier";
  const WAIT_SECONDS = 20;
  const RETRY_MS = 2000;
  const SIGN_IN = "/courier/signin";
  const NO_ANSWER = "No answer from the service (check your signal); nothing was opened. Try again.";

  const $ = (id) => document.getElementById(id);
  const { ApiError, client, prepare, sign, locate } = window.DoorstepPhone; // phonekey.js
  const api = client(SIGN_IN);

  const pause = (ms) => new Promise((resolve) => window.setTimeout(resolve, ms));

  // GET `path` until the service answers: the entry, or null when there is none (404).
  // While the network or the service is down, `lost(true)` says so, and it asks again.
  async function answered(path, lost) {
    for (;;) {
      try {
        const entry = await api("GET", path);
        lost(false);
        return entry;
      } catch (error) {
        if (error instanceof ApiError && error.status === 404) {
          lost(false);
          return null;
        }
        if (error instanceof ApiError && error.status < 500) throw error;
        lost(true);
        await pause(RETRY_MS);
      }
    }
  }

  function prepareDevice() {
    return prepare({
      ownerId: document.body.dataset.courier,
      dbName: DB_NAME,
      keysPath: "/courier/api/device-keys",
      label: "Courier web app",
      api,
    });
  }

  // --- the camera's barcode reader, where the browser has one ----------------------------

  function setUpCamera(barcode, onRead) {
    const box = $("camera");
    if (!box || !("BarcodeDetector" in window) || !navigator.mediaDevices) return;
    const start = $("camera-start");
    const stop = $("camera-stop");
    const view = $("camera-view");
    let stream = null;
    let timer = null;
    const close = () => {
      if (timer) window.clearInterval(timer);
      if (stream) stream.getTracks().forEach((track) => track.stop());
      stream = timer = null;
      view.hidden = stop.hidden = true;
      start.hidden = false;
    };
    start.addEventListener("click", async () => {
      try {
        const detector = new window.BarcodeDetector();
        stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
        view.srcObject = stream;
        view.hidden = stop.hidden = false;
        start.hidden = true;
        await view.play();
        timer = window.setInterval(async () => {
          const found = await detector.detect(view).catch(() => []);
          if (found.length) {
            barcode.value = found[0].rawValue;
            close();
            onRead();
          }
        }, 250);
      } catch (error) {
        close();
        box.hidden = true; // no camera, or no permission: typing it is the way
      }
    });
    stop.addEventListener("click", close);
    box.hidden = false;
  }

  // --- one stop ------------------------------------------------------------------------

  function stopPage(root, keyReady) {
    const deliveryId = root.dataset.delivery;
    const form = $("entry-form");
    const barcode = $("barcode");
    const button = $("request");
    const hint = $("request-hint");
    const problem = $("form-problem");
    const handover = $("handover");
    let key = null;
    let keyProblem = null;
    let busy = false;

    const knock = () => {
      const chosen = form.querySelector('input[name="knock"]:checked');
      return chosen ? chosen.value : "";
    };

    function refresh() {
      const answered = knock() === "answered";
      handover.hidden = !answered;
      let why = "";
      if (busy) why = "Asking the door…";
      else if (keyProblem) why = "This phone is not registered; reload the page or sign in again.";
      else if (!key) why = "Getting this phone ready…";
      else if (answered) why = "Someone is home: no entry needed.";
      else if (!barcode.value.trim() || knock() !== "nobody") why = "Scan the parcel and confirm the knock first.";
      button.disabled = why !== "";
      hint.textContent = why || "Ready. The door checks everything before it opens.";
    }

    function showProblem(message) {
      problem.querySelector("p").textContent = message;
      problem.hidden = !message;
    }

    keyReady.then((found) => { key = found; refresh(); }, (error) => { keyProblem = error; refresh(); });
    barcode.addEventListener("input", refresh);
    form.addEventListener("change", refresh);
    setUpCamera(barcode, refresh);

    const entry = entryPanel(() => {
      $("prepare").hidden = false;
      barcode.value = "";
      form.querySelectorAll('input[name="knock"]').forEach((input) => { input.checked = false; });
      refresh();
      barcode.focus();
    });

    // The entry request. Without an answer (the network dropped, or the service failed)
    // the request may have been made all the same: its entry is picked up, never asked
    // for twice (a second request would be refused while the first holds the door).
    async function ask(position) {
      try {
        return await api("POST", "/courier/api/entries", {
          delivery_id: deliveryId,
          barcode: barcode.value.trim(),
          latitude: position.coords.latitude,
          longitude: position.coords.longitude,
          accuracy_m: Math.min(position.coords.accuracy, 10000),
          nobody_answered: true,
          device_key_id: key.id,
        });
      } catch (error) {
        if (error instanceof ApiError && error.status < 500) throw error;
        const made = await answered("/courier/api/stops/" + encodeURIComponent(deliveryId) + "/entry", (lost) => {
          hint.textContent = lost ? "Connection lost; retrying…" : "Asking the door…";
        });
        if (made) return made;
        throw error instanceof ApiError ? error : new ApiError(0, NO_ANSWER);
      }
    }

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (button.disabled) return;
      busy = true;
      showProblem("");
      refresh();
      try {
        const position = await locate();
        const answer = await ask(position);
        $("prepare").hidden = true;
        entry.follow(answer, key);
      } catch (error) {
        showProblem(error.message);
      } finally {
        busy = false;
        refresh();
      }
    });

    const open = root.dataset.openEntry;
    if (open) {
      $("prepare").hidden = true;
      keyReady.then((found) => entry.resume(open, found), () => entry.resume(open, null));
    }
    refresh();
  }

  // The entry's panel: shows what the service says, signs the door's challenge when it
  // comes, long-polls until the entry ends, and offers lock and abort while it is open.
  function entryPanel(onRetry) {
    const panel = $("entry");
    const outcome = $("outcome");
    const lock = $("lock");
    const abortOpen = $("abort-open");
    const abortForm = $("abort-form");
    let shown = null;
    let lockRequested = false;
    let signed = null;

    function show(entry) {
      shown = entry;
      panel.hidden = false;
      panel.dataset.entry = entry.id;
      const canLock = !entry.ended && !entry.aborting && ["unlocked", "opened"].includes(entry.state) && !entry.alert;
      const asked = lockRequested && canLock;
      outcome.dataset.tone = entry.tone;
      $("headline").textContent = asked ? lock.dataset.headline : entry.headline;
      $("detail").textContent = asked ? lock.dataset.detail : entry.detail;
      lock.hidden = !canLock || asked;
      abortOpen.hidden = !entry.can_abort || !abortForm.hidden;
      if (!entry.can_abort) abortForm.hidden = true;
      $("retry").hidden = !entry.ended || entry.state === "done";
      $("next").hidden = !entry.ended;
    }

    async function prove(entry, key) {
      signed = entry.to_sign;
      if (!key) throw new ApiError(0, "This phone has no key for entries; reload the page or sign in again.");
      const proof = await sign(key, entry.to_sign);
      return api("POST", "/courier/api/entries/" + encodeURIComponent(entry.id) + "/unlock", { proof });
    }

    async function follow(first, key) {
      let entry = first;
      show(entry);
      outcome.focus(); // the request button has gone; what to do now is here
      while (!entry.ended) {
        try {
          if (entry.state === "authorized" && entry.to_sign && entry.to_sign !== signed) {
            entry = await prove(entry, key);
          } else {
            const path = "/courier/api/entries/" + encodeURIComponent(entry.id);
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
            // Asking again will not help (no key, or the service said no): say so, stop.
            $("connection").hidden = true;
            $("detail").textContent = error.message;
            return;
          }
          $("connection").hidden = false; // the network or the service: try again
          await pause(RETRY_MS);
        }
      }
    }

    // After a reload: the open entry, read again until the service answers (a page
    // that gave up would offer a second request, refused while this one holds the door).
    async function resume(entryId, key) {
      panel.hidden = false;
      $("headline").textContent = "Picking up your entry…";
      let entry = null;
      try {
        entry = await answered("/courier/api/entries/" + encodeURIComponent(entryId), (lost) => {
          $("connection").hidden = !lost;
        });
      } catch (error) {
        entry = null;
      }
      if (!entry) {
        panel.hidden = true;
        onRetry(); // it has gone (or is not this courier's): start this stop afresh
        return;
      }
      await follow(entry, key);
    }

    lock.addEventListener("click", () => {
      // Only a request: the hub relocks when the door closes, and the entry ends when
      // the bolt and the door sensor both say so. Until then this page says "Locking…".
      lockRequested = true;
      if (shown) show(shown);
    });
    abortOpen.addEventListener("click", () => {
      abortForm.hidden = false;
      abortOpen.hidden = true;
      abortForm.querySelector("input").focus();
    });
    $("abort-cancel").addEventListener("click", () => {
      abortForm.hidden = true;
      if (shown) show(shown);
      abortOpen.focus();
    });
    abortForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const chosen = abortForm.querySelector('input[name="abort-reason"]:checked');
      if (!chosen || !shown) {
        abortForm.querySelector("input").focus();
        return;
      }
      const path = "/courier/api/entries/" + encodeURIComponent(shown.id) + "/abort";
      try {
        const entry = await api("POST", path, { reason: chosen.value, note: $("abort-note").value.trim() });
        abortForm.hidden = true;
        show(entry);
      } catch (error) {
        $("detail").textContent = error.message;
      }
    });
    $("retry").addEventListener("click", () => {
      panel.hidden = true;
      lockRequested = false;
      signed = null;
      shown = null;
      onRetry();
    });

    return { follow, resume };
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (!document.body.dataset.courier) return;
    const keyReady = prepareDevice();
    keyReady.catch(() => {}); // shown on the page; the stop page waits on it too
    const root = $("stop");
    if (root) stopPage(root, keyReady);
  });
})();
