// A depositor's page: choose files (listed at once with name and size,
// removable), send them over tus (tus-js-client) with the deposit grant in
// its HttpOnly cookie (X-Coffre-Deposit-Cookie: 1), each with its bar and
// bytes sent, and once every chosen file is on the server hand them over to
// the requester by posting the page's hand-over form (no second button).
// A file that failed stays listed, to try again or remove. A file partly
// sent before (listed by the page with its name and size) resumes from the
// server's offset when it is chosen again. Nothing is kept in browser
// storage (SEC-27): no fingerprint is stored, the list of interrupted
// uploads comes from the page.
"use strict";
(function () {
  const handed = document.getElementById("handed");
  if (handed) handed.focus();  // the confirmation, after the hand-over
  const form = document.getElementById("deposit-form");
  if (!form || !window.tus) return;
  const input = document.getElementById("files");
  const zone = document.getElementById("dropzone");
  const choose = document.getElementById("choose");
  const list = document.getElementById("chosen");
  const listTitle = document.getElementById("chosen-title");
  const listError = document.getElementById("chosen-error");
  const overall = document.getElementById("overall");
  const overallBar = document.getElementById("overall-bar");
  const overallText = document.getElementById("overall-text");
  const status = document.getElementById("upload-status");
  const send = document.getElementById("send");
  const pause = document.getElementById("pause");
  const handover = document.getElementById("handover");
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

  const chosen = [];  // {file, item, bar, note, remove, state, url}
  let current = null;  // the tus upload under way
  let paused = false;
  let sending = false;
  let counter = 0;
  let clock = null;  // since when, and from how many bytes, the speed is measured

  const duration = window.Coffre.duration;  // 45 s, 3 min, 1 h 05
  const size = window.Coffre.size;  // as the server writes it: 1,5 Mo / 1.5 MB

  // Interrupted uploads the server holds for this depositor: name+size -> url.
  function interrupted() {
    const found = {};
    document.querySelectorAll("#waiting li[data-upload]").forEach((item) => {
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

  function showError(text) {
    listError.textContent = text;
    listError.hidden = !text;
  }

  // The buttons follow the list: "Choose files" leads while it is empty,
  // then "Send N files" does and choosing becomes "Add more files".
  function refresh() {
    const left = chosen.filter((c) => c.state !== "done");
    const failed = chosen.some((c) => c.state === "failed");
    listTitle.hidden = chosen.length === 0;
    send.hidden = sending || left.length === 0;
    send.textContent = failed ? msg("retry") : left.length === 1 ? msg("send-one")
      : msg("send-many", { num: left.length });
    choose.textContent = chosen.length ? msg("add") : choose.getAttribute("data-first");
    choose.classList.toggle("primary", chosen.length === 0);
    zone.hidden = sending;  // nothing can be added while files go
    input.disabled = sending;
    chosen.forEach((c) => {
      c.remove.hidden = sending || c.state === "done";
    });
  }

  function add(files) {
    showError("");
    const known = interrupted();
    files.forEach((file) => {
      const same = chosen.some((c) => c.file.name === file.name && c.file.size === file.size
        && c.file.lastModified === file.lastModified);
      if (same) return;
      counter += 1;
      const item = document.createElement("li");
      item.className = "chosen-file";
      const head = document.createElement("div");
      head.className = "file-head";
      const name = document.createElement("span");
      name.className = "file-name";
      name.id = "chosen-name-" + counter;
      name.textContent = file.name;
      const weight = document.createElement("span");
      weight.className = "file-size";
      weight.textContent = size(file.size);
      head.append(name, weight);
      const bar = document.createElement("progress");
      bar.max = 1;
      bar.value = 0;
      bar.hidden = true;
      bar.setAttribute("aria-labelledby", name.id);
      const note = document.createElement("span");
      note.className = "hint upload-note";
      const before = known[file.name + "\u0000" + file.size];
      note.textContent = before ? msg("resuming", { size: size(before.offset) }) : msg("waiting");
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "remove";
      remove.textContent = msg("remove");
      const hidden = document.createElement("span");
      hidden.className = "sr-only";
      hidden.textContent = " " + file.name;
      remove.append(hidden);
      item.append(head, bar, note, remove);
      list.append(item);
      const entry = { file: file, item: item, bar: bar, note: note, remove: remove,
        state: "waiting", url: before ? before.url : null, offset: before ? before.offset : 0 };
      remove.addEventListener("click", () => {
        if (entry.state === "failed" && entry.url) forget(entry.url);
        chosen.splice(chosen.indexOf(entry), 1);
        item.remove();
        refresh();
        (chosen.length ? send : choose).focus();
        if (chosen.length && chosen.every((c) => c.state === "done")) handOver();
      });
      chosen.push(entry);
    });
    refresh();
  }

  // A failed file the depositor gave up: the server drops what it had of it
  // (tus termination), so that it neither lingers nor counts in the limits.
  function forget(url) {
    fetch(url, { method: "DELETE", credentials: "same-origin",
      headers: { "Tus-Resumable": "1.0.0", "X-Coffre-Deposit-Cookie": "1" } })
      .catch(() => { /* it expires with the request */ });
  }

  function sendOne(entry, progress) {
    return new Promise((resolve, reject) => {
      const file = entry.file;
      const upload = new window.tus.Upload(file, {
        endpoint: form.getAttribute("data-endpoint"),
        uploadUrl: entry.url,
        chunkSize: 8 * 1024 * 1024,
        retryDelays: [0, 1000, 3000, 5000],
        metadata: { filename: file.name },
        headers: { "X-Coffre-Deposit-Cookie": "1" },
        storeFingerprintForResuming: false,
        removeFingerprintOnSuccess: false,
        urlStorage: noStorage,
        // Pausing before the server has named the upload would lose it
        // (a second one would be created): Pause waits for its URL.
        onUploadUrlAvailable: () => { entry.url = upload.url; pause.disabled = false; },
        onProgress: (sent, total) => {
          entry.bar.value = total ? sent / total : 1;
          entry.note.textContent = msg("of", { sent: size(sent), total: size(total) });
          progress(sent);
        },
        onSuccess: () => {
          entry.bar.value = 1;
          entry.note.textContent = msg("of", { sent: size(file.size), total: size(file.size) })
            + " — " + msg("sent");
          progress(file.size);
          resolve();
        },
        onError: (error) => reject(error),
      });
      current = upload;
      pause.disabled = true;
      upload.start();
    });
  }

  function handOver() {
    status.textContent = msg("handing", { requester: form.getAttribute("data-requester") });
    handover.submit();
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
      overallText.textContent = overallText.textContent.split(" · ")[0];  // no speed while paused
      current.abort();  // the server keeps what it has; start() asks it where to go on
    } else {
      setPaused(false);
      if (clock) clock = { since: Date.now(), from: clock.done(), done: clock.done };
      status.textContent = msg("sending", { name: current.file.name });
      current.start();
    }
  });

  choose.setAttribute("data-first", choose.textContent);
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    if (!sending) add(Array.from(event.dataTransfer.files));
  });
  input.addEventListener("change", () => {
    add(Array.from(input.files));
    input.value = "";  // the same file may be chosen again after a removal
  });

  // Checked here so that a patient hears it before anything is sent; the
  // server checks again when each upload is created.
  function tooMuch(entries) {
    const files = Number(form.getAttribute("data-remaining-files"));
    const room = Number(form.getAttribute("data-remaining-size"));
    const fresh = entries.filter((c) => !c.url);
    if (fresh.length > files) return msg("too-many-chosen", { num: files });
    const bytes = fresh.reduce((n, c) => n + c.file.size, 0);
    if (bytes > room) return msg("too-big-chosen", { size: size(room) });
    return "";
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (sending) return;
    const todo = chosen.filter((c) => c.state !== "done");
    if (!todo.length) {
      showError(msg("none"));
      choose.focus();
      return;
    }
    const refused = tooMuch(todo);
    if (refused) {
      showError(refused);
      list.querySelector("button.remove").focus();
      return;
    }
    showError("");
    const total = todo.reduce((n, c) => n + c.file.size, 0) || 1;
    const sent = todo.map((c) => c.offset);  // a resumed file starts where the server stopped
    const done = () => sent.reduce((a, b) => a + b, 0);
    clock = { since: Date.now(), from: done(), done: done };
    const update = () => {
      const now = done();  // bytes on the server, this batch
      overallBar.value = now / total;
      let text = msg("of", { sent: size(now), total: size(total) });
      const seconds = (Date.now() - clock.since) / 1000;
      const speed = (now - clock.from) / seconds;
      if (seconds >= 2 && speed > 0 && now < total) {
        text += " · " + msg("speed", { speed: size(Math.round(speed)) })
          + " · " + msg("left", { time: duration((total - now) / speed) });
      }
      overallText.textContent = text;
    };
    sending = true;
    overall.hidden = false;
    pause.hidden = false;
    setPaused(false);
    refresh();
    listTitle.focus();  // the button pressed is gone while the files go
    update();
    for (let i = 0; i < todo.length; i += 1) {
      const entry = todo[i];
      entry.state = "sending";
      entry.item.removeAttribute("data-state");
      entry.bar.hidden = false;
      status.textContent = msg("sending", { name: entry.file.name });
      try {
        await sendOne(entry, (n) => { sent[i] = n; update(); });
        entry.state = "done";
        entry.item.setAttribute("data-state", "done");
      } catch (error) {
        entry.state = "failed";
        entry.item.setAttribute("data-state", "failed");
        entry.note.textContent = msg("failed", { reason: explain(error) });
      }
    }
    current = null;
    pause.hidden = true;
    sending = false;
    if (chosen.every((c) => c.state === "done")) {
      handOver();
      return;
    }
    refresh();
    status.textContent = msg("some-failed");
    send.focus();
  });
})();
