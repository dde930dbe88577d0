/* Postroute: a mailing's page while its letters are being prepared. Polls
   the mailing's state and reloads the page once it has started (or the
   start was refused); without this file the page says to reload. */
(function () {
  "use strict";

  var box = document.querySelector("[data-mailing-state]");
  if (!box || !window.Postroute || !window.Postroute.pollJson) return;
  window.Postroute.pollJson(box.getAttribute("data-mailing-state"), {
    visibleMs: 2000,
    hiddenMs: 10000,
    done: function (data) { return !data.preparing; },
    onData: function (data) {
      if (!data.preparing) window.location.reload();
    }
  });
})();
