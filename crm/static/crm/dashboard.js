/* The admin home: live progress of the mailings sending now, read from each
   mailing's progress.json (as the mailing's own page does), kept out of the
   page so the Content-Security-Policy can forbid inline script. */
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  var number = new Intl.NumberFormat("en-GB");

  function minutes(seconds) {
    if (seconds < 90) return "about a minute left";
    return "about " + Math.round(seconds / 60) + " minutes left";
  }

  document.querySelectorAll("[data-progress-url]").forEach(function (row) {
    var bar = row.querySelector("progress");
    var text = row.querySelector("[data-progress-text]");
    var status = row.querySelector("[data-progress-status]");

    function show(data) {
      if (data.recipients) {
        bar.value = data.done_percent;
        var words = number.format(data.sent) + " of " + number.format(data.recipients) +
          " sent (" + data.done_percent + "%)";
        if (data.failed) words += ", " + number.format(data.failed) + " failed";
        if (data.status === "sending" && data.eta_seconds) words += ", " + minutes(data.eta_seconds);
        text.textContent = words + ".";
      }
      status.textContent = data.status_label;
      return data.status === "sending";
    }

    function poll() {
      fetch(row.dataset.progressUrl, {credentials: "same-origin"})
        .then(function (response) {
          if (!response.ok) throw new Error(response.status);
          return response.json();
        })
        .then(function (data) { if (show(data)) setTimeout(poll, 3000); })
        .catch(function () { setTimeout(poll, 10000); });
    }
    poll();
  });
});
