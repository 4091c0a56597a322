// The terminal's product grid: a tap on a product adds one; category chips filter in place
// (the quantities already typed stay in the form). Without this script the chips are links
// that filter on the server, and the quantity fields are typed in.
(function () {
  "use strict";
  var form = document.getElementById("cart-form");
  if (!form) { return; }
  var mark = function (input) {
    input.closest(".product-tile").classList.toggle("in-cart", parseInt(input.value, 10) > 0);
  };
  Array.prototype.forEach.call(form.querySelectorAll(".product-pick"), function (pick) {
    pick.addEventListener("click", function (e) {
      e.preventDefault();
      var input = document.getElementById(pick.dataset.target);
      var qty = parseInt(input.value, 10) || 0;
      if (qty < 999) { input.value = String(qty + 1); }
      input.dispatchEvent(new Event("input", { bubbles: true }));
    });
  });
  Array.prototype.forEach.call(form.querySelectorAll("input.qty"), mark);
  form.addEventListener("input", function (e) {
    if (e.target.classList && e.target.classList.contains("qty")) { mark(e.target); }
  });
  var chips = document.getElementById("category-chips");
  if (!chips) { return; }
  chips.addEventListener("click", function (e) {
    var chip = e.target.closest(".chip");
    var groups = form.querySelectorAll(".product-group");
    // A page the server filtered lacks the other groups: follow the link to fetch them.
    if (!chip || chips.dataset.filtered === "1" || groups.length === 0) { return; }
    e.preventDefault();
    var wanted = chip.dataset.category;
    Array.prototype.forEach.call(groups, function (group) {
      group.hidden = wanted !== "" && group.dataset.category !== wanted;
    });
    Array.prototype.forEach.call(chips.querySelectorAll(".chip"), function (c) {
      c.classList.toggle("current", c === chip);
    });
  });
})();
