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
      // At most 9 digits before the point, as the server allows (forms.MAX_TENGE_DIGITS).
      else if ((value + key).split(/[.,]/)[0].replace(/\D/g, "").length <= 9) {
        value = (value === "0" ? "" : value) + key;
      }
      amount.value = value.replace(/^0+(?=\d)/, "");
      amount.dispatchEvent(new Event("input", { bubbles: true }));
    });
  }

  // --- cart: show the running total (the server recomputes it from its own prices) ---
  var cartForm = document.getElementById("cart-form");
  var cartTotal = document.getElementById("cart-total");
  var cartTiyn = function () {
    var tiyn = 0;
    Array.prototype.forEach.call(cartForm.querySelectorAll("input.qty"), function (input) {
      var qty = parseInt(input.value, 10);
      if (qty > 0) { tiyn += qty * parseInt(input.dataset.price, 10); }
    });
    return tiyn;
  };
  // Tiyn as tenge in the page's language, like the server's labels.format_kzt: whole tenge
  // grouped by Intl, the tiyn appended as digits (no float rounding of money).
  var pageLocale = document.documentElement.lang || "en";
  var formatTenge = function (tiyn) {
    var decimal = ".";
    try {
      new Intl.NumberFormat(pageLocale, { minimumFractionDigits: 1 }).formatToParts(1.5)
        .forEach(function (part) { if (part.type === "decimal") { decimal = part.value; } });
      return new Intl.NumberFormat(pageLocale).format(Math.floor(tiyn / 100)) + decimal +
        String(tiyn % 100).padStart(2, "0");
    } catch (e) {
      return String(Math.floor(tiyn / 100)) + decimal + String(tiyn % 100).padStart(2, "0");
    }
  };
  if (cartForm && cartTotal) {
    var update = function () {
      var tiyn = cartTiyn();
      cartTotal.hidden = false;
      cartTotal.textContent = "= " + formatTenge(tiyn) + " ₸";
    };
    cartForm.addEventListener("input", update);
    update();
  }

  // --- the total with the tip before charging: the server computes it (pos.tips) ---
  var shown = document.getElementById("shown-total");
  var saleForm = document.getElementById("sale-form") || cartForm;
  if (shown && saleForm) {
    var box = document.getElementById("sale-total");
    var totalEl = document.getElementById("sale-total-amount");
    var summaryEl = document.getElementById("sale-total-summary");
    var roundingEl = document.getElementById("sale-total-rounding");
    var ticket = 0;
    var timer = null;
    var quote = function () {
      var tip = saleForm.querySelector('input[name="tip"]:checked');
      var tipValue = tip ? tip.value : "0";
      var mine = ++ticket;
      // Until the server's total is on screen, a charge gets the review page instead.
      shown.value = "";
      if (tipValue === "0") { box.hidden = true; return; }
      var params = new URLSearchParams({ tip: tipValue });
      if (amount) { params.set("amount", amount.value); } else { params.set("tiyn", String(cartTiyn())); }
      fetch(shown.dataset.quoteUrl + "?" + params.toString(), { headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (mine !== ticket) { return; }  // an older answer after a newer question
          if (!data) { box.hidden = true; return; }
          totalEl.textContent = data.total;
          summaryEl.textContent = data.summary;
          roundingEl.textContent = data.rounding;
          roundingEl.hidden = !data.rounding;
          box.hidden = false;
          shown.value = data.total_tiyn;
        })
        .catch(function () { if (mine === ticket) { box.hidden = true; } });
    };
    var later = function () { clearTimeout(timer); timer = setTimeout(quote, 200); };
    saleForm.addEventListener("input", later);
    saleForm.addEventListener("change", later);
    if (!shown.value) { quote(); }  // a review page already shows the server's total
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
      var partly = state.status === "new" && state.paid_atomic > 0;
      statusEl.textContent = CCLive.label(partly ? "partly_paid" : state.status);
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
