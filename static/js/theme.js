// The theme toggle in the navigation: light or dark, remembered in localStorage ("theme") and
// set as data-theme on <html> (the inline script in base.html applies it before first paint).
// With nothing stored, the page follows prefers-color-scheme.
(function () {
  var button = document.querySelector("[data-theme-toggle]");
  if (!button) return;
  var root = document.documentElement;
  var systemDark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)");
  function current() {
    var chosen = root.getAttribute("data-theme");
    if (chosen === "dark" || chosen === "light") return chosen;
    return systemDark && systemDark.matches ? "dark" : "light";
  }
  function show() {
    var dark = current() === "dark";
    button.setAttribute("aria-pressed", dark ? "true" : "false");
    button.setAttribute("title", dark ? "Switch to light mode" : "Switch to dark mode");
  }
  button.hidden = false;
  button.addEventListener("click", function () {
    var next = current() === "dark" ? "light" : "dark";
    root.setAttribute("data-theme", next);
    try { localStorage.setItem("theme", next); } catch (e) { /* private mode: this page only */ }
    show();
  });
  if (systemDark && systemDark.addEventListener) systemDark.addEventListener("change", show);
  show();
})();
