/* Postroute: the contacts pages. Progressive enhancement only: every form
   and link works without this file. Server strings are set with
   textContent, never innerHTML. */
(function () {
  "use strict";

  // ---------- Import mapping: the new list's name only matters without a chosen list ----------
  var targetBox = document.querySelector("[data-new-list]");
  if (targetBox) {
    var chosen = targetBox.querySelector("select[name=contact_list]");
    var newName = targetBox.querySelector("input[name=new_list_name]");
    var newField = newName ? newName.closest(".field") : null;
    var syncTarget = function () {
      if (!chosen || !newField) return;
      newField.hidden = chosen.value !== "";
    };
    if (chosen) chosen.addEventListener("change", syncTarget);
    syncTarget();
  }

  // ---------- Import progress ----------
  var root = document.querySelector("[data-import-json]");
  if (!root || root.getAttribute("data-finished") !== "0") return;

  var byId = function (id) { return document.getElementById(id); };
  var statusEl = byId("import-status");
  var progress = byId("import-progress");
  var errorEl = byId("import-error");
  var counters = {
    rows_seen: byId("import-rows"),
    created: byId("import-created"),
    updated: byId("import-updated"),
    rejected: byId("import-rejected")
  };
  var render = function (data) {
    var percent = Math.max(0, Math.min(100, Number(data.percent) || 0));
    statusEl.textContent = String(data.status_label || data.status || "");
    progress.value = percent;
    progress.textContent = window.Postroute.number(percent) + "%";
    byId("import-percent").textContent = window.Postroute.number(percent);
    Object.keys(counters).forEach(function (key) {
      if (counters[key]) counters[key].textContent = String((data.shown || {})[key] || window.Postroute.number(Number(data[key]) || 0));
    });
    errorEl.textContent = String(data.error || "");
    errorEl.hidden = !data.error;
  };

  window.Postroute.pollJson(root.getAttribute("data-import-json"), {
    onData: function (data) {
      render(data);
      if (data.finished) {
        root.setAttribute("data-finished", "1");
        // The result (rejected rows, links) is drawn by the server.
        window.location.reload();
      }
    },
    done: function (data) { return data.finished; },
    onGiveUp: function () {
      statusEl.classList.remove("is-running");
      statusEl.textContent = gettext("Lost contact with the import. Reload the page to see how it goes.");
    }
  });
})();
