// Low-balance modal: record one view per browser session, dismiss for the session.
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
  if (sessionStorage.getItem("credits-modal-dismissed")) { modal.hidden = true; return; }
  if (!sessionStorage.getItem("credits-modal-seen")) {
    sessionStorage.setItem("credits-modal-seen", "1");
    post(modal.dataset.seenUrl, "kind=modal_view");
  }
  var form = modal.querySelector("form[data-credits-dismiss]");
  if (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      sessionStorage.setItem("credits-modal-dismissed", "1");
      modal.hidden = true;
      post(modal.dataset.dismissUrl);
    });
  }
})();
