// Depositors' uploads over tus (tus-js-client), with the deposit grant in
// its HttpOnly cookie (X-Coffre-Deposit-Cookie: 1). A progress bar per file
// and for the whole, pause and resume; a file partly sent before (listed by
// the page with its name and size) resumes from the server's offset when it
// is selected again. Nothing is kept in browser storage (SEC-27): no
// fingerprint is stored, the list of interrupted uploads comes from the page.
"use strict";
(function () {
  const form = document.getElementById("deposit-form");
  if (!form || !window.tus || !window.htmx) return;
  const input = document.getElementById("files");
  const zone = document.getElementById("dropzone");
  const list = document.getElementById("progress-list");
  const overall = document.getElementById("overall");
  const overallBar = document.getElementById("overall-bar");
  const overallText = document.getElementById("overall-text");
  const status = document.getElementById("upload-status");
  const send = document.getElementById("send");
  const pause = document.getElementById("pause");
  const msg = (name, values) => {
    let text = form.getAttribute("data-msg-" + name) || "";
    Object.keys(values || {}).forEach((key) => {
      text = text.split("{" + key + "}").join(values[key]);
    });
    return text;
  };
  // tus-js-client must not remember uploads in localStorage.
  const noStorage = {
    findAllUploads: () => Promise.resolve([]),
    findUploadsByFingerprint: () => Promise.resolve([]),
    removeUpload: () => Promise.resolve(),
    addUpload: () => Promise.resolve(""),
  };

  let dropped = null;  // files dropped on the zone (instead of chosen)
  let current = null;  // the tus upload under way
  let paused = false;

  // A size as the server writes it (1,5 Mo in French, 1.5 MB in English).
  function size(bytes) {
    const units = (form.getAttribute("data-units") || "B KB MB GB").split(" ");
    const language = document.documentElement.lang || "fr";
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    const shown = unit ? value.toLocaleString(language, {
      minimumFractionDigits: 1, maximumFractionDigits: 1, useGrouping: false }) : String(value);
    return shown + " " + units[unit];
  }

  // Interrupted uploads the server holds for this depositor: name+size -> url.
  function interrupted() {
    const found = {};
    document.querySelectorAll("#pending li[data-upload]").forEach((item) => {
      if (item.getAttribute("data-complete") === "1") return;
      const key = item.getAttribute("data-name") + "\u0000" + item.getAttribute("data-length");
      found[key] = {
        url: form.getAttribute("data-endpoint") + item.getAttribute("data-upload"),
        offset: Number(item.getAttribute("data-offset")) || 0,
      };
    });
    return found;
  }

  function explain(error) {
    const response = error && error.originalResponse;
    if (!response) return msg("network");
    const code = response.getStatus();
    try {
      const reason = JSON.parse(response.getBody()).error.details.reason;
      if (reason === "request_size" || reason === "file_too_large") return msg("too-big");
      if (reason === "too_many_files") return msg("too-many");
      if (reason === "file_type") return msg("file-type");
      if (code === 401) return msg("expired");
      return JSON.parse(response.getBody()).error.message;
    } catch (e) {
      return code === 401 ? msg("expired") : "HTTP " + code;
    }
  }

  function row(file, index) {
    const item = document.createElement("li");
    const name = document.createElement("span");
    name.id = "upload-name-" + index;
    name.className = "upload-name";
    name.textContent = file.name + " (" + size(file.size) + ")";
    const bar = document.createElement("progress");
    bar.max = 1;
    bar.value = 0;
    bar.setAttribute("aria-labelledby", name.id);
    const note = document.createElement("span");
    note.className = "hint upload-note";
    item.append(name, bar, note);
    list.append(item);
    return { bar: bar, note: note };
  }

  function sendOne(file, shown, resumeUrl, progress) {
    return new Promise((resolve, reject) => {
      const upload = new window.tus.Upload(file, {
        endpoint: form.getAttribute("data-endpoint"),
        uploadUrl: resumeUrl || null,
        chunkSize: 8 * 1024 * 1024,
        retryDelays: [0, 1000, 3000, 5000],
        metadata: { filename: file.name },
        headers: { "X-Coffre-Deposit-Cookie": "1" },
        storeFingerprintForResuming: false,
        removeFingerprintOnSuccess: false,
        urlStorage: noStorage,
        // Pausing before the server has named the upload would lose it
        // (a second one would be created): Pause waits for its URL.
        onUploadUrlAvailable: () => { pause.disabled = false; },
        onProgress: (sent, total) => {
          shown.bar.value = total ? sent / total : 1;
          progress(sent);
        },
        onSuccess: () => { shown.bar.value = 1; progress(file.size); resolve(); },
        onError: (error) => reject(error),
      });
      current = upload;
      pause.disabled = true;
      upload.start();
    });
  }

  function setPaused(value) {
    paused = value;
    pause.textContent = msg(value ? "resume" : "pause");
    pause.setAttribute("aria-pressed", value ? "true" : "false");
    if (value) status.textContent = msg("paused");
  }

  pause.addEventListener("click", () => {
    if (!current) return;
    if (!paused) {
      setPaused(true);
      current.abort();  // the server keeps what it has; start() asks it where to go on
    } else {
      setPaused(false);
      status.textContent = msg("sending", { name: current.file.name });
      current.start();
    }
  });

  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    dropped = Array.from(event.dataTransfer.files);
    input.required = false;
    status.textContent = dropped.map((f) => f.name).join(", ");
  });
  input.addEventListener("change", () => { dropped = null; });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const files = dropped || Array.from(input.files);
    if (!files.length) return;
    const known = interrupted();
    const total = files.reduce((n, f) => n + f.size, 0) || 1;
    const sent = files.map(() => 0);
    list.textContent = "";
    overall.hidden = false;
    send.disabled = true;
    input.disabled = true;
    pause.hidden = false;
    setPaused(false);
    const update = () => {
      const done = sent.reduce((a, b) => a + b, 0);
      overallBar.value = done / total;
      overallText.textContent = size(done) + " / " + size(total);
    };
    try {
      for (let i = 0; i < files.length; i += 1) {
        const file = files[i];
        const shown = row(file, i);
        const before = known[file.name + "\u0000" + file.size];
        if (before) shown.note.textContent = msg("resuming", { size: size(before.offset) });
        status.textContent = msg("sending", { name: file.name });
        await sendOne(file, shown, before && before.url, (n) => { sent[i] = n; update(); });
      }
      pause.hidden = true;
      send.disabled = false;
      input.disabled = false;
      input.value = "";
      dropped = null;
      current = null;
      status.textContent = msg("done");
      // The server's list of this depositor's files, and the hand-over button.
      window.htmx.ajax("GET", window.location.pathname,
        { target: "#uploaded", select: "#uploaded", swap: "outerHTML" });
    } catch (error) {
      pause.hidden = true;
      send.disabled = false;
      input.disabled = false;
      status.textContent = msg("failed", { reason: explain(error) });
    }
  });
})();
