// Coffre's pages: small behaviours shared by every page. No inline script
// anywhere (the Content-Security-Policy forbids it); pages opt in with
// data- attributes. Nothing is kept in browser storage (SEC-27).
"use strict";
(function () {
  // htmx (loaded just before this script) writes the page's address, path
  // and query, to sessionStorage as it starts, for a history our pages do
  // not keep; that address may be a capability (/t/..., /d/..., /setup/...)
  // or a search: forget it at once.
  try {
    sessionStorage.removeItem("htmx-current-path-for-history");
    sessionStorage.removeItem("htmx-history-cache");
  } catch (e) { /* no storage: nothing was kept */ }

  // <form data-confirm="Question?">: ask before submitting.
  document.addEventListener("submit", function (event) {
    const form = event.target;
    const question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  // The session's CSRF token, for scripts calling the JSON API.
  function csrf() {
    return document.body.getAttribute("data-csrf") || "";
  }

  // A JSON API call with the session cookie and the CSRF token.
  async function api(method, url, body) {
    const headers = { "X-CSRF-Token": csrf(), "Accept": "application/json" };
    const init = { method: method, headers: headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    let data = null;
    if (response.status !== 204) {
      try { data = await response.json(); } catch (e) { data = null; }
    }
    return { ok: response.ok, status: response.status, data: data };
  }

  window.Coffre = { api: api, csrf: csrf };
})();

// <button data-copy="source-id" data-copy-status="status-id" data-copied="…"
// data-copy-failed="…" hidden>: copies the source's value (a field) or
// text (a link to pass on) and says so in the status element; shown only
// with JavaScript. Where the clipboard cannot be written, a field is
// selected for the person to copy it themselves.
(function () {
  const selector = "button[data-copy][data-copy-status]";
  document.querySelectorAll(selector).forEach(function (button) {
    button.hidden = false;
  });
  document.addEventListener("click", async function (event) {
    const button = event.target.closest && event.target.closest(selector);
    if (!button) { return; }
    const source = document.getElementById(button.getAttribute("data-copy"));
    const status = document.getElementById(button.getAttribute("data-copy-status"));
    if (!source) { return; }
    const text = "value" in source ? source.value : source.textContent;
    let copied = false;
    try {
      await navigator.clipboard.writeText(text);
      copied = true;
    } catch (e) { copied = false; }
    if (!copied && source.select) {
      source.focus();
      source.select();
    }
    if (status) {
      status.textContent = button.getAttribute(copied ? "data-copied" : "data-copy-failed");
      status.classList.toggle("copied", copied);
    }
  });
})();
