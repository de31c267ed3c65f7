/* A segment's page: the rules are shown only while "Rule-based" is the kind
   chosen (the add page); a static list's members are chosen by hand instead.
   Kept out of the page so the Content-Security-Policy can forbid inline script. */
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  var rules = document.querySelector("fieldset.segment-rules");
  var choices = document.querySelectorAll("input[name='kind']");
  if (!rules || !choices.length) return;
  function show() {
    var chosen = document.querySelector("input[name='kind']:checked");
    rules.style.display = chosen && chosen.value === "static" ? "none" : "";
  }
  choices.forEach(function (choice) { choice.addEventListener("change", show); });
  show();
});
