// The compact navigation on narrow screens: a Menu button (a disclosure) shows or hides the links.
// Enter/Space toggle it (a real <button>), Escape closes it and returns focus to the button.
// Wide screens never see the button (CSS), so the links stay in one row there.
(function () {
  "use strict";
  var button = document.querySelector("[data-nav-toggle]");
  var nav = button && document.getElementById(button.getAttribute("aria-controls"));
  if (!nav) return;
  document.documentElement.classList.add("has-nav-toggle");
  button.hidden = false;
  function set(open) { button.setAttribute("aria-expanded", open ? "true" : "false"); }
  button.addEventListener("click", function () { set(button.getAttribute("aria-expanded") !== "true"); });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape" || button.getAttribute("aria-expanded") !== "true") return;
    if (document.querySelector("dialog[open]")) return; // a dialog takes Escape first
    set(false);
    button.focus();
  });
})();
