/* The mailing page's live progress while it sends, kept out of the page so the
   Content-Security-Policy can forbid inline script. */
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  var box = document.getElementById("rally-progress");
  if (!box || !box.dataset.live) return;
  function show(data) {
    box.parentNode.querySelectorAll("[data-progress]").forEach(function (el) {
      var key = el.dataset.progress;
      if (key === "eta") el.textContent = data.eta_seconds ? data.eta_seconds + "s" : "—";
      else if (key in data) el.textContent = data[key];
      if (key === "esp_outage") el.hidden = !data[key];
    });
    box.querySelector("[data-progress-bar]").value = data.done_percent;
    var note = document.querySelector("[data-progress-note]");
    if (note && data.recipients !== null) note.textContent = data.recipients + " recipients.";
    return data.status === "sending";
  }
  function poll() {
    fetch(box.dataset.url, {credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (data) { if (show(data)) setTimeout(poll, 2000); })
      .catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, 2000);
});
