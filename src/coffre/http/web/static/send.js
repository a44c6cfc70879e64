// The new transfer page: files are uploaded with tus (resumable), a
// progress bar per file and one for all; recipients are added from the
// contacts. Nothing is kept in browser storage (SEC-27): after a reload,
// re-selecting a file finds its unfinished upload on the server
// (GET /api/v1/uploads/, matched by name, size and modification time) and
// the upload goes on from the server's offset.
"use strict";
(function () {
  const form = document.getElementById("send-form");
  if (!form || !window.tus) { return; }
  const CHUNK = 8 * 1024 * 1024;
  const list = document.getElementById("upload-list");
  const input = document.getElementById("file-input");
  const zone = document.getElementById("dropzone");
  const overall = document.getElementById("overall");
  const overallBar = document.getElementById("overall-progress");
  const overallText = document.getElementById("overall-text");
  const submit = document.getElementById("send-submit");
  const cancel = document.getElementById("send-cancel");
  const waitingNote = document.getElementById("send-waiting");
  const overallDetail = document.getElementById("overall-detail");
  const items = [];
  const claimed = new Set(); // server uploads already used by this page

  function t(name, values) {
    let text = form.getAttribute("data-t-" + name) || "";
    Object.keys(values || {}).forEach(function (key) {
      text = text.split("{" + key + "}").join(values[key]);
    });
    return text;
  }

  function percentText(value) { return t("percent", { p: String(value) }); }

  // -- errors: next to what caused them and near the button (coffre.js).
  function showErrors(errors, general) {
    if (window.Coffre.showErrors) { window.Coffre.showErrors(form, errors, general); }
  }

  function fileError(text) {
    return { field: input, message: text, place: zone };
  }

  // -- sizes, speed and time left, in the page's language (coffre.js).
  const formatSize = window.Coffre.size;

  function timeLeft(seconds) {
    return t("left", { time: window.Coffre.duration(seconds) });
  }

  // Speed over the last few seconds (a sliding window of samples).
  function speedOf(samples, now, sent) {
    samples.push([now, sent]);
    while (samples.length > 2 && now - samples[0][0] > 10000) { samples.shift(); }
    const first = samples[0];
    const elapsed = (now - first[0]) / 1000;
    return elapsed >= 0.5 ? (sent - first[1]) / elapsed : 0;
  }

  function detailText(sent, total, speed) {
    const parts = [t("bytes", { sent: formatSize(sent), total: formatSize(total) })];
    if (sent < total && speed > 0) {
      parts.push(t("speed", { size: formatSize(speed) }));
      parts.push(timeLeft((total - sent) / speed));
    }
    return parts.join(" \u00b7 ");
  }

  function fingerprint(file) {
    return ["coffre", file.name, file.size, file.lastModified].join("/");
  }

  // tus-js-client's URL storage, backed by the server's list of the
  // caller's unfinished uploads instead of localStorage.
  const serverStorage = {
    findAllUploads: function () { return Promise.resolve([]); },
    findUploadsByFingerprint: async function (print) {
      const answer = await window.Coffre.api("GET", "/api/v1/uploads/");
      if (!answer.ok || !Array.isArray(answer.data)) { return []; }
      return answer.data.filter(function (u) {
        return u.metadata && u.metadata.fingerprint === print && !claimed.has(u.id);
      }).map(function (u) {
        return { uploadUrl: "/api/v1/uploads/" + u.id, size: u.length, metadata: u.metadata,
                 creationTime: u.expires_at, urlStorageKey: u.id, offset: u.offset };
      });
    },
    removeUpload: function () { return Promise.resolve(); },
    addUpload: function () { return Promise.resolve(""); },
  };

  const overallSamples = [];

  function updateOverall() {
    const total = items.reduce(function (sum, it) { return sum + it.file.size; }, 0);
    const sent = items.reduce(function (sum, it) { return sum + it.sent; }, 0);
    const value = total ? Math.floor(100 * sent / total) : 0;
    overall.hidden = items.length === 0;
    overallBar.value = value;
    overallText.textContent = percentText(value);
    const running = items.some(function (it) { return it.state === "uploading"; });
    const speed = running ? speedOf(overallSamples, Date.now(), sent) : 0;
    if (!running) { overallSamples.length = 0; }
    overallDetail.textContent = items.length ? detailText(sent, total, speed) : "";
  }

  function setProgress(item, sent) {
    item.sent = sent;
    const value = item.file.size ? Math.floor(100 * sent / item.file.size) : 100;
    item.bar.value = value;
    item.percent.textContent = percentText(value);
    const speed = item.state === "uploading" ? speedOf(item.samples, Date.now(), sent) : 0;
    item.detail.textContent = detailText(sent, item.file.size, speed);
    updateOverall();
  }

  // Speed and time left move on between progress events (a slow chunk).
  setInterval(function () {
    items.forEach(function (it) { if (it.state === "uploading") { setProgress(it, it.sent); } });
  }, 1000);

  function setState(item, state, text) {
    item.state = state;
    item.status.textContent = text;
    item.toggle.hidden = state === "done" || state === "failed";
    item.toggle.textContent = state === "paused" ? t("resume") : t("pause");
    item.li.setAttribute("data-state", state);
    if (state !== "uploading") { item.samples.length = 0; }
    else if (!item.samples.length) { item.samples.push([Date.now(), item.sent]); }
    updateOverall();
    afterUploads();
  }

  function errorText(error) {
    const response = error && error.originalResponse;
    if (!response || !response.getStatus()) { return [t("network"), "paused"]; }
    let code = "";
    try { code = JSON.parse(response.getBody()).error.code; } catch (e) { code = ""; }
    if (code === "quota_exceeded") { return [t("quota"), "failed"]; }
    if (code === "unsupported_media_type") { return [t("file-type"), "failed"]; }
    if (code === "too_large" || response.getStatus() === 413) { return [t("too-large"), "failed"]; }
    return [t("failed"), "failed"];
  }

  function uploadId(url) {
    return String(url).replace(/\/+$/, "").split("/").pop();
  }

  function makeUpload(item) {
    const print = fingerprint(item.file);
    return new window.tus.Upload(item.file, {
      endpoint: "/api/v1/uploads/",
      chunkSize: CHUNK,
      retryDelays: [0, 1000, 3000, 5000],
      headers: { "X-CSRF-Token": window.Coffre.csrf() },
      metadata: { filename: item.file.name, filetype: item.file.type || "application/octet-stream",
                  fingerprint: print },
      fingerprint: function () { return Promise.resolve(print); },
      urlStorage: serverStorage,
      storeFingerprintForResuming: false,
      removeFingerprintOnSuccess: false,
      // Claimed at once: the same file chosen twice must not share an upload.
      onUploadUrlAvailable: function () { claimed.add(uploadId(item.upload.url)); },
      onProgress: function (sent) { setProgress(item, sent); },
      onSuccess: function () {
        item.id = uploadId(item.upload.url);
        claimed.add(item.id);
        item.hidden = document.createElement("input");
        item.hidden.type = "hidden";
        item.hidden.name = "upload";
        item.hidden.value = item.id;
        form.appendChild(item.hidden);
        setProgress(item, item.file.size);
        setState(item, "done", t("done"));
      },
      onError: function (error) {
        const found = errorText(error);
        setState(item, found[1], found[0]);
      },
    });
  }

  async function start(item) {
    item.upload = makeUpload(item);
    setState(item, "uploading", t("waiting"));
    try {
      const previous = await item.upload.findPreviousUploads();
      if (previous.length) {
        claimed.add(previous[0].urlStorageKey);
        item.upload.resumeFromPreviousUpload(previous[0]);
        const size = item.file.size || 1;
        const from = Math.floor(100 * (previous[0].offset || 0) / size);
        setProgress(item, previous[0].offset || 0);
        item.resumedFrom = previous[0].offset || 0;
        item.samples.length = 0;  // bytes sent before the reload are not speed
        item.samples.push([Date.now(), item.resumedFrom]);
        overallSamples.length = 0;
        item.li.setAttribute("data-resumed-from", String(item.resumedFrom));
        item.note.textContent = t("resumed", { p: String(from) });
      }
    } catch (e) {
      // No list (offline): a new upload.
    }
    if (item.state === "removed") { return; }
    setState(item, "uploading", t("uploading"));
    item.upload.start();
  }

  function button(text, handler) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = text;
    b.addEventListener("click", handler);
    return b;
  }

  function addFile(file) {
    const item = { file: file, sent: 0, state: "waiting", id: null, upload: null, hidden: null,
                   samples: [] };
    const index = items.length;
    item.li = document.createElement("li");
    item.li.className = "upload";
    const head = document.createElement("div");
    head.className = "upload-head";
    const name = document.createElement("span");
    name.className = "file-name";
    name.textContent = file.name;
    const size = document.createElement("span");
    size.className = "file-size";
    size.textContent = formatSize(file.size);
    head.append(name, " ", size);
    const barId = "upload-bar-" + index + "-" + Date.now();
    const label = document.createElement("label");
    label.className = "sr-only";
    label.htmlFor = barId;
    label.textContent = t("progress", { name: file.name });
    item.bar = document.createElement("progress");
    item.bar.id = barId;
    item.bar.max = 100;
    item.bar.value = 0;
    item.percent = document.createElement("span");
    item.percent.className = "percent";
    item.percent.textContent = percentText(0);
    item.detail = document.createElement("span");
    item.detail.className = "progress-detail";
    item.detail.id = barId + "-detail";
    item.detail.textContent = detailText(0, file.size, 0);
    item.bar.setAttribute("aria-describedby", item.detail.id);
    const row = document.createElement("div");
    row.className = "upload-row";
    row.append(label, item.bar, item.percent);
    item.status = document.createElement("span");
    item.status.className = "upload-status";
    item.status.setAttribute("role", "status");
    item.note = document.createElement("span");
    item.note.className = "upload-note hint";
    item.toggle = button(t("pause"), function () {
      if (item.state === "paused") {
        setState(item, "uploading", t("uploading"));
        item.upload.start();
      } else if (item.state === "uploading") {
        item.upload.abort();
        setState(item, "paused", t("paused"));
      }
    });
    item.toggle.className = "pause";
    const remove = button(t("remove"), function () {
      const was = item.state;
      item.state = "removed";
      if (item.upload && was !== "removed") {
        item.upload.abort(true).catch(function () { return null; });
      }
      if (item.hidden) { item.hidden.remove(); }
      items.splice(items.indexOf(item), 1);
      item.li.remove();
      updateOverall();
      afterUploads();
      input.focus();
    });
    remove.className = "remove";
    remove.setAttribute("aria-label", t("remove") + " " + file.name);
    const actions = document.createElement("div");
    actions.className = "upload-actions";
    actions.append(item.status, item.note, item.toggle, remove);
    item.li.append(head, row, item.detail, actions);
    list.appendChild(item.li);
    items.push(item);
    updateOverall();
    start(item);
  }


  function addFiles(files) {
    if (input.getAttribute("aria-invalid") === "true") { window.Coffre.fieldError(input, ""); }
    Array.prototype.forEach.call(files, addFile);
  }

  input.addEventListener("change", function () {
    addFiles(input.files);
    input.value = "";
  });
  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (event) {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function (event) {
      event.preventDefault();
      zone.classList.remove("dragging");
    });
  });
  zone.addEventListener("drop", function (event) {
    if (event.dataTransfer && event.dataTransfer.files) { addFiles(event.dataTransfer.files); }
  });

  // -- recipients: one chip per address, checked as it is added; a name is
  // looked up in the contacts ("Jean Dupont" is one name, not two chips).
  const recipientInput = document.getElementById("recipient-input");
  const recipientRow = document.getElementById("recipient-row");
  const recipientList = document.getElementById("recipient-list");
  const suggestions = document.getElementById("recipient-suggestions");
  const recipientStatus = document.getElementById("recipient-status");
  const chosen = new Map();
  // A syntax check only: the server validates every address again.
  const EMAIL = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@([A-Za-z0-9-]+\.)+[A-Za-z]{2,63}$/;
  const NAMED = /^(.*)<([^<>]+)>$/;

  function fold(text) {
    return text.normalize("NFD").replace(/[\u0300-\u036f]/g, "").toLowerCase().trim();
  }

  function recipientError(text) {
    window.Coffre.fieldError(recipientInput, text, recipientRow);
  }

  function badChips() {
    return recipientList.querySelectorAll("li[data-invalid]").length;
  }

  function addChip(address, name) {
    const key = address.toLowerCase();
    if (chosen.has(key)) { return true; }
    const valid = EMAIL.test(address) && address.length <= 254;
    const li = document.createElement("li");
    const text = document.createElement("span");
    text.textContent = name ? name + " <" + address + ">" : address;
    li.appendChild(text);
    if (!valid) {
      li.className = "invalid";
      li.setAttribute("data-invalid", "true");
      const mark = document.createElement("span");
      mark.className = "chip-mark";
      mark.textContent = "\u26a0 " + t("bad-chip");
      li.appendChild(mark);
    }
    const hidden = document.createElement("input");
    hidden.type = "hidden";
    hidden.name = "recipient";
    hidden.value = address;
    const remove = button("\u00d7", function () {
      chosen.delete(key);
      li.remove();
      if (!badChips() && recipientInput.getAttribute("aria-invalid") === "true") {
        recipientError("");
      }
      recipientInput.focus();
    });
    remove.setAttribute("aria-label", t("remove-recipient", { who: address }));
    li.append(hidden, remove);
    recipientList.appendChild(li);
    chosen.set(key, li);
    recipientStatus.textContent = t("added", { who: name || address });
    return valid;
  }

  function unique(contacts) {
    const seen = new Set();
    return contacts.filter(function (c) {
      if (seen.has(c.email)) { return false; }
      seen.add(c.email);
      return true;
    });
  }

  async function findContacts(query, limit) {
    const answer = await window.Coffre.api(
      "GET", "/api/v1/contacts?limit=" + limit + "&q=" + encodeURIComponent(query));
    return answer.ok && Array.isArray(answer.data) ? unique(answer.data) : [];
  }

  // A name to one contact: an exact name wins, else the only match.
  async function byName(name) {
    const found = await findContacts(name, 10);
    const exact = found.filter(function (c) { return fold(c.name || "") === fold(name); });
    return exact.length ? exact : found;
  }

  function hideSuggestions() {
    suggestions.hidden = true;
    suggestions.textContent = "";
  }

  function showSuggestions(contacts, onPick) {
    suggestions.textContent = "";
    contacts.forEach(function (contact) {
      const li = document.createElement("li");
      const b = button(contact.name ? contact.name + " <" + contact.email + ">" : contact.email,
        function () { onPick(contact); });
      b.className = "suggestion";
      li.appendChild(b);
      suggestions.appendChild(li);
    });
    suggestions.hidden = contacts.length === 0;
    if (contacts.length) { recipientStatus.textContent = t("suggested", { n: String(contacts.length) }); }
  }

  function lastEntry() {
    const parts = recipientInput.value.split(/[,;\n]/);
    return parts[parts.length - 1];
  }

  function replaceLastEntry() {
    const value = recipientInput.value;
    const cut = value.length - lastEntry().length;
    recipientInput.value = value.slice(0, cut).replace(/[,;\s]+$/, "");
  }

  function pick(contact) {
    replaceLastEntry();
    addChip(contact.email, contact.name);
    hideSuggestions();
    recipientInput.focus();
    if (recipientInput.value.trim()) { addRecipients(); }  // what was typed before
    else if (!badChips()) { recipientError(""); }
  }

  // What is typed, to chips; an entry that is not one stays in the field,
  // with its message next to it. Resolves to true when all were added.
  let adding = Promise.resolve(true);
  function addRecipients() {
    adding = adding.then(async function () {
      const entries = recipientInput.value.split(/[,;\n]+/)
        .map(function (e) { return e.replace(/\s+/g, " ").trim(); }).filter(Boolean);
      const left = [];
      let problem = "";
      for (const entry of entries) {
        const named = NAMED.exec(entry);
        if (named) {
          if (!addChip(named[2].trim(), named[1].trim())) {
            problem = problem || t("bad-address", { address: named[2].trim() });
          }
        } else if (entry.indexOf("@") >= 0) {
          // "Jean Dupont jean@x.fr": a name and its address, one chip.
          const words = entry.split(" ");
          const at = words.filter(function (w) { return w.indexOf("@") >= 0; });
          const name = at.length === 1 ? words.filter(function (w) { return w !== at[0]; })
            .join(" ") : "";
          (at.length === 1 ? at : words).forEach(function (address) {
            if (!addChip(address, name)) {
              problem = problem || t("bad-address", { address: address });
            }
          });
        } else {
          const found = await byName(entry);
          if (found.length === 1) {
            addChip(found[0].email, found[0].name);
          } else {
            left.push(entry);
            problem = problem || t(found.length ? "several" : "no-contact", { name: entry });
            if (found.length) { showSuggestions(found.slice(0, 8), pick); }
          }
        }
      }
      recipientInput.value = left.join(", ");
      if (!left.length) { hideSuggestions(); }
      recipientError(problem);
      return !problem;
    });
    return adding;
  }

  document.getElementById("recipient-add").addEventListener("click", function () {
    addRecipients().then(function () { recipientInput.focus(); });
  });
  recipientInput.addEventListener("keydown", function (event) {
    if (event.key === "Enter") {
      event.preventDefault();
      addRecipients();
    } else if (event.key === "ArrowDown" && !suggestions.hidden) {
      event.preventDefault();
      suggestions.querySelector("button").focus();
    } else if (event.key === "Escape") {
      hideSuggestions();
    }
  });
  suggestions.addEventListener("keydown", function (event) {
    const all = Array.prototype.slice.call(suggestions.querySelectorAll("button"));
    const at = all.indexOf(document.activeElement);
    if (event.key === "ArrowDown" && at < all.length - 1) {
      event.preventDefault();
      all[at + 1].focus();
    } else if (event.key === "ArrowUp") {
      event.preventDefault();
      (at > 0 ? all[at - 1] : recipientInput).focus();
    } else if (event.key === "Escape") {
      hideSuggestions();
      recipientInput.focus();
    }
  });

  let searching = null;
  let asked = 0;
  recipientInput.addEventListener("input", function () {
    const typed = lastEntry().trim();
    clearTimeout(searching);
    if (/[,;]$/.test(recipientInput.value)) { addRecipients(); return; }
    if (typed.length < 2) { hideSuggestions(); return; }
    searching = setTimeout(async function () {
      const mine = ++asked;
      const found = await findContacts(typed, 8);
      if (mine !== asked) { return; }  // a later keystroke has its own answer
      showSuggestions(found, pick);
    }, 200);
  });
  if (recipientInput.value) { addRecipients(); }  // re-shown by the server

  // -- sending: every problem shown at once, next to its cause and near the
  // button; while uploads run, "Send" waits for them (cancellable).
  let waiting = null;

  function running() {
    return items.some(function (it) { return it.state === "uploading" || it.state === "waiting"; });
  }

  function stopWaiting() {
    waiting = null;
    submit.textContent = t("send");
    submit.removeAttribute("aria-disabled");
    cancel.hidden = true;
    waitingNote.textContent = "";
  }

  async function trySend(issue) {
    const errors = [];
    if (items.length === 0) { errors.push(fileError(t("no-file"))); }
    else if (items.some(function (it) { return it.state === "failed"; })) {
      errors.push(fileError(t("failed-files")));
    } else if (items.some(function (it) { return it.state === "paused"; })) {
      errors.push(fileError(t("paused-files")));
    }
    const typed = recipientInput.value.trim() ? await addRecipients() : true;
    const recipientProblem = document.getElementById("recipient-input-error");
    if (!typed && recipientProblem) {
      errors.push({ field: recipientInput, message: recipientProblem.textContent,
                    place: recipientRow });
    } else if (badChips()) {
      errors.push({ field: recipientInput, message: t("bad-chips"), place: recipientRow });
    } else if (chosen.size === 0) {
      errors.push({ field: recipientInput, message: t("no-recipient"), place: recipientRow });
    }
    if (errors.length) {
      stopWaiting();
      showErrors(errors, "");
      return;
    }
    window.Coffre.clearErrors(form);
    if (running()) {
      waiting = issue;
      submit.textContent = t("waiting-send");
      submit.setAttribute("aria-disabled", "true");
      cancel.hidden = false;
      waitingNote.textContent = t("waiting-note");
      return;
    }
    stopWaiting();
    issue();
  }

  function afterUploads() {
    if (waiting && !running()) { trySend(waiting); }
  }

  cancel.addEventListener("click", function () {
    stopWaiting();
    submit.focus();
  });

  form.addEventListener("htmx:confirm", function (event) {
    event.preventDefault();
    if (waiting) { return; }  // already waiting for the uploads
    const detail = event.detail;
    trySend(function () { detail.issueRequest(true); });
  });
})();
