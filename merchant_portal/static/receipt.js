// The receipt's print button (a script file: the CSP forbids inline handlers).
(function () {
  "use strict";
  var button = document.getElementById("print-receipt");
  if (!button) { return; }
  button.hidden = false;
  button.addEventListener("click", function () { window.print(); });
})();
