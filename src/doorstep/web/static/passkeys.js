// Passkeys (web/passkeys.py): a form with data-passkey="create" or "get" carries the
// service's WebAuthn options as JSON in data-options (binary fields base64url). On submit
// the browser is asked for a new passkey, or for one it holds, and the answer goes back
// as JSON in the form's "credential" field, binary fields base64url again.
// Hand-written, no dependencies, loaded from this origin only (the pages' CSP).
"use strict";

(function () {
  function toBytes(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    var binary = atob(base64 + "===".slice((base64.length + 3) % 4));
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  function toText(buffer) {
    var bytes = new Uint8Array(buffer);
    var binary = "";
    for (var i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function descriptors(list) {
    return (list || []).map(function (item) {
      return Object.assign({}, item, { id: toBytes(item.id) });
    });
  }

  function creationOptions(json) {
    return Object.assign({}, json, {
      challenge: toBytes(json.challenge),
      user: Object.assign({}, json.user, { id: toBytes(json.user.id) }),
      excludeCredentials: descriptors(json.excludeCredentials),
    });
  }

  function requestOptions(json) {
    return Object.assign({}, json, {
      challenge: toBytes(json.challenge),
      allowCredentials: descriptors(json.allowCredentials),
    });
  }

  function common(credential, response) {
    return {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: response,
    };
  }

  function created(credential) {
    var answer = credential.response;
    return common(credential, {
      clientDataJSON: toText(answer.clientDataJSON),
      attestationObject: toText(answer.attestationObject),
      transports: answer.getTransports ? answer.getTransports() : [],
    });
  }

  function asserted(credential) {
    var answer = credential.response;
    return common(credential, {
      clientDataJSON: toText(answer.clientDataJSON),
      authenticatorData: toText(answer.authenticatorData),
      signature: toText(answer.signature),
      userHandle: answer.userHandle ? toText(answer.userHandle) : undefined,
    });
  }

  function ask(kind, options) {
    if (kind === "create") {
      return navigator.credentials.create({ publicKey: creationOptions(options) }).then(created);
    }
    return navigator.credentials.get({ publicKey: requestOptions(options) }).then(asserted);
  }

  function wire(form) {
    var kind = form.getAttribute("data-passkey");
    var status = form.querySelector("[data-passkey-status]");
    var button = form.querySelector("button[type=submit]");
    function say(text) {
      if (status) status.textContent = text;
    }
    if (!window.PublicKeyCredential) {
      say("This browser cannot use passkeys.");
      if (button) button.disabled = true;
      return;
    }
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (button) button.disabled = true;
      say(kind === "create" ? "Follow your device's prompt…" : "Choose your passkey…");
      ask(kind, JSON.parse(form.getAttribute("data-options")))
        .then(function (credential) {
          form.elements.namedItem("credential").value = JSON.stringify(credential);
          form.submit();
        })
        .catch(function (error) {
          if (button) button.disabled = false;
          say(
            error && error.name === "NotAllowedError"
              ? "No passkey was used. Try again when you are ready."
              : "Your device could not use a passkey here (" + (error && error.name) + ")."
          );
        });
    });
  }

  document.querySelectorAll("form[data-passkey]").forEach(wire);
})();
