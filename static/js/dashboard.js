/* Postroute: the live dashboard. Polls the JSON view and puts its values in
   the page drawn by the server (templates/dashboard/): texts with
   textContent, bars and charts through SVG attributes. The texts are made by
   the server; this file only places them (with static/js/live.js, which
   the mailing pages share). Without it the page shows the state at load. */
(function () {
  "use strict";

  var root = document.querySelector("[data-dashboard-json]");
  if (!root || !window.Postroute || !window.Postroute.live) return;

  var CHART_HEIGHT = 48; // the charts' viewBox height, as in mailing/views/dashboard.py

  var live = window.Postroute.live;
  var field = live.field, setText = live.setText, setAttr = live.setAttr, show = live.show, text = live.text;

  function patchWindow(row, w) {
    var box = row.querySelector('[data-window="' + w.key + '"]');
    if (!box) return;
    show(box, w.shown);
    setAttr(box, "class", "dash-window dash-window-" + w.level);
    text(box, "label", w.label);
    text(box, "text", w.text);
    var fill = field(box, "fill");
    setAttr(fill, "width", w.fill);
    setAttr(fill, "class", "meter-fill meter-" + w.level);
  }

  function patchChart(row, chart, hours) {
    var svg = field(row, "chart");
    setAttr(svg, "aria-label", chart.label);
    svg.querySelectorAll(".chart-bar").forEach(function (bar, i) {
      var height = Number(chart.heights[i]) || 0;
      setAttr(bar, "y", CHART_HEIGHT - height);
      setAttr(bar, "height", height);
      setText(bar.querySelector("title"), (hours[i] || "") + " \u00b7 " + (chart.shown[i] || "0"));
    });
    text(row, "chart_caption", chart.caption);
    text(row, "first_hour", hours[0]);
  }

  function patchServer(row, s, data) {
    setAttr(row, "class", "dash-server dash-state-" + s.state);
    text(row, "name", s.name);
    show(field(row, "platform"), s.platform);
    text(row, "state_label", s.state_label);
    show(field(row, "notice_box"), Boolean(s.notice));
    text(row, "notice", s.notice);
    text(row, "hint", s.hint);
    show(field(row, "hint_box"), Boolean(s.hint));
    s.windows.forEach(function (w) { patchWindow(row, w); });
    text(row, "rate_text", s.rate_text);
    patchChart(row, s.chart, data.hours);
  }

  // The getting-started steps above the dashboard on the home page.
  function patchChecklist(checklist) {
    var card = document.querySelector(".checklist-card");
    if (!card || !checklist) return;
    show(card, !checklist.all_done);
    setText(card.querySelector("#checklist-progress-label"), checklist.label);
    setAttr(card.querySelector("progress"), "value", checklist.done);
    checklist.items.forEach(function (item) {
      var step = card.querySelector('.checklist-step[data-key="' + item.key + '"]');
      if (!step) return;
      setAttr(step, "class", "checklist-step " + (item.done ? "done" : "todo"));
      setText(step.querySelector(".tick"), item.done ? "\u2713" : "");
      setText(step.querySelector(".visually-hidden"), " (" + item.state + ")");
      show(step.querySelector(".checklist-step-text"), !item.done);
    });
  }

  function render(data) {
    patchChecklist(data.checklist);
    text(root, "updated", data.updated);
    show(field(root, "offline"), false);
    show(field(root, "more_mailings"), data.more_mailings);
    live.syncList(root, "mailings", data.mailings, live.patchMailing);
    live.syncList(root, "servers", data.servers, function (row, s) { patchServer(row, s, data); });
  }

  window.Postroute.pollJson(root.getAttribute("data-dashboard-json"), {
    visibleMs: 3000,
    hiddenMs: 30000,
    failureMs: 5000,
    failureMaxMs: 60000,
    maxFailures: Infinity,
    onData: render,
    onError: function () { show(field(root, "offline"), true); }
  });
})();
