// Live status for the checkout page: poll the status endpoint, count down to expiry.
(function () {
  "use strict";
  var root = document.getElementById("checkout");
  if (!root) { return; }
  var statusEl = document.getElementById("status");
  var countdownEl = document.getElementById("countdown");
  var expires = parseInt(root.dataset.expires, 10) * 1000;
  var finalStates = { settled: true, expired: true, invalid: true };

  function show(status) {
    statusEl.textContent = status;
    statusEl.className = "status status-" + status;
    root.dataset.status = status;
  }

  function tick() {
    var left = Math.max(0, Math.round((expires - Date.now()) / 1000));
    var open = root.dataset.status === "new";
    countdownEl.textContent = open ? Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0") : "";
  }

  function poll() {
    fetch(root.dataset.statusUrl, { headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) { if (data) { show(data.status); } })
      .catch(function () { /* offline for a moment: try again on the next tick */ })
      .finally(function () {
        if (!finalStates[root.dataset.status]) { setTimeout(poll, 2000); }
      });
  }

  setInterval(tick, 1000);
  tick();
  poll();
})();
