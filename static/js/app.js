/* Postroute: small progressive enhancements. The pages work without it. */
(function () {
  "use strict";

  var Postroute = window.Postroute = window.Postroute || {};

  /* A number as the page's language writes it, as Django's localize does
     on the server: 12,345 in English, 12 345 (a no-break space) in Russian,
     12.345 in Vietnamese. Every number a script writes goes through it. */
  var numberFormat = null;
  Postroute.number = function (value) {
    if (!numberFormat) {
      try {
        numberFormat = new Intl.NumberFormat(document.documentElement.lang || undefined, { maximumFractionDigits: 3 });
      } catch (e) {
        numberFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 3 });
      }
    }
    return numberFormat.format(value);
  };

  /* Poll a JSON URL for a live page (healthchecks' adaptive-setinterval):
     often while the tab is visible, seldom while it is hidden, at once when
     it shows again; never two requests at a time; slower after failures.

       onData(data)     each answer, in order
       done(data)       true: stop polling (e.g. the job finished)
       onError(count)   after each failed request (count: failures in a row)
       onGiveUp()       after maxFailures failures in a row; polling stops
       visibleMs, hiddenMs   delays between answers (default 1000, 5000)
       failureMs, failureMaxMs   delay after the n-th failure in a row:
                         min(n * failureMs, failureMaxMs) (default 5000, 5000)
       maxFailures       (default 10; Infinity never gives up)
       pauseWhenHidden   true: no request at all while the tab is hidden

     An answer with an ETag is asked for again with If-None-Match; a 304
     (nothing changed) gives onData the last answer again.

     Returns { stop: fn, now: fn } to stop, or to poll at once. */
  Postroute.pollJson = function (url, options) {
    var opts = options || {};
    var visibleMs = opts.visibleMs || 1000;
    var hiddenMs = opts.hiddenMs || 5000;
    var failureMs = opts.failureMs || 5000;
    var failureMaxMs = opts.failureMaxMs || failureMs;
    var maxFailures = opts.maxFailures || 10;
    var timer = null;
    var busy = false;
    var stopped = false;
    var failures = 0;
    var etag = null;
    var last = null;

    function schedule(delay) {
      clearTimeout(timer);
      if (stopped) return;
      var hidden = document.visibilityState !== "visible";
      // Paused while hidden: showing the tab again polls at once.
      if (delay === undefined && hidden && opts.pauseWhenHidden) return;
      if (delay === undefined) delay = hidden ? hiddenMs : visibleMs;
      timer = setTimeout(poll, delay);
    }

    function stop() {
      stopped = true;
      clearTimeout(timer);
      document.removeEventListener("visibilitychange", onVisibility);
    }

    function failed() {
      busy = false;
      failures += 1;
      if (opts.onError) opts.onError(failures);
      if (failures >= maxFailures) {
        stop();
        if (opts.onGiveUp) opts.onGiveUp();
        return;
      }
      // A struggling server gets fewer requests.
      schedule(Math.min(failureMs * failures, failureMaxMs));
    }

    function poll() {
      if (busy || stopped) return;
      busy = true;
      var headers = { Accept: "application/json" };
      // A view with a version stamp (ETag) answers 304 when nothing changed:
      // the last answer still holds.
      if (etag) headers["If-None-Match"] = etag;
      fetch(url, { credentials: "same-origin", cache: "no-store", headers: headers })
        .then(function (response) {
          if (response.status === 304 && last !== null) return last;
          if (!response.ok) throw new Error("HTTP " + response.status);
          etag = response.headers.get("ETag");
          return response.json().then(function (data) { last = data; return data; });
        })
        .then(function (data) {
          busy = false;
          failures = 0;
          if (opts.onData) opts.onData(data);
          if (opts.done && opts.done(data)) stop();
          else schedule();
        })
        .catch(failed);
    }

    function onVisibility() {
      if (document.visibilityState === "visible") schedule(0);
      else if (opts.pauseWhenHidden) clearTimeout(timer);
    }

    document.addEventListener("visibilitychange", onVisibility);
    schedule();
    return { stop: stop, now: function () { schedule(0); } };
  };

  // Switch organisation as soon as one is picked; the Switch button stays for no-JS.
  document.querySelectorAll("form[data-autosubmit] select").forEach(function (select) {
    select.form.classList.add("is-live");
    select.addEventListener("change", function () {
      if (!select.value) return;
      if (select.form.requestSubmit) select.form.requestSubmit();
      else select.form.submit();
    });
  });

  // The language changes as soon as one is picked: no button needed then.
  document.querySelectorAll(".language-switch button[type=submit]").forEach(function (button) {
    button.style.display = "none";
  });

  // Forms that delete or cancel ask first, also those a live page adds later.
  document.addEventListener("submit", function (event) {
    var form = event.target.closest ? event.target.closest("form[data-confirm]") : null;
    if (form && !window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
  });

  // Copy buttons: <button data-copy="#id" hidden> copies that element's
  // data-text (or its text); shown only where the browser can copy.
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source || !navigator.clipboard) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      var text = source.getAttribute("data-text") || source.innerText;
      navigator.clipboard.writeText(text).then(function () {
        button.textContent = button.getAttribute("data-copied") || button.textContent;
      });
    });
  });

  // A fresh sign-up or organisation starts in the browser's time zone; the
  // select stays for people whose browser says nothing (or something else).
  document.querySelectorAll("select[data-browser-zone]").forEach(function (select) {
    var zone = "";
    try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { return; }
    if (zone && select.querySelector('option[value="' + zone.replace(/"/g, "") + '"]')) select.value = zone;
  });

  // Let people close flash messages.
  document.querySelectorAll(".alert[data-dismissible]").forEach(function (alert) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "alert-close";
    button.setAttribute("aria-label", gettext("Dismiss"));
    button.textContent = "\u00d7";
    button.addEventListener("click", function () { alert.remove(); });
    alert.appendChild(button);
  });
})();
