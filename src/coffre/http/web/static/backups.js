// Backup pages: "Copy" buttons next to the command lines of a credential
// shown once. The buttons stay hidden where the clipboard cannot be written
// (then the text is selected by hand). Nothing is kept in browser storage
// (SEC-27): the secret goes to the clipboard only when the reader asks.
"use strict";
(function () {
  if (!navigator.clipboard || !window.isSecureContext) { return; }
  document.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
    const source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) { return; }
    const label = button.textContent;
    button.hidden = false;
    button.addEventListener("click", async function () {
      try {
        await navigator.clipboard.writeText(source.textContent);
        button.textContent = button.getAttribute("data-copied") || label;
      } catch (e) {
        button.textContent = label;  // refused: the text can still be selected
        return;
      }
      setTimeout(function () { button.textContent = label; }, 2000);
    });
  });
})();
