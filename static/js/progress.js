// Buttons that show progress: a form marked data-progress (checkout, key creation) is sent
// once; its buttons are disabled and the one pressed reads "Working…" with a spinner.
// Disabling waits a tick: a disabled submitter would drop its name=value (gateway=chargily)
// from the form data, and another listener (a data-confirm "Cancel") may still cancel.
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (!form.hasAttribute || !form.hasAttribute("data-progress")) return;
  if (form.getAttribute("aria-busy") === "true") {
    event.preventDefault(); // a second click while the first is on its way
    return;
  }
  var pressed = event.submitter;
  setTimeout(function () {
    if (event.defaultPrevented) return;
    form.setAttribute("aria-busy", "true");
    form.querySelectorAll("button, input[type=submit]").forEach(function (button) {
      button.disabled = true;
    });
    if (pressed && pressed.tagName === "BUTTON") {
      pressed.setAttribute("data-label", pressed.innerHTML);
      pressed.classList.add("is-working");
      pressed.innerHTML = '<span class="spinner" aria-hidden="true"></span> Working…';
    }
  }, 0);
});

// Back from a checkout page, the browser may restore this page as it was left: busy.
window.addEventListener("pageshow", function (event) {
  if (!event.persisted) return;
  document.querySelectorAll("form[data-progress][aria-busy=true]").forEach(function (form) {
    form.removeAttribute("aria-busy");
    form.querySelectorAll("button, input[type=submit]").forEach(function (button) {
      button.disabled = false;
      if (button.hasAttribute("data-label")) {
        button.innerHTML = button.getAttribute("data-label");
        button.removeAttribute("data-label");
        button.classList.remove("is-working");
      }
    });
  });
});
