// Upload requests' pages: contact suggestions for the depositors' field,
// and the detail page's deposits refreshed live from the API's event
// stream (Server-Sent Events). Nothing is kept in browser storage (SEC-27).
"use strict";
(function () {
  // -- contact suggestions: the address being typed, completed from contacts.
  const field = document.querySelector("textarea[data-contacts]");
  if (field && window.Coffre) {
    const box = document.getElementById(field.getAttribute("data-contacts"));
    let asked = 0;
    const last = () => {
      const parts = field.value.split(/[\s,;]+/);
      return parts[parts.length - 1];
    };
    const pick = (email) => {
      const cut = field.value.length - last().length;
      field.value = field.value.slice(0, cut) + email + ", ";
      box.hidden = true;
      box.textContent = "";
      field.focus();
    };
    field.addEventListener("input", async () => {
      const typed = last();
      const mine = ++asked;
      if (typed.length < 2) { box.hidden = true; return; }
      const found = await window.Coffre.api(
        "GET", "/api/v1/contacts?limit=5&q=" + encodeURIComponent(typed));
      if (mine !== asked) return;  // a later keystroke has its own answer
      box.textContent = "";
      (found.ok && Array.isArray(found.data) ? found.data : []).forEach((contact) => {
        const item = document.createElement("li");
        const button = document.createElement("button");
        button.type = "button";
        button.className = "suggestion";
        button.textContent = contact.name ? contact.name + " <" + contact.email + ">" : contact.email;
        button.addEventListener("click", () => pick(contact.email));
        item.append(button);
        box.append(item);
      });
      box.hidden = !box.childElementCount;
    });
  }

  // -- live deposits on a request's page.
  const section = document.querySelector("[data-request]");
  if (section && window.EventSource && window.htmx) {
    const id = section.getAttribute("data-request");
    const stream = new EventSource("/api/v1/requests/" + encodeURIComponent(id) + "/events/stream");
    let timer = null;
    stream.onmessage = () => {
      if (timer) return;
      timer = setTimeout(() => {
        timer = null;
        window.htmx.ajax("GET", "/requests/" + encodeURIComponent(id) + "/deposits",
          { target: "#deposits", swap: "outerHTML" });
      }, 300);
    };
    stream.addEventListener("end", () => stream.close());
    window.addEventListener("pagehide", () => stream.close());
  }
})();
