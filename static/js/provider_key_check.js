// The provider key admin's "Test the key": sends the typed (unsaved) key to the admin's
// test-key URL and shows the provider's answer. The key stays in the field; nothing is saved.
document.addEventListener("click", function (event) {
  var button = event.target.closest("#provider-key-test-button");
  if (!button) return;
  var output = document.getElementById("provider-key-test-result");
  var select = document.getElementById("id_provider");
  var secret = document.getElementById("id_new_secret");
  var csrf = document.querySelector("input[name=csrfmiddlewaretoken]");
  var body = new URLSearchParams();
  body.set("provider", select ? select.value : button.getAttribute("data-provider"));
  body.set("new_secret", secret ? secret.value : "");
  button.disabled = true;
  output.textContent = "Asking the provider…";
  output.removeAttribute("data-outcome");
  fetch(button.getAttribute("data-url"), {
    method: "POST",
    body: body,
    credentials: "same-origin",
    headers: { "X-CSRFToken": csrf ? csrf.value : "" },
  })
    .then(function (response) { return response.json(); })
    .then(function (check) {
      output.setAttribute("data-outcome", check.outcome);
      var status = check.status ? " (" + check.status + ")" : "";
      output.textContent = check.outcome + status + ": " + check.message;
    })
    .catch(function () { output.textContent = "The test could not be run; try again."; })
    .finally(function () { button.disabled = false; });
});
