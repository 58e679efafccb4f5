// Doorstep phone key, shared by the courier app and the guest and worker app
// (`window.DoorstepPhone`): the page's JSON client (session cookie + CSRF header), this
// phone's key, its signature of a door's challenge, and the phone's position.
// Hand-written, no dependencies.
//
// The key: ECDSA P-256 from WebCrypto, made non-extractable, kept as a CryptoKey in
// IndexedDB (the app's database, store "device-keys", one record per person:
// {id, privateKey, created}). Only its public JWK is sent, once, to be registered. The
// private key only ever signs the door's challenge (`to_sign`, base64url), and WebCrypto
// answers ES256 in the raw r||s form the hub checks.
"use strict";

window.DoorstepPhone = (function () {
  const STORE = "device-keys";

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  // `api(method, path, payload)` for one app: JSON in and out, the session cookie, the
  // page's CSRF token on every call that sends a body; a lost session goes to `signInPath`.
  function client(signInPath) {
    return async function api(method, path, payload) {
      const headers = { Accept: "application/json" };
      const init = { method, headers, credentials: "same-origin", cache: "no-store" };
      if (payload !== undefined) {
        headers["Content-Type"] = "application/json";
        headers["X-CSRF-Token"] = csrfToken();
        init.body = JSON.stringify(payload);
      }
      const response = await fetch(path, init);
      if (response.status === 401) {
        window.location.assign(signInPath);
        throw new ApiError(401, "Your session has ended; sign in again.");
      }
      const data = await response.json().catch(() => null);
      if (!response.ok) {
        const message = data && data.error ? data.error.message : "";
        throw new ApiError(response.status, message || "The service answered " + response.status + ".");
      }
      return data;
    };
  }

  function keyStore(dbName, mode, action) {
    return new Promise((resolve, reject) => {
      const opening = indexedDB.open(dbName, 1);
      opening.onupgradeneeded = () => opening.result.createObjectStore(STORE);
      opening.onerror = () => reject(opening.error);
      opening.onsuccess = () => {
        const db = opening.result;
        const tx = db.transaction(STORE, mode);
        const request = action(tx.objectStore(STORE));
        tx.oncomplete = () => {
          db.close();
          resolve(request.result);
        };
        tx.onerror = tx.onabort = () => {
          db.close();
          reject(tx.error);
        };
      };
    });
  }

  function showDevice(state, text) {
    const node = document.getElementById("device-status");
    if (!node) return;
    node.dataset.state = state;
    node.textContent = text;
  }

  // This phone's key for `ownerId`: the stored one if the service still knows it, else a
  // new one, registered at `keysPath` (a key the service no longer knows, revoked or from
  // a reset database, is never sent again). Shows how it went in #device-status.
  function prepare({ ownerId, dbName, keysPath, label, api }) {
    async function newKey() {
      const pair = await crypto.subtle.generateKey(
        { name: "ECDSA", namedCurve: "P-256" },
        false, // the private key can never be exported, by this page or anyone
        ["sign"]
      );
      const jwk = await crypto.subtle.exportKey("jwk", pair.publicKey);
      const platform = (navigator.userAgentData && navigator.userAgentData.platform) || navigator.platform || "phone";
      const registered = await api("POST", keysPath, {
        jwk: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y },
        label: (label + " (" + platform + ")").slice(0, 100),
      });
      const record = { id: registered.id, privateKey: pair.privateKey, created: registered.created_at };
      await keyStore(dbName, "readwrite", (store) => store.put(record, ownerId));
      return record;
    }

    async function deviceKey() {
      const stored = await keyStore(dbName, "readonly", (store) => store.get(ownerId));
      const known = await api("GET", keysPath);
      if (stored && known.some((key) => key.id === stored.id)) return stored;
      return newKey();
    }

    if (!window.crypto || !crypto.subtle || !window.indexedDB) {
      showDevice("problem", "This browser cannot keep a key for entries; use another browser.");
      return Promise.reject(new Error("no WebCrypto or IndexedDB"));
    }
    // One tab at a time makes the key, so two tabs opened at once do not make two.
    const made = navigator.locks ? navigator.locks.request("doorstep-device-key", deviceKey) : deviceKey();
    return made.then(
      (key) => {
        showDevice("ready", "This phone is registered for entries.");
        return key;
      },
      (error) => {
        showDevice("problem", "This phone could not be registered: " + error.message);
        throw error;
      }
    );
  }

  function fromBase64url(text) {
    const padded = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  }

  function toBase64url(buffer) {
    let binary = "";
    new Uint8Array(buffer).forEach((byte) => {
      binary += String.fromCharCode(byte);
    });
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  // The door's challenge signed with this phone's key: ES256, r||s, 64 bytes, base64url.
  async function sign(key, toSign) {
    const signature = await crypto.subtle.sign(
      { name: "ECDSA", hash: "SHA-256" },
      key.privateKey,
      fromBase64url(toSign)
    );
    return toBase64url(signature);
  }

  function locate() {
    return new Promise((resolve, reject) => {
      if (!navigator.geolocation) {
        reject(new Error("This browser cannot tell where you are."));
        return;
      }
      navigator.geolocation.getCurrentPosition(resolve, () => reject(new Error(
        "Your location is needed at the door: allow it for this site, then try again."
      )), { enableHighAccuracy: true, timeout: 15000, maximumAge: 0 });
    });
  }

  return { ApiError, client, prepare, sign, locate };
})();
