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

  // The main menu on a phone: a "Menu" button folds and unfolds the list
  // (without JavaScript the button stays hidden and the list shows).
  function foldMenu(toggle, open) {
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
  }
  const toggle = document.querySelector(".menu-toggle");
  if (toggle) {
    toggle.hidden = false;
    toggle.addEventListener("click", function () {
      foldMenu(toggle, toggle.getAttribute("aria-expanded") !== "true");
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && toggle.getAttribute("aria-expanded") === "true") {
        foldMenu(toggle, false);
        toggle.focus();
      }
    });
  }

  window.Coffre = { api: api, csrf: csrf };
})();
