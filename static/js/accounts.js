// Copy buttons for freshly shown keys, and confirmation before destructive forms.
document.addEventListener("click", function (event) {
  var button = event.target.closest("[data-copy-target]");
  if (!button) return;
  var source = document.getElementById(button.getAttribute("data-copy-target"));
  if (!source) return;
  var text = source.textContent.trim();
  var done = function () {
    button.textContent = "Copied";
    setTimeout(function () { button.textContent = "Copy"; }, 2000);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done);
  } else {
    var range = document.createRange();
    range.selectNodeContents(source);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    document.execCommand("copy");
    done();
  }
});

document.addEventListener("submit", function (event) {
  var message = event.target.getAttribute("data-confirm");
  if (message && !window.confirm(message)) event.preventDefault();
});

// A dialog rendered open (a new key, shown once) becomes modal: focus stays inside it and
// Escape closes it. Without JavaScript it simply stays open in the page.
document.querySelectorAll("dialog[data-modal][open]").forEach(function (dialog) {
  if (typeof dialog.showModal !== "function") return;
  dialog.close();
  dialog.showModal();
  var first = dialog.querySelector("[autofocus]");
  if (first) first.focus();
});
