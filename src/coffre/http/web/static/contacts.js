// Contacts page: import a vCard or CSV file through the JSON API, which
// takes the file itself as the request body (1 MiB at most, like every
// request but uploads). Messages come translated from the form's data-
// attributes. Nothing is kept in browser storage (SEC-27).
"use strict";
(function () {
  const LIMIT = 1024 * 1024;

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, function (all, name) {
      return Object.prototype.hasOwnProperty.call(values, name) ? String(values[name]) : all;
    });
  }

  function show(box, lines, isError) {
    // An error is also next to the file field, which gets the focus (coffre.js).
    const input = document.getElementById("contact-file");
    if (input && window.Coffre && window.Coffre.fieldError) {
      window.Coffre.fieldError(input, isError ? lines[0] : "");
      if (isError) { window.Coffre.reveal(input); }
    }
    box.textContent = "";
    box.className = isError ? "error" : "notice";
    lines.forEach(function (line) {
      const p = document.createElement("p");
      p.textContent = line;
      box.appendChild(p);
    });
  }

  async function refresh() {
    const list = document.getElementById("contact-results");
    const query = document.getElementById("contact-q");
    if (!list || !window.htmx) { return; }
    window.htmx.ajax("GET", "/contacts?q=" + encodeURIComponent(query ? query.value : ""),
      { target: "#contact-results", swap: "innerHTML" });
  }

  async function importFile(form) {
    const box = document.getElementById("contact-import-result");
    const input = form.querySelector("input[type=file]");
    const file = input && input.files && input.files[0];
    if (!file) { show(box, [form.dataset.choose], true); return; }
    if (file.size > LIMIT) { show(box, [form.dataset.tooLarge], true); return; }
    const csv = /\.csv$/i.test(file.name) || file.type === "text/csv";
    const shared = form.querySelector("input[name=shared]");
    const params = new URLSearchParams({ format: csv ? "csv" : "vcard" });
    if (shared && shared.checked) { params.set("shared", "true"); }
    let response;
    try {
      response = await fetch("/api/v1/contacts/import?" + params.toString(), {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRF-Token": window.Coffre.csrf(), "Accept": "application/json",
                   "Content-Type": csv ? "text/csv" : "text/vcard" },
        body: file,
      });
    } catch (e) {
      show(box, [form.dataset.failed], true);
      return;
    }
    if (response.status === 413) { show(box, [form.dataset.tooLarge], true); return; }
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok || !data) { show(box, [form.dataset.failed], true); return; }
    const lines = [fill(form.dataset.done, { created: data.created, updated: data.updated,
                                            rejected: data.rejected.length })];
    data.rejected.slice(0, 20).forEach(function (r) {
      lines.push(fill(form.dataset.line, { line: r.line, reason: r.reason }));
    });
    show(box, lines, false);
    input.value = "";
    refresh();
  }

  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (form && form.id === "contact-import") {
      event.preventDefault();
      importFile(form);
    }
  });
})();
