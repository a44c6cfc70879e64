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

  // -- Forms that show their errors (templates/_forms.html): the first
  // faulty field, else the message near the button, is scrolled to and
  // focused when a page or an htmx fragment shows one.
  function reveal(element) {
    if (!element) { return; }
    if (!element.matches("input, select, textarea, button, a[href], [tabindex]")) {
      element.setAttribute("tabindex", "-1");
    }
    element.scrollIntoView({ block: "center" });
    element.focus({ preventScroll: true });
  }

  function firstError(root) {
    return root.querySelector("[aria-invalid='true']:not([type='hidden'])")
      || root.querySelector(".form-summary .error, .field-error, .error[role='alert']:not([hidden])");
  }

  function describe(field, id, on) {
    const ids = (field.getAttribute("aria-describedby") || "").split(/\s+/)
      .filter(function (x) { return x && x !== id; });
    if (on) { ids.push(id); }
    if (ids.length) { field.setAttribute("aria-describedby", ids.join(" ")); }
    else { field.removeAttribute("aria-describedby"); }
  }

  // One field's message, after ``place`` (the field itself by default).
  function fieldError(field, text, place) {
    const id = (field.id || field.name) + "-error";
    let note = document.getElementById(id);
    if (!text) {
      if (note) { note.remove(); }
      field.removeAttribute("aria-invalid");
      describe(field, id, false);
      const box = field.closest(".form-field");
      if (box) { box.classList.remove("has-error"); }
      return;
    }
    if (!note) {
      note = document.createElement("p");
      note.id = id;
      note.className = "error field-error";
      (place || field).insertAdjacentElement("afterend", note);
    }
    note.textContent = text;
    field.setAttribute("aria-invalid", "true");
    describe(field, id, true);
    const box = field.closest(".form-field");
    if (box) { box.classList.add("has-error"); }
  }

  function summaryOf(form) {
    return form.querySelector("[data-form-summary]");
  }

  // Errors found in the browser: [{field, message, place}], each shown next
  // to its field and all of them near the button; the first is focused.
  function showErrors(form, errors, general) {
    const summary = summaryOf(form);
    form.querySelectorAll("[aria-invalid='true']").forEach(function (f) { fieldError(f, ""); });
    if (summary) {
      summary.textContent = "";
      const lines = errors.map(function (e) { return e.message; });
      if (general) { lines.push(general); }
      lines.forEach(function (text) {
        const p = document.createElement("p");
        p.className = "error";
        p.textContent = text;
        summary.appendChild(p);
      });
    }
    errors.forEach(function (e) { fieldError(e.field, e.message, e.place); });
    if (errors.length) { reveal(errors[0].field); }
    else if (summary && general) { reveal(summary); }
  }

  function clearErrors(form) { showErrors(form, [], ""); }

  // On a page shown again with its errors: the first faulty field, else the
  // message (unless the page chose a field to focus itself).
  document.addEventListener("DOMContentLoaded", function () {
    const main = document.getElementById("main");
    if (!main) { return; }
    const faulty = main.querySelector("[aria-invalid='true']:not([type='hidden'])");
    const message = firstError(main);
    if (faulty) { reveal(faulty); }
    else if (message && !main.querySelector("[autofocus]")) { reveal(message); }
  });

  // A form's errors answered with 400 or 422 are fragments to show, not
  // failures (for forms built with _forms.html's summary only).
  document.addEventListener("htmx:beforeSwap", function (event) {
    const status = event.detail.xhr.status;
    const elt = event.detail.elt;
    const form = elt && elt.closest && elt.closest("form");
    if ((status === 400 || status === 422) && form && summaryOf(form)) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  // A fragment may name the field at fault: <p class="error" data-field="id">.
  document.addEventListener("htmx:afterSwap", function (event) {
    const target = event.detail.target;
    const form = target && target.closest && target.closest("form");
    if (!form) { return; }
    form.querySelectorAll("[aria-invalid='true']").forEach(function (f) { fieldError(f, ""); });
    const named = target.querySelectorAll("[data-field]");
    named.forEach(function (p) {
      const field = document.getElementById(p.getAttribute("data-field"));
      const place = document.getElementById(p.getAttribute("data-place") || "");
      if (field) { fieldError(field, p.textContent, place); }
    });
    const first = named.length && document.getElementById(named[0].getAttribute("data-field"));
    reveal(first || firstError(target));
  });

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

  // -- Uploads in the browser (send.js, deposit.js): a size as the server
  // writes it (templating.filesize: 1,5 Mo / 1.5 MB) and a time left as
  // people say it (45 s, 3 min, 1 h 05).
  function size(bytes) {
    const french = document.documentElement.lang === "fr";
    const units = french ? ["octets", "Ko", "Mo", "Go", "To"] : ["bytes", "KB", "MB", "GB", "TB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    const text = unit === 0 ? String(Math.round(value)) : value.toFixed(1);
    return (french ? text.replace(".", ",") : text) + " " + units[unit];
  }

  function duration(seconds) {
    const s = Math.max(Math.ceil(seconds), 1);
    if (s < 60) { return s + " s"; }
    if (s < 3600) { return Math.ceil(s / 60) + " min"; }
    const minutes = Math.ceil(s / 60);
    return Math.floor(minutes / 60) + " h " + String(minutes % 60).padStart(2, "0");
  }

  window.Coffre = { api: api, csrf: csrf, showErrors: showErrors, clearErrors: clearErrors,
                    fieldError: fieldError, reveal: reveal, size: size, duration: duration };
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
