// Shared live-status helper for the checkout and terminal pages (no inline script: CSP).
// CCLive.follow(root, onState): Server-Sent Events first, polling status.json as the fallback.
(function () {
  "use strict";
  var FINAL = { settled: true, expired: true, invalid: true };

  function follow(root, onState) {
    var source = null;
    var polling = false;
    var done = false;

    function handle(state) {
      if (!state || !state.status) { return; }
      onState(state);
      if (state.status !== "new") {
        var countdown = document.getElementById("countdown");
        if (countdown) { countdown.textContent = ""; }  // no clock once the money is in
      }
      if (FINAL[state.status]) { stop(); }
    }

    function stop() {
      done = true;
      if (source) { source.close(); source = null; }
    }

    function poll() {
      if (done) { return; }
      polling = true;
      fetch(root.dataset.statusUrl, { headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(handle)
        .catch(function () { /* offline for a moment: try again on the next round */ })
        .finally(function () { if (!done) { setTimeout(poll, 2500); } });
    }

    function startPolling() {
      if (source) { source.close(); source = null; }
      if (!polling) { poll(); }
    }

    if (window.EventSource && root.dataset.eventsUrl) {
      source = new EventSource(root.dataset.eventsUrl);
      source.addEventListener("status", function (e) { handle(JSON.parse(e.data)); });
      source.addEventListener("fallback", startPolling);
      var failures = 0;
      source.onerror = function () {
        failures += 1;
        // CLOSED: the server refused the stream (429 over a cap, any non-200): EventSource never
        // retries that by itself. Or the stream keeps failing. Either way: poll instead.
        if (source && source.readyState === EventSource.CLOSED) { startPolling(); return; }
        if (failures > 3) { startPolling(); }
      };
      source.onopen = function () { failures = 0; };
    } else {
      poll();
    }
  }

  function countdown(root, el) {
    var expires = parseInt(root.dataset.expires, 10) * 1000;
    function tick() {
      var left = Math.max(0, Math.round((expires - Date.now()) / 1000));
      var open = root.dataset.status === "new";
      el.textContent = open ? Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0") : "";
    }
    tick();
    setInterval(tick, 1000);
  }

  function label(status) {
    var tpl = document.getElementById("status-labels");
    if (!tpl) { return status; }
    var span = tpl.content.querySelector('[data-status="' + status + '"]');
    return span ? span.textContent : status;
  }

  window.CCLive = { follow: follow, countdown: countdown, label: label };
})();
