// The shopper's checkout page: live status, countdown, copy buttons.
(function () {
  "use strict";
  var root = document.getElementById("checkout");
  if (!root || !window.CCLive) { return; }
  var statusEl = document.getElementById("status");
  var payBlock = document.getElementById("pay-block");
  var paidBlock = document.getElementById("paid-block");
  var closedBlock = document.getElementById("closed-block");

  function show(state) {
    var paidBefore = parseInt(root.dataset.paid, 10);
    root.dataset.status = state.status;
    var partly = state.status === "new" && state.paid_atomic > 0;
    statusEl.textContent = CCLive.label(partly ? "partly_paid" : state.status);
    statusEl.className = "status status-" + state.status;
    var paid = state.status === "processing" || state.status === "settled";
    var closed = state.status === "expired" || state.status === "invalid";
    payBlock.hidden = paid || closed;
    paidBlock.hidden = !paid;
    closedBlock.hidden = !closed;
    if (state.status === "new" && state.paid_atomic !== paidBefore) {
      // Part of the amount arrived: the page re-renders with the rest and a new QR.
      window.location.reload();
    } else if (paid && state.paid_atomic > state.due_atomic && state.paid_atomic !== paidBefore) {
      // Paid over: the page re-renders with how the extra comes back.
      window.location.reload();
    }
  }

  Array.prototype.forEach.call(document.querySelectorAll("button.copy"), function (button) {
    if (!navigator.clipboard) { return; }
    button.hidden = false;
    button.addEventListener("click", function () {
      var text = document.getElementById(button.dataset.copy).textContent.trim();
      var original = button.textContent;
      navigator.clipboard.writeText(text).then(function () {
        button.textContent = "✓";
        setTimeout(function () { button.textContent = original; }, 1500);
      });
    });
  });

  CCLive.countdown(root, document.getElementById("countdown"));
  CCLive.follow(root, show);
})();
