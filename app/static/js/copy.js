/* Copy buttons: <button data-copy="input-id" data-copied="Copied" hidden>. Without JS the field stays selectable.
   Also the two sides of progressive enhancement: [data-js-only] is shown, [data-no-js] hidden. */
(function () {
  "use strict";
  var buttons = document.querySelectorAll("[data-copy]");
  for (var i = 0; i < buttons.length; i++) buttons[i].hidden = false;
  // Sentences that are only true with JavaScript (e.g. "this page updates by itself").
  var scripted = document.querySelectorAll("[data-js-only]");
  for (var j = 0; j < scripted.length; j++) scripted[j].hidden = false;
  // Fallbacks JavaScript makes needless (e.g. "show changes" where the list follows the ticks).
  var fallbacks = document.querySelectorAll("[data-no-js]");
  for (var k = 0; k < fallbacks.length; k++) fallbacks[k].hidden = true;
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-copy]");
    if (!button) return;
    var input = document.getElementById(button.getAttribute("data-copy"));
    if (!input) return;
    input.select();
    var done = function () { button.textContent = button.getAttribute("data-copied"); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(done, function () {});
    } else if (document.execCommand("copy")) {
      done();
    }
  });
})();
