// The cashier's terminal: keypad, cart total, live QR screen with a "paid" sound, choice wait.
(function () {
  "use strict";

  // --- keypad: fills the plain amount input, which works on its own without this script ---
  var keypad = document.getElementById("keypad");
  var amount = document.getElementById("amount");
  if (keypad && amount) {
    keypad.hidden = false;
    keypad.addEventListener("click", function (e) {
      var key = e.target.dataset ? e.target.dataset.key : null;
      if (!key) { return; }
      var value = amount.value.replace(/\s/g, "");
      if (key === "back") { value = value.slice(0, -1); }
      else if (key === "clear") { value = ""; }
      else if (value.length < 12) { value = (value === "0" ? "" : value) + key; }
      amount.value = value.replace(/^0+(?=\d)/, "");
    });
  }

  // --- cart: show the running total (the server recomputes it from its own prices) ---
  var cartForm = document.getElementById("cart-form");
  var cartTotal = document.getElementById("cart-total");
  if (cartForm && cartTotal) {
    var update = function () {
      var tiyn = 0;
      Array.prototype.forEach.call(cartForm.querySelectorAll("input.qty"), function (input) {
        var qty = parseInt(input.value, 10);
        if (qty > 0) { tiyn += qty * parseInt(input.dataset.price, 10); }
      });
      cartTotal.hidden = false;
      cartTotal.textContent = "= " + Math.floor(tiyn / 100).toLocaleString("ru-RU") + "." +
        String(tiyn % 100).padStart(2, "0") + " ₸";
    };
    cartForm.addEventListener("input", update);
    update();
  }

  // --- the QR screen: live status, then a big "paid" with a beep ---
  var screen = document.getElementById("terminal-invoice");
  if (screen && window.CCLive) {
    var beeped = false;
    var beep = function () {
      var Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx || beeped) { return; }
      beeped = true;
      try {
        var ctx = new Ctx();
        [0, 0.18].forEach(function (offset, i) {
          var osc = ctx.createOscillator();
          var gain = ctx.createGain();
          osc.frequency.value = i === 0 ? 880 : 1320;
          gain.gain.setValueAtTime(0.2, ctx.currentTime + offset);
          gain.gain.exponentialRampToValueAtTime(0.001, ctx.currentTime + offset + 0.16);
          osc.connect(gain).connect(ctx.destination);
          osc.start(ctx.currentTime + offset);
          osc.stop(ctx.currentTime + offset + 0.17);
        });
      } catch (err) { /* no audio device: the screen still says PAID */ }
    };
    var sections = {
      waiting: document.getElementById("waiting-block"),
      processing: document.getElementById("processing-block"),
      paid: document.getElementById("paid-screen"),
      closed: document.getElementById("closed-block")
    };
    var statusEl = document.getElementById("status");
    CCLive.countdown(screen, document.getElementById("countdown"));
    CCLive.follow(screen, function (state) {
      var before = parseInt(screen.dataset.paid, 10);
      screen.dataset.status = state.status;
      statusEl.textContent = CCLive.label(state.status);
      statusEl.className = "status status-" + state.status;
      sections.waiting.hidden = state.status !== "new";
      sections.processing.hidden = state.status !== "processing";
      sections.paid.hidden = state.status !== "settled";
      sections.closed.hidden = state.status !== "expired" && state.status !== "invalid";
      document.body.classList.toggle("is-paid", state.status === "settled");
      if (state.status === "settled") { beep(); }
      if (state.status === "new" && state.paid_atomic !== before) { window.location.reload(); }
    });
  }

  // --- "shopper chooses": wait for the pick, then show the invoice's QR screen ---
  var wait = document.getElementById("choice-wait");
  if (wait) {
    var check = function () {
      fetch(wait.dataset.statusUrl, { headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (data && data.terminal_url) { window.location.assign(data.terminal_url); return; }
          setTimeout(check, 2000);
        })
        .catch(function () { setTimeout(check, 4000); });
    };
    check();
  }
})();
