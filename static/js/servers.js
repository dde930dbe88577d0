/* Postroute: the servers pages. Progressive enhancement only: every form
   and link works without this file. Server strings are set with textContent,
   never innerHTML. */
(function () {
  "use strict";

  // ---------- Shared ----------
  function replaceContent(parent, nodes) {
    while (parent.firstChild) parent.removeChild(parent.firstChild);
    nodes.forEach(function (node) { parent.appendChild(node); });
  }

  function csrfToken() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  // ---------- Server and bounce mailbox forms ----------
  function readPresets() {
    var el = document.getElementById("provider-presets");
    if (!el) return [];
    try {
      var list = JSON.parse(el.textContent);
      return Array.isArray(list) ? list : [];
    } catch (e) {
      return [];
    }
  }

  function domainOf(address) {
    var value = (address || "").trim().toLowerCase();
    var at = value.lastIndexOf("@");
    if (at < 1) return "";
    var domain = value.slice(at + 1).replace(/\.+$/, "");
    return /^[a-z0-9-]+(\.[a-z0-9-]+)+$/.test(domain) ? domain : "";
  }

  // The same pairs servers/rules.py warns about.
  function portSecurityWarning(port, security) {
    if (port === 465 && security !== "ssl") {
      return gettext("Port 465 normally uses SSL/TLS (implicit). With another setting the connection usually hangs.");
    }
    if (port === 587 && security === "ssl") {
      return gettext("Port 587 normally uses STARTTLS, not SSL/TLS. With SSL the connection usually fails.");
    }
    if ((port === 993 || port === 995) && security !== "ssl") {
      return interpolate(gettext("Port %s normally uses SSL/TLS (implicit)."), [port]);
    }
    if ((port === 143 || port === 110) && security === "ssl") {
      return interpolate(gettext("Port %s normally uses STARTTLS or no encryption, not SSL/TLS."), [port]);
    }
    return "";
  }

  function setupAutofill(form, presets) {
    var kind = form.getAttribute("data-autofill-form"); // "smtp" or "imap"
    var trigger = form.querySelector('input[data-autofill="' + kind + '"]');
    var field = function (name) { return form.querySelector('[name="' + name + '"]'); };
    var host = field("host");
    var port = field("port");
    var security = form.querySelector("select[name=security]");
    var login = form.querySelector("input[name=login]");
    var nameInput = form.querySelector("input[name=name]");
    var substitution = form.querySelector("input[name=allow_sender_substitution]");
    var note = document.getElementById("substitution-note");

    // Anything the user types by hand is theirs: never overwrite it.
    function markEdited(event) {
      var el = event.target;
      if (!el || !el.name || el === trigger) return;
      el.setAttribute("data-user-edited", "1");
      el.removeAttribute("data-auto-filled");
    }
    form.addEventListener("input", markEdited);
    form.addEventListener("change", function (event) {
      if (event.target && event.target.tagName === "SELECT") markEdited(event);
    });

    // A fresh add form shows values we chose (a provider preset, defaults):
    // those may be replaced like anything this script filled in.
    if (form.getAttribute("data-prefilled") === "1") {
      [nameInput, host, port, security, login, field("imap_host"), field("imap_port"), field("imap_security")].forEach(function (el) {
        if (el && el.value !== "") el.setAttribute("data-auto-filled", "1");
      });
    }

    function userEdited(el) {
      return !el || el.disabled || el.getAttribute("data-user-edited") === "1";
    }

    function canFill(el) {
      return !userEdited(el) && (el.value === "" || el.getAttribute("data-auto-filled") === "1");
    }

    function fill(el, value) {
      if (!el || value === undefined || value === null) return;
      if (el.tagName === "SELECT" && !el.querySelector('option[value="' + value + '"]')) return;
      el.value = String(value);
      el.setAttribute("data-auto-filled", "1");
    }

    function findByDomain(domain) {
      for (var i = 0; i < presets.length; i++) {
        if ((presets[i].domains || []).indexOf(domain) !== -1) return presets[i];
      }
      return null;
    }

    function findByHost(value) {
      var h = (value || "").trim().toLowerCase().replace(/\.+$/, "");
      if (!h) return null;
      for (var i = 0; i < presets.length; i++) {
        var p = presets[i];
        if ((p.smtp && p.smtp.host === h) || (p.imap && p.imap.host === h)) return p;
      }
      return null;
    }

    function findByKey(key) {
      for (var i = 0; i < presets.length; i++) {
        if (presets[i].key === key) return presets[i];
      }
      return null;
    }

    function showNote(preset) {
      if (note) note.textContent = preset ? preset.substitution_note || "" : "";
    }

    // ---- live port / security warning ----
    var warning = null;
    function checkPortSecurity() {
      if (!port || !security) return;
      var text = portSecurityWarning(parseInt(port.value, 10), security.value);
      if (!warning) {
        warning = document.createElement("p");
        warning.className = "help text-warning port-warning";
        warning.id = "port-security-warning";
        warning.setAttribute("role", "status");
        var box = security.closest(".field") || security;
        box.appendChild(warning);
      }
      warning.textContent = text;
      warning.hidden = !text;
    }
    if (port) port.addEventListener("input", checkPortSecurity);
    if (security) security.addEventListener("change", checkPortSecurity);

    // ---- fill from the address ----
    var lastDomain = null;
    function autofill() {
      if (!trigger) return;
      var address = trigger.value.trim();
      var domain = domainOf(address);
      if (!domain || domain === lastDomain) return;
      lastDomain = domain;

      var preset = findByDomain(domain);
      // A bounce mailbox is read over IMAP or POP3: the preset of that protocol.
      var wanted = kind === "imap" ? protocol() : kind;
      var endpoint = preset ? preset[wanted] : null;
      if (!endpoint) {
        var guessed = { smtp: ["smtp.", 465], imap: ["imap.", 993], pop3: ["pop.", 995] }[wanted];
        endpoint = { host: guessed[0] + domain, port: guessed[1], security: "ssl" };
      }

      if (host && canFill(host)) {
        fill(host, endpoint.host);
        if (!userEdited(port)) fill(port, endpoint.port);
        if (!userEdited(security)) fill(security, endpoint.security);
      }
      if (login && canFill(login)) fill(login, address);
      if (nameInput && canFill(nameInput)) fill(nameInput, preset ? preset.name : domain);

      if (kind === "smtp") {
        showNote(preset);
        if (preset && !preset.allows_substitution && substitution) substitution.checked = false;
        // The same mailbox read for bounces: its provider's IMAP server.
        var imap = (preset && preset.imap) || { host: "imap." + domain, port: 993, security: "ssl" };
        var imapHost = field("imap_host");
        if (imapHost && canFill(imapHost)) {
          fill(imapHost, imap.host);
          if (!userEdited(field("imap_port"))) fill(field("imap_port"), imap.port);
          if (!userEdited(field("imap_security"))) fill(field("imap_security"), imap.security);
        }
      } else {
        var plus = field("plus_addressing");
        if (plus && preset && !userEdited(plus)) plus.checked = preset.plus_addressing !== false;
      }
      checkPortSecurity();
    }

    if (trigger) {
      trigger.addEventListener("change", autofill);
      trigger.addEventListener("blur", autofill);
    }

    // ---- a bounce mailbox's protocol: its security wording, host and port ----
    var protocolField = field("protocol");
    function protocol() {
      return protocolField && protocolField.value === "pop3" ? "pop3" : "imap";
    }
    var OTHER_PORT = { imap: { 995: 993, 110: 143 }, pop3: { 993: 995, 143: 110 } };
    function relabel() {
      var labels = security ? JSON.parse(security.getAttribute("data-labels") || "{}")[protocol()] : null;
      if (!labels) return;
      Array.prototype.forEach.call(security.options, function (option) {
        if (labels[option.value]) option.textContent = labels[option.value];
      });
    }
    if (protocolField && kind === "imap") {
      protocolField.addEventListener("change", function () {
        relabel();
        var counterpart = OTHER_PORT[protocol()][parseInt(port.value, 10)];
        if (counterpart && !userEdited(port)) fill(port, counterpart);
        lastDomain = null; // what was filled from the address follows the protocol
        autofill();
        checkPortSecurity();
      });
    }
    if (host && kind === "smtp") {
      host.addEventListener("change", function () {
        showNote(findByHost(host.value) || findByDomain(domainOf(trigger ? trigger.value : "")));
      });
    }

    // On load: explain the provider's rule and check the pair, changing nothing.
    if (kind === "smtp") {
      showNote(
        (trigger && findByDomain(domainOf(trigger.value))) ||
        (host && findByHost(host.value)) ||
        findByKey(form.getAttribute("data-preset"))
      );
    }
    if (trigger) lastDomain = domainOf(trigger.value) || null;
    // After a refused save the page already shows the server's warning.
    if (!form.querySelector("[name=accept_warning]")) checkPortSecurity();
  }

  var presets = readPresets();
  document.querySelectorAll("form[data-autofill-form]").forEach(function (form) {
    setupAutofill(form, presets);
  });

  // ---------- Connection test page ----------
  var testRoot = document.querySelector("[data-json-url]");
  if (testRoot && testRoot.getAttribute("data-finished") === "0") {
    var statusEl = document.getElementById("test-status");
    var stepsEl = document.getElementById("test-steps");
    var resultEl = document.getElementById("test-result");
    var el = function (tag, className, text) {
      var node = document.createElement(tag);
      if (className) node.className = className;
      if (text !== undefined) node.textContent = text;
      return node;
    };

    var renderSteps = function (steps, finished) {
      var items = [];
      (steps || []).forEach(function (step) {
        var li = el("li", "test-step " + (step.ok ? "is-ok" : "is-failed"));
        var mark = el("span", "test-step-mark", step.ok ? "\u2713" : "\u2717");
        mark.setAttribute("aria-hidden", "true");
        var body = el("span", "test-step-body");
        body.appendChild(el("span", "visually-hidden", step.ok ? gettext("Passed: ") : gettext("Failed: ")));
        body.appendChild(el("span", "test-step-name", String(step.name || "")));
        if (step.detail) body.appendChild(el("span", "test-step-detail break", String(step.detail)));
        li.appendChild(mark);
        li.appendChild(body);
        li.appendChild(el("span", "test-step-ms", interpolate(gettext("%(ms)s ms"), {ms: step.shown_ms || window.Postroute.number(Number(step.ms) || 0)}, true)));
        items.push(li);
      });
      if (!items.length && !finished) {
        var waiting = el("li", "test-step is-waiting");
        waiting.appendChild(el("span", "test-step-body muted", gettext("Waiting for the first step\u2026")));
        items.push(waiting);
      }
      replaceContent(stepsEl, items);
    };

    var renderResult = function (data) {
      if (!data.finished) {
        resultEl.hidden = true;
        return;
      }
      var box;
      if (data.status === "passed") {
        box = el("div", "alert alert-success");
        box.appendChild(el("p", "", gettext("The connection works.")));
        var sendTo = testRoot.getAttribute("data-send-to");
        if (sendTo) box.appendChild(el("p", "", interpolate(gettext("A test letter went to %(send_to)s; check that it arrived."), { send_to: sendTo }, true)));
      } else {
        box = el("div", "alert alert-error");
        box.appendChild(el("p", "break", data.error || gettext("The test failed.")));
        if (data.hint) {
          var hint = el("p");
          hint.appendChild(el("strong", "", gettext("How to fix:")));
          hint.appendChild(document.createTextNode(" " + data.hint));
          box.appendChild(hint);
        }
      }
      replaceContent(resultEl, [box]);
      resultEl.hidden = false;
    };

    var render = function (data) {
      statusEl.textContent = data.status_label || data.status || "";
      statusEl.className = "test-status test-status-" + (data.status || "pending") + (data.finished ? "" : " is-running");
      renderSteps(data.steps, data.finished);
      renderResult(data);
    };

    window.Postroute.pollJson(testRoot.getAttribute("data-json-url"), {
      onData: render,
      done: function (data) {
        if (data.finished) testRoot.setAttribute("data-finished", "1");
        return data.finished;
      },
      onGiveUp: function () {
        statusEl.classList.remove("is-running");
        statusEl.textContent = gettext("Lost contact with the test. Reload the page to see how it went.");
      }
    });
  }

  // ---------- Drag to reorder the servers ----------
  var list = document.querySelector(".server-list[data-reorder-url]");
  if (list) {
    var dragged = null;
    var dropped = false;
    var before = [];

    var items = function () {
      return Array.prototype.slice.call(list.querySelectorAll("li[data-id]"));
    };
    var order = function () {
      return items().map(function (li) { return li.getAttribute("data-id"); });
    };
    var clearOver = function () {
      list.querySelectorAll(".is-drag-over").forEach(function (li) { li.classList.remove("is-drag-over"); });
    };
    var restore = function (ids) {
      var byId = {};
      items().forEach(function (li) { byId[li.getAttribute("data-id")] = li; });
      ids.forEach(function (id) { if (byId[id]) list.appendChild(byId[id]); });
    };

    // Up/Down buttons and numbers follow the new order (the page is not reloaded).
    var template = list.querySelector("form.move-form");
    var syncMoveButtons = function () {
      var all = items();
      all.forEach(function (li, i) {
        var rank = li.querySelector(".server-rank");
        if (rank) rank.textContent = window.Postroute.number(i + 1);
        var box = li.querySelector(".move-forms");
        if (!box || !template) return;
        ["up", "down"].forEach(function (dir) {
          var wanted = dir === "up" ? i > 0 : i < all.length - 1;
          var form = box.querySelector('form[data-direction="' + dir + '"]');
          if (!wanted) {
            if (form) form.remove();
            return;
          }
          if (form) return;
          form = template.cloneNode(true);
          form.setAttribute("action", li.getAttribute("data-move-url"));
          form.setAttribute("data-direction", dir);
          form.querySelector("input[name=direction]").value = dir;
          var button = form.querySelector("button");
          var name = { name: li.getAttribute("data-name") || "" };
          button.textContent = dir === "up" ? gettext("\u2191 Up") : gettext("\u2193 Down");
          button.setAttribute("aria-label", interpolate(
            dir === "up" ? gettext("Move %(name)s up") : gettext("Move %(name)s down"), name, true));
          if (dir === "up") box.insertBefore(form, box.firstChild);
          else box.appendChild(form);
        });
      });
    };

    var save = function (ids) {
      var body = new URLSearchParams();
      ids.forEach(function (id) { body.append("order", id); });
      fetch(list.getAttribute("data-reorder-url"), {
        method: "POST",
        mode: "same-origin",
        credentials: "same-origin",
        headers: {
          "X-CSRFToken": csrfToken(),
          "X-Requested-With": "XMLHttpRequest",
          "Content-Type": "application/x-www-form-urlencoded;charset=UTF-8"
        },
        body: body.toString()
      })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          syncMoveButtons();
        })
        .catch(function () {
          window.location.reload();
        });
    };

    // Selecting text in the test address field must not start a drag.
    list.addEventListener("pointerdown", function (event) {
      var li = event.target.closest("li[data-id]");
      if (li && event.target.closest("input, select, textarea, button, a, label")) li.draggable = false;
    });
    var allowDrag = function () {
      items().forEach(function (li) { li.draggable = true; });
    };
    document.addEventListener("pointerup", allowDrag);
    document.addEventListener("pointercancel", allowDrag);

    list.addEventListener("dragstart", function (event) {
      var li = event.target.closest && event.target.closest("li[draggable=true]");
      if (!li || li.parentNode !== list) return;
      dragged = li;
      dropped = false;
      before = order();
      li.classList.add("is-dragging");
      list.classList.add("is-sorting");
      event.dataTransfer.effectAllowed = "move";
      event.dataTransfer.setData("text/plain", li.getAttribute("data-id"));
    });

    list.addEventListener("dragover", function (event) {
      if (!dragged) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "move";
      var over = event.target.closest && event.target.closest("li[data-id]");
      if (!over || over === dragged || over.parentNode !== list) return;
      clearOver();
      over.classList.add("is-drag-over");
      var rect = over.getBoundingClientRect();
      var after = event.clientY > rect.top + rect.height / 2;
      list.insertBefore(dragged, after ? over.nextSibling : over);
    });

    list.addEventListener("drop", function (event) {
      if (!dragged) return;
      event.preventDefault();
      dropped = true;
    });

    list.addEventListener("dragend", function () {
      if (!dragged) return;
      dragged.classList.remove("is-dragging");
      list.classList.remove("is-sorting");
      clearOver();
      dragged = null;
      if (!dropped) {
        restore(before);
        return;
      }
      var now = order();
      if (now.join(",") !== before.join(",")) save(now);
    });
  }
})();
