/* Postroute: the live mailing pages. The Mailings page and a mailing's own
   page poll their JSON (mailing/views/mailings_live.py) like the dashboard
   does, and put its values in place with static/js/live.js: state, progress,
   the time sending resumes, the letters and the history. Polling pauses
   while the tab is hidden. Without this file the pages show the state at
   load. */
(function () {
  "use strict";

  if (!window.Postroute || !window.Postroute.live) return;
  var live = window.Postroute.live;
  var field = live.field, setAttr = live.setAttr, show = live.show, text = live.text;
  var POLL = { visibleMs: 3000, pauseWhenHidden: true, failureMs: 5000, failureMaxMs: 60000, maxFailures: Infinity };

  function poll(root, url, render) {
    var options = Object.assign({}, POLL, {
      onData: function (data) {
        text(root, "updated", data.updated);
        show(field(root, "offline"), false);
        render(data);
      },
      onError: function () { show(field(root, "offline"), true); }
    });
    window.Postroute.pollJson(url, options);
  }

  // ---------- The Mailings page ----------
  function patchListRow(row, m) {
    live.patchMailing(row, m);
    text(row, "note", m.note, true);
    text(row, "template", m.template);
    var actions = m.actions || {};
    show(field(row, "actions"), Object.keys(actions).length > 0);
    row.querySelectorAll("form[data-action]").forEach(function (form) {
      var url = actions[form.getAttribute("data-action")];
      show(form, Boolean(url));
      if (url && url.charAt(0) === "/") setAttr(form, "action", url);
    });
    var cancel = row.querySelector('form[data-action="cancel"]');
    if (cancel) setAttr(cancel, "data-confirm", m.cancel_confirm);
  }

  var list = document.querySelector("[data-mailings-json]");
  if (list) {
    poll(list, list.getAttribute("data-mailings-json"), function (data) {
      ["running", "drafts", "finished"].forEach(function (group) {
        live.syncList(list, group, data[group], patchListRow);
        text(list, group + "_count", (data.counts || {})[group]);
      });
    });
  }

  // ---------- A mailing's page ----------
  var page = document.querySelector("[data-mailing-json]");
  if (!page) return;
  var drawn = page.getAttribute("data-drawn-status");
  var drawnPreparing = page.getAttribute("data-preparing") === "1";

  function patchLetter(row, letter) {
    ["email", "server", "attempts", "last_reply"].forEach(function (name) { text(row, name, letter[name]); });
    var badge = field(row, "status_label");
    text(row, "status_label", letter.status_label);
    setAttr(badge, "class", "badge badge-letter-" + letter.status);
  }

  poll(page, page.getAttribute("data-mailing-json"), function (data) {
    var m = data.mailing;
    // A draft's page has no letters to follow: once it starts (or its
    // letters are ready) the page is drawn again.
    var wasDraft = drawn === "draft" || drawn === "scheduled";
    var isDraft = m.status === "draft" || m.status === "scheduled";
    if (m.preparing !== drawnPreparing || wasDraft !== isDraft) {
      window.location.reload();
      return;
    }
    live.patchMailing(page, m);
    page.querySelectorAll(".mailing-actions form[data-action]").forEach(function (form) {
      show(form, m.actions.indexOf(form.getAttribute("data-action")) >= 0);
    });
    if (page.getAttribute("data-letters-live") === "1") {
      live.syncList(page, "letters", data.letters, patchLetter);
    }
    live.syncList(page, "events", data.events, function (row, e) { text(row, "text", e.text); });
  });
})();
