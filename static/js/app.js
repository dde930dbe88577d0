/* Postroute: small progressive enhancements. The pages work without it. */
(function () {
  "use strict";

  // Switch organisation as soon as one is picked; the Switch button stays for no-JS.
  document.querySelectorAll("form[data-autosubmit] select").forEach(function (select) {
    select.addEventListener("change", function () {
      if (!select.value) return;
      if (select.form.requestSubmit) select.form.requestSubmit();
      else select.form.submit();
    });
  });

  // Let people close flash messages.
  document.querySelectorAll(".alert[data-dismissible]").forEach(function (alert) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "alert-close";
    button.setAttribute("aria-label", "Dismiss");
    button.textContent = "\u00d7";
    button.addEventListener("click", function () { alert.remove(); });
    alert.appendChild(button);
  });
})();
