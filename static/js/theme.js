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

// The browser's time zone, for pages to show times in it (core/timezones.py reads the "tz"
// cookie when the profile names no zone). Written only when it changed; the server ignores a
// name it does not know. The first page ever seen is in UTC; the next ones use the zone.
(function () {
  var zone;
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { return; }
  if (!zone || !/^[A-Za-z0-9_+\-\/]{1,64}$/.test(zone)) return;
  var current = document.cookie.match(/(?:^|;\s*)tz=([^;]*)/);
  if (current && current[1] === zone) return;
  var secure = location.protocol === "https:" ? "; Secure" : "";
  document.cookie = "tz=" + zone + "; path=/; max-age=31536000; SameSite=Lax" + secure;
})();
