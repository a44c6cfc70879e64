// Passkeys (WebAuthn) for the sign-in, step-up and account pages, through
// the JSON API (/api/v1/auth/login/webauthn..., /api/v1/auth/reauth...,
// /api/v1/account/factors/webauthn...). Options and credentials cross as
// JSON with base64url fields. Recovery codes returned by a first passkey
// are written into the page only: nothing goes to browser storage (SEC-27).
"use strict";
(function () {
  function fromB64url(text) {
    const padded = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
    const binary = atob(padded);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes.buffer;
  }

  function toB64url(buffer) {
    if (!buffer) return null;
    const bytes = new Uint8Array(buffer);
    let binary = "";
    for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function withIds(list) {
    return (list || []).map(function (c) { return Object.assign({}, c, { id: fromB64url(c.id) }); });
  }

  function creationOptions(o) {
    return Object.assign({}, o, {
      challenge: fromB64url(o.challenge),
      user: Object.assign({}, o.user, { id: fromB64url(o.user.id) }),
      excludeCredentials: withIds(o.excludeCredentials),
    });
  }

  function requestOptions(o) {
    return Object.assign({}, o, {
      challenge: fromB64url(o.challenge),
      allowCredentials: withIds(o.allowCredentials),
    });
  }

  function credentialJSON(cred) {
    const r = cred.response;
    const response = { clientDataJSON: toB64url(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toB64url(r.attestationObject);
      response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      response.authenticatorData = toB64url(r.authenticatorData);
      response.signature = toB64url(r.signature);
      if (r.userHandle) response.userHandle = toB64url(r.userHandle);
    }
    const json = {
      id: cred.id, rawId: toB64url(cred.rawId), type: cred.type, response: response,
      clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
    };
    if (cred.authenticatorAttachment) json.authenticatorAttachment = cred.authenticatorAttachment;
    return json;
  }

  function reason(result) {
    const error = result.data && result.data.error;
    return (error && error.details && error.details.reason) || "";
  }

  // Where to go after a success: a local path only (the server checked it
  // too, with the same rules as guard.safe_next). Browsers drop tabs and
  // newlines and read "\\" as "/": refuse control characters, spaces and
  // backslashes anywhere, also percent-encoded, and anything but "/path".
  function local(path) {
    const fallback = "/transfers";
    if (typeof path !== "string" || !path || path.length > 2000 ||
        /[^\x21-\x7e]|\\/.test(path)) return fallback;
    let seen = path;
    for (let round = 0; round < 4; round++) {
      if (!/^\/(?!\/)/.test(seen) || /[\x00-\x1f\x7f-\x9f\\]/.test(seen)) return fallback;
      let decoded;
      try { decoded = decodeURIComponent(seen); } catch (e) { return fallback; }
      if (decoded === seen) return path;
      seen = decoded;
    }
    return fallback;
  }

  function setUp(box) {
    const button = box.querySelector(".passkey-start");
    const error = box.querySelector(".passkey-error");
    const kind = box.getAttribute("data-passkey");

    function fail(name) {
      error.textContent = box.querySelector(".passkey-messages").getAttribute("data-error-" + name) || "";
      error.hidden = false;
      button.disabled = false;
    }

    if (!window.PublicKeyCredential || !navigator.credentials) {
      button.disabled = true;
      box.querySelector(".passkey-unsupported").hidden = false;
      return;
    }

    async function ceremony(optionsUrl, makeOptions, create) {
      const options = await window.Coffre.api("POST", optionsUrl);
      if (!options.ok) return { options: options };
      let cred;
      try {
        cred = create
          ? await navigator.credentials.create({ publicKey: makeOptions(options.data) })
          : await navigator.credentials.get({ publicKey: makeOptions(options.data) });
      } catch (e) {
        return { cancelled: true };
      }
      return { credential: credentialJSON(cred) };
    }

    async function login() {
      const got = await ceremony("/api/v1/auth/login/webauthn/options", requestOptions, false);
      if (got.cancelled) return fail("cancelled");
      if (got.options) {
        if (got.options.status === 404) return fail("none");
        if (got.options.status === 401) return fail("expired");
        return fail(got.options.status === 429 ? "wait" : "generic");
      }
      const done = await window.Coffre.api("POST", "/api/v1/auth/login/webauthn",
                                           { credential: got.credential });
      if (done.ok) return window.location.assign(local(box.getAttribute("data-next")));
      fail(done.status === 429 ? "wait" : reason(done) === "session_expired" ? "expired" : "generic");
    }

    async function reauth() {
      const password = document.getElementById("password");
      if (!password.value) {
        password.focus();
        return fail("password");
      }
      const got = await ceremony("/api/v1/auth/reauth/webauthn/options", requestOptions, false);
      if (got.cancelled) return fail("cancelled");
      if (got.options) return fail(got.options.status === 404 ? "none" : "generic");
      const done = await window.Coffre.api("POST", "/api/v1/auth/reauth", {
        password: password.value, method: "webauthn", credential: got.credential,
      });
      // Through /reauth/continue: it resumes the action that asked for the
      // step-up, if one waits, else goes on to the page.
      if (done.ok) {
        return window.location.assign("/reauth/continue?next=" +
                                      encodeURIComponent(local(box.getAttribute("data-next"))));
      }
      fail(done.status === 429 ? "wait" : "generic");
    }

    async function register() {
      const got = await ceremony("/api/v1/account/factors/webauthn/options", creationOptions, true);
      if (got.cancelled) return fail("cancelled");
      if (got.options) {
        if (reason(got.options) === "reauthentication_required") {
          return window.location.assign("/reauth?next=" + encodeURIComponent(window.location.pathname));
        }
        return fail("generic");
      }
      const name = box.querySelector(".passkey-name");
      const done = await window.Coffre.api("POST", "/api/v1/account/factors/webauthn",
                                           { name: name ? name.value : "", credential: got.credential });
      if (!done.ok) return fail("generic");
      const codes = done.data.recovery_codes || [];
      if (!codes.length) return window.location.assign("/account");
      const section = box.querySelector(".passkey-codes");
      const list = section.querySelector(".codes");
      codes.forEach(function (code) {
        const item = document.createElement("li");
        const text = document.createElement("code");
        text.textContent = code;
        item.appendChild(text);
        list.appendChild(item);
      });
      button.hidden = true;
      section.hidden = false;
      section.querySelector("h2").focus();
    }

    const run = { login: login, reauth: reauth, register: register }[kind];
    button.addEventListener("click", function () {
      error.hidden = true;
      button.disabled = true;
      run().catch(function () { fail("generic"); });
    });
  }

  document.querySelectorAll("[data-passkey]").forEach(setUp);
})();

// After step-up (/reauth/continue): the form the reader had sent, kept on
// the server while they confirmed who they are, is sent again at once
// (without JavaScript, its one button does it).
(function () {
  const form = document.querySelector("form[data-resume]");
  if (form) form.submit();
})();

// Recovery codes: copy them, download them as a .txt file made here from
// the codes on the page (no server endpoint keeps them), print them (the
// print stylesheet shows only the codes and their instructions).
(function () {
  function codesOf(box) {
    const section = box.closest(".recovery") || document;
    return Array.prototype.map.call(section.querySelectorAll(".codes code"), function (c) {
      return c.textContent.trim();
    }).filter(Boolean);
  }

  function say(box, text) {
    const said = box.querySelector("[data-said]");
    said.textContent = "";
    window.setTimeout(function () { said.textContent = text; }, 50);
  }

  function today() {
    const lang = document.documentElement.lang || "fr";
    return new Date().toLocaleDateString(lang === "fr" ? "fr-FR" : "en-GB");
  }

  function fileText(box) {
    return [box.getAttribute("data-header") + " " + today(),
            box.getAttribute("data-instructions"), ""].concat(codesOf(box)).join("\r\n") + "\r\n";
  }

  function selectCodes(box) {
    const list = (box.closest(".recovery") || document).querySelector(".codes");
    if (!list) return;
    const range = document.createRange();
    range.selectNodeContents(list);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  document.querySelectorAll("[data-codes]").forEach(function (box) {
    box.hidden = false;
    box.querySelector("[data-copy]").addEventListener("click", function () {
      const text = codesOf(box).join("\n");
      const copied = function () { say(box, box.getAttribute("data-copied")); };
      const refused = function () {
        selectCodes(box);
        say(box, box.getAttribute("data-not-copied"));
      };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(copied, refused);
      } else {
        refused();
      }
    });
    box.querySelector("[data-download]").addEventListener("click", function () {
      const blob = new Blob([fileText(box)], { type: "text/plain;charset=utf-8" });
      const url = URL.createObjectURL(blob);
      const link = document.createElement("a");
      link.href = url;
      link.download = box.getAttribute("data-filename");
      document.body.appendChild(link);
      link.click();
      link.remove();
      window.setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
    });
    box.querySelector("[data-print]").addEventListener("click", function () {
      window.print();
    });
  });
})();
