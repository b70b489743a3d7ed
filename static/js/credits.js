// Low-balance modal (templates/credits/_low_balance_modal.html, a <dialog>): record one view per
// browser session; "Not now" or Escape dismisses it for the session. Opened with showModal(), so the
// page behind is inert; Tab and Shift+Tab cycle inside it, and closing gives focus back to where it
// was before (the main content when nothing had focus yet).
(function () {
  "use strict";
  var modal = document.getElementById("credits-low-modal");
  if (!modal) return;
  var csrf = (document.cookie.match(/(?:^|; )csrftoken=([^;]+)/) || [])[1] || "";
  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": decodeURIComponent(csrf), "X-Requested-With": "fetch",
                 "Content-Type": "application/x-www-form-urlencoded" },
      body: body || ""
    });
  }
  var ignoreClose = modal.open;
  if (modal.open) modal.close(); // shown in place for pages without this script; its close event is skipped
  if (sessionStorage.getItem("credits-modal-dismissed")) return;
  if (!sessionStorage.getItem("credits-modal-seen")) {
    sessionStorage.setItem("credits-modal-seen", "1");
    post(modal.dataset.seenUrl, "kind=modal_view");
  }
  var opener = document.activeElement && document.activeElement !== document.body ? document.activeElement : null;
  var dismissed = false;
  function dismiss() {
    if (dismissed) return;
    dismissed = true;
    sessionStorage.setItem("credits-modal-dismissed", "1");
    post(modal.dataset.dismissUrl);
  }
  function focusables() {
    return Array.prototype.filter.call(
      modal.querySelectorAll("a[href], button:not([disabled]), input:not([type=hidden]), select, textarea, [tabindex]:not([tabindex='-1'])"),
      function (el) { return el.offsetParent !== null || el.getClientRects().length > 0; }
    );
  }
  modal.addEventListener("keydown", function (event) {
    if (event.key !== "Tab") return;
    var items = focusables();
    if (!items.length) return;
    var first = items[0], last = items[items.length - 1];
    if (event.shiftKey && (document.activeElement === first || !modal.contains(document.activeElement))) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && (document.activeElement === last || !modal.contains(document.activeElement))) {
      event.preventDefault();
      first.focus();
    }
  });
  // Escape, or "Not now": however it closes, the modal is dismissed for the session.
  modal.addEventListener("close", function () {
    if (ignoreClose) { ignoreClose = false; return; }
    dismiss();
    var target = opener && document.contains(opener) ? opener : document.getElementById("main");
    if (target) target.focus();
  });
  var form = modal.querySelector("form[data-credits-dismiss]");
  if (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      modal.close();
    });
  }
  modal.showModal();
  var start = focusables()[0];
  if (start) start.focus();
})();
