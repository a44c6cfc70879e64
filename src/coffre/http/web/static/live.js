// Live status by Server-Sent Events, without reloading the page.
// - The dashboard ([data-live-dashboard]) follows the sender's transfers
//   and fetches again, with htmx, the card of a transfer that changed.
// - A transfer's page ([data-live-transfer]) follows its recipients'
//   timelines and adds each new step, updating the recipient's status.
// Labels come translated from the page (data- attributes).
"use strict";
(function () {
  function follow(url, onStep) {
    const source = new EventSource(url);
    source.addEventListener("message", function (event) {
      let step = null;
      try { step = JSON.parse(event.data); } catch (e) { return; }
      onStep(step, event.lastEventId);
    });
    source.addEventListener("end", function () { source.close(); });
    window.addEventListener("pagehide", function () { source.close(); });
    return source;
  }

  function dashboard(section) {
    const pending = {};
    follow(section.getAttribute("data-stream"), function (change) {
      const id = change.transfer_id;
      const card = document.getElementById("transfer-" + id);
      if (!card || pending[id] || !window.htmx) { return; }
      // Several steps in a row: one fetch of the card.
      pending[id] = setTimeout(function () {
        delete pending[id];
        window.htmx.ajax("GET", "/transfers/" + encodeURIComponent(id) + "/card",
          { target: "#transfer-" + id, swap: "outerHTML" });
      }, 300);
    });
  }

  // Times in the deployment's zone (<html data-timezone>), written as the
  // server writes them (templating's "datetime" filter).
  function when(iso, lang) {
    const d = new Date(iso);
    if (isNaN(d.getTime())) { return ""; }
    const zone = document.documentElement.getAttribute("data-timezone") || "Europe/Paris";
    const parts = {};
    new Intl.DateTimeFormat("en-GB", {
      timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", hourCycle: "h23",
    }).formatToParts(d).forEach(function (p) { parts[p.type] = p.value; });
    const time = parts.hour + ":" + parts.minute;
    return lang === "fr"
      ? parts.day + "/" + parts.month + "/" + parts.year + " à " + time
      : parts.year + "-" + parts.month + "-" + parts.day + " " + time;
  }

  function data(element, name) {
    try { return JSON.parse(element.getAttribute("data-" + name) || "null") || {}; }
    catch (e) { return {}; }
  }

  function transfer(list) {
    const labels = data(list, "labels");
    const statuses = data(list, "statuses");
    const rank = data(list, "rank");
    const files = data(list, "files");
    const repeat = list.getAttribute("data-repeat") || "";
    const lang = list.getAttribute("data-lang");
    let last = parseInt(list.getAttribute("data-last") || "0", 10);
    const reached = {};

    follow(list.getAttribute("data-stream"), function (step) {
      if (typeof step.id !== "number" || step.id <= last) { return; }
      last = step.id;
      const timeline = step.recipient_id && document.getElementById("timeline-" + step.recipient_id);
      if (!timeline) { return; }
      // A kind of step already in the timeline (for the same file) is
      // counted on its line: "Link opened 3 times, last on …".
      const key = step.kind + ":" + (step.file_id || "");
      const seen = Array.prototype.find.call(timeline.children, function (item) {
        return item.getAttribute("data-step") === key;
      });
      if (seen) {
        const count = parseInt(seen.getAttribute("data-count") || "1", 10) + 1;
        seen.setAttribute("data-count", String(count));
        const note = seen.querySelector(".step-repeat");
        if (note) {
          note.textContent = " " + repeat.replace("{num}", String(count))
            .replace("{when}", when(step.time, lang));
        }
      } else {
        const li = document.createElement("li");
        li.setAttribute("data-step", key);
        li.setAttribute("data-count", "1");
        const time = document.createElement("time");
        time.dateTime = step.time;
        time.textContent = when(step.time, lang);
        li.append(time, " " + (labels[step.kind] || step.kind));
        if (step.file_id && files[step.file_id]) {
          const file = document.createElement("span");
          file.className = "step-file";
          file.textContent = files[step.file_id];
          li.append(" ", file);
        }
        const note = document.createElement("span");
        note.className = "step-repeat";
        li.append(note);
        timeline.appendChild(li);
      }
      const state = document.getElementById("state-" + step.recipient_id);
      if (step.kind === "recipient_revoked" && state) {
        state.setAttribute("data-kind", "revoked");
        state.textContent = statuses.revoked || step.kind;
        return;
      }
      const kind = step.kind === "zip_downloaded" ? "file_downloaded" : step.kind;
      const index = rank.indexOf(kind);
      if (index < 0 || !state || state.getAttribute("data-kind") === "revoked") { return; }
      const current = reached[step.recipient_id] === undefined
        ? rank.indexOf(state.getAttribute("data-kind")) : reached[step.recipient_id];
      if (index > current) {
        reached[step.recipient_id] = index;
        state.setAttribute("data-kind", kind);
        state.textContent = statuses[kind] || kind;
      }
    });
  }

  document.querySelectorAll("[data-live-dashboard]").forEach(dashboard);
  document.querySelectorAll("[data-live-transfer]").forEach(transfer);
})();
