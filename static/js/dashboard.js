/* Postroute: the live dashboard. Polls the JSON view and puts its values in
   the page drawn by the server (templates/dashboard/): texts with
   textContent, bars and charts through SVG attributes. The texts are made by
   the server; this file only places them. Without it the page shows the
   state at load. */
(function () {
  "use strict";

  var root = document.querySelector("[data-dashboard-json]");
  if (!root || !window.Postroute) return;

  var CHART_HEIGHT = 48; // the charts' viewBox height, as in mailing/views/dashboard.py

  function field(scope, name) {
    return scope.querySelector('[data-f="' + name + '"]');
  }

  // Only real changes touch the DOM: nothing flickers, and screen readers
  // do not announce a notice again at every poll.
  function setText(el, value) {
    var text = value === null || value === undefined ? "" : String(value);
    if (el && el.textContent !== text) el.textContent = text;
  }

  function setAttr(el, name, value) {
    var text = String(value);
    if (el && el.getAttribute(name) !== text) el.setAttribute(name, text);
  }

  function show(el, visible) {
    if (el && el.hidden === Boolean(visible)) el.hidden = !visible;
  }

  function text(scope, name, value, hideEmpty) {
    var el = field(scope, name);
    setText(el, value);
    if (hideEmpty) show(el, Boolean(value));
  }

  // Keep a list's rows in the answer's order: patch the known ones, clone
  // the blank row for new ones, drop the ones that left.
  function syncList(name, items, patch) {
    var list = root.querySelector('[data-list="' + name + '"]');
    var blank = root.querySelector('template[data-template="' + name + '"]');
    var rows = {};
    Array.prototype.forEach.call(list.children, function (row) { rows[row.getAttribute("data-id")] = row; });
    items.forEach(function (item, index) {
      var row = rows[item.id];
      delete rows[item.id];
      if (!row) {
        row = blank.content.firstElementChild.cloneNode(true);
        row.setAttribute("data-id", item.id);
      }
      patch(row, item);
      if (list.children[index] !== row) list.insertBefore(row, list.children[index] || null);
    });
    Object.keys(rows).forEach(function (id) { rows[id].remove(); });
    show(root.querySelector('[data-empty="' + name + '"]'), items.length === 0);
  }

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
      setText(bar.querySelector("title"), (hours[i] || "") + " \u00b7 " + (chart.counts[i] || 0).toLocaleString("en"));
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

  function patchMailing(row, m) {
    var link = field(row, "url");
    if (m.url.charAt(0) === "/") setAttr(link, "href", m.url);
    text(row, "name", m.name);
    var badge = field(row, "status_label");
    setText(badge, m.status_label);
    setAttr(badge, "class", "badge badge-status-" + m.status);
    var bar = field(row, "bar");
    setAttr(bar, "aria-label", m.bar_label);
    m.bars.forEach(function (b) {
      var rect = bar.querySelector('rect[data-status="' + b.status + '"]');
      if (!rect) return;
      setAttr(rect, "x", b.x);
      setAttr(rect, "width", b.width);
      setText(rect.querySelector("title"), b.label + ": " + b.count);
    });
    m.counts.forEach(function (c) { setText(row.querySelector('[data-count="' + c.key + '"]'), c.count); });
    text(row, "total", m.total);
    text(row, "waiting_text", m.waiting_text, true);
    text(row, "finish_text", m.finish_text);
    text(row, "rate_text", m.rate_text);
  }

  function render(data) {
    text(root, "updated", data.updated);
    show(field(root, "offline"), false);
    show(field(root, "more_mailings"), data.more_mailings);
    syncList("mailings", data.mailings, patchMailing);
    syncList("servers", data.servers, function (row, s) { patchServer(row, s, data); });
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
