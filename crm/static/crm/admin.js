/* Rally's admin behaviours, kept out of the pages so the Content-Security-Policy
   can forbid inline script. */
"use strict";

// A button or link with data-confirm asks before it acts.
document.addEventListener("click", function (event) {
  var target = event.target.closest("[data-confirm]");
  if (target && !window.confirm(target.dataset.confirm)) event.preventDefault();
});

// The import page polls its batch's progress until the worker finishes.
document.addEventListener("DOMContentLoaded", function () {
  var box = document.getElementById("import-progress");
  if (!box) return;
  var bar = document.getElementById("import-progress-bar");
  var text = document.getElementById("import-progress-text");
  var stages = {queued: "Waiting for a worker", checking: "Checking rows", writing: "Writing"};
  function poll() {
    fetch(box.dataset.url, {credentials: "same-origin"})
      .then(function (response) { return response.json(); })
      .then(function (data) {
        bar.value = data.percent;
        var stage = stages[data.stage] || data.status_label;
        text.textContent = stage + ": " + data.done.toLocaleString() + " of " + data.total.toLocaleString() + " rows (" + data.percent + "%)";
        if (data.finished) { window.location.reload(); } else { setTimeout(poll, 1000); }
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  poll();
});
