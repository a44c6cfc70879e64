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
  const errorBox = document.getElementById("send-error");
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

  function showError(text) {
    errorBox.textContent = "";
    if (text) {
      const p = document.createElement("p");
      p.className = "error";
      p.textContent = text;
      errorBox.appendChild(p);
    }
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

  function updateOverall() {
    const total = items.reduce(function (sum, it) { return sum + it.file.size; }, 0);
    const sent = items.reduce(function (sum, it) { return sum + it.sent; }, 0);
    const value = total ? Math.floor(100 * sent / total) : 0;
    overall.hidden = items.length === 0;
    overallBar.value = value;
    overallText.textContent = percentText(value);
  }

  function setProgress(item, sent) {
    item.sent = sent;
    const value = item.file.size ? Math.floor(100 * sent / item.file.size) : 100;
    item.bar.value = value;
    item.percent.textContent = percentText(value);
    updateOverall();
  }

  function setState(item, state, text) {
    item.state = state;
    item.status.textContent = text;
    item.toggle.hidden = state === "done" || state === "failed";
    item.toggle.textContent = state === "paused" ? t("resume") : t("pause");
    item.li.setAttribute("data-state", state);
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
    const item = { file: file, sent: 0, state: "waiting", id: null, upload: null, hidden: null };
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
      input.focus();
    });
    remove.className = "remove";
    remove.setAttribute("aria-label", t("remove") + " " + file.name);
    const actions = document.createElement("div");
    actions.className = "upload-actions";
    actions.append(item.status, item.note, item.toggle, remove);
    item.li.append(head, row, actions);
    list.appendChild(item.li);
    items.push(item);
    updateOverall();
    start(item);
  }

  function formatSize(bytes) {
    const french = document.documentElement.lang === "fr";
    const units = french ? ["octets", "Ko", "Mo", "Go", "To"] : ["bytes", "KB", "MB", "GB", "TB"];
    let size = bytes;
    let unit = 0;
    while (size >= 1024 && unit < units.length - 1) { size /= 1024; unit += 1; }
    const text = unit === 0 ? String(size) : size.toFixed(1);
    return (french ? text.replace(".", ",") : text) + " " + units[unit];
  }

  function addFiles(files) {
    showError("");
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

  // Recipients: chips with a hidden field each; contacts suggested.
  const recipientInput = document.getElementById("recipient-input");
  const recipientList = document.getElementById("recipient-list");
  const options = document.getElementById("contact-options");
  const chosen = new Set();

  function addRecipients() {
    const values = recipientInput.value.split(/[,;\s]+/).filter(Boolean);
    values.forEach(function (address) {
      const key = address.toLowerCase();
      if (chosen.has(key)) { return; }
      chosen.add(key);
      const li = document.createElement("li");
      const text = document.createElement("span");
      text.textContent = address;
      const hidden = document.createElement("input");
      hidden.type = "hidden";
      hidden.name = "recipient";
      hidden.value = address;
      const remove = button("\u00d7", function () {
        chosen.delete(key);
        li.remove();
        recipientInput.focus();
      });
      remove.setAttribute("aria-label", t("remove-recipient", { who: address }));
      li.append(text, hidden, remove);
      recipientList.appendChild(li);
    });
    recipientInput.value = "";
  }

  document.getElementById("recipient-add").addEventListener("click", function () {
    addRecipients();
    recipientInput.focus();
  });
  recipientInput.addEventListener("keydown", function (event) {
    if (event.key === "Enter") {
      event.preventDefault();
      addRecipients();
    }
  });

  let searching = null;
  recipientInput.addEventListener("input", function () {
    const q = recipientInput.value.trim();
    clearTimeout(searching);
    if (q.length < 2 || q.includes(",")) { return; }
    searching = setTimeout(async function () {
      const answer = await window.Coffre.api(
        "GET", "/api/v1/contacts?limit=8&q=" + encodeURIComponent(q));
      if (!answer.ok || !Array.isArray(answer.data)) { return; }
      options.textContent = "";
      answer.data.forEach(function (contact) {
        const option = document.createElement("option");
        option.value = contact.email;
        option.label = contact.name ? contact.name + " <" + contact.email + ">" : contact.email;
        options.appendChild(option);
      });
    }, 200);
  });

  // Sending: only once every file is uploaded.
  form.addEventListener("htmx:confirm", function (event) {
    if (items.length === 0) {
      event.preventDefault();
      showError(t("no-file"));
    } else if (items.some(function (it) { return it.state !== "done"; })) {
      event.preventDefault();
      showError(t("wait"));
    }
  });
})();
