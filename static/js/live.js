/* Postroute: what the live pages share (the dashboard, the mailings list,
   a mailing's page). The server makes every text; these put them in place
   with textContent and attributes, and keep lists of rows in the order of
   the answer. Fields are marked data-f="name" in the templates. */
(function () {
  "use strict";

  var Postroute = window.Postroute = window.Postroute || {};

  function field(scope, name) {
    return scope.querySelector('[data-f="' + name + '"]');
  }

  // Only real changes touch the DOM: nothing flickers, and screen readers
  // do not announce a notice again at every poll. A number is written as
  // the page's language writes one (12 345, 12.345), as the server wrote it.
  function setText(el, value) {
    var text = value === null || value === undefined ? "" : typeof value === "number" ? Postroute.number(value) : String(value);
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
  // the blank row (<template data-template="name">) for new ones, drop the
  // ones that left; show the list's empty notice when it is empty.
  function syncList(root, name, items, patch) {
    var list = root.querySelector('[data-list="' + name + '"]');
    var blank = root.querySelector('template[data-template="' + name + '"]');
    if (!list || !blank) return;
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

  // A mailing's name, state badge and stacked bar with its counts
  // (templates/mailings/_bar.html), from mailing.views.dashboard.mailing_fields.
  function patchMailing(row, m) {
    var link = field(row, "url");
    if (link && m.url.charAt(0) === "/") setAttr(link, "href", m.url);
    text(row, "name", m.name);
    var badge = field(row, "status_label");
    setText(badge, m.status_label);
    setAttr(badge, "class", "badge badge-status-" + m.status);
    var bar = field(row, "bar");
    if (bar) {
      setAttr(bar, "aria-label", m.bar_label);
      m.bars.forEach(function (b) {
        var rect = bar.querySelector('rect[data-status="' + b.status + '"]');
        if (!rect) return;
        setAttr(rect, "x", b.x);
        setAttr(rect, "width", b.width);
        setText(rect.querySelector("title"), b.label + ": " + b.count);
      });
    }
    m.counts.forEach(function (c) { setText(row.querySelector('[data-count="' + c.key + '"]'), c.count); });
    text(row, "total", m.total);
    text(row, "waiting_text", m.waiting_text, true);
    text(row, "finish_text", m.finish_text, true);
    text(row, "rate_text", m.rate_text, true);
  }

  Postroute.live = {
    field: field, setText: setText, setAttr: setAttr, show: show, text: text,
    syncList: syncList, patchMailing: patchMailing
  };
})();
