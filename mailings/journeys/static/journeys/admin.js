/* Journey pages: show only the fields that matter for the chosen trigger and for
   each step's kind. A static file, since the Content-Security-Policy forbids
   inline script; without it every field stays visible and still works. */
(function () {
  "use strict";

  var STEP_FIELDS = {
    email: [],
    wait: ["wait_days", "wait_weekday", "wait_hour"],
    branch: ["condition", "link_url", "interest", "branch_to"],
    tag_add: ["tag"],
    tag_remove: ["tag"],
    interest_add: ["interest"],
    interest_remove: ["interest"],
    segment_add: ["segment"],
    segment_remove: ["segment"],
    end: []
  };
  var OPTIONAL = ["wait_days", "wait_weekday", "wait_hour", "condition", "link_url",
                  "interest", "branch_to", "tag", "segment"];
  var TRIGGER_FIELDS = {
    interest: "trigger_interest",
    partner: "trigger_partner",
    segment: "trigger_segment",
    anniversary: "trigger_days"
  };

  function showStep(row) {
    var kind = row.querySelector("select[name$='-kind']");
    if (!kind) { return; }
    var wanted = STEP_FIELDS[kind.value] || OPTIONAL;
    var condition = row.querySelector("select[name$='-condition']");
    OPTIONAL.forEach(function (name) {
      var cell = row.querySelector("td.field-" + name);
      if (!cell) { return; }
      var shown = wanted.indexOf(name) !== -1;
      if (shown && kind.value === "branch" && condition) {
        if (name === "link_url") { shown = condition.value === "clicked_link"; }
        if (name === "interest") { shown = condition.value === "holds_interest"; }
      }
      cell.classList.toggle("rally-step-unused", !shown);
    });
  }

  function showTrigger() {
    var trigger = document.getElementById("id_trigger");
    if (!trigger) { return; }
    Object.keys(TRIGGER_FIELDS).forEach(function (key) {
      var row = document.querySelector(".form-row.field-" + TRIGGER_FIELDS[key]);
      if (row) { row.hidden = trigger.value !== key; }
    });
    var entry = document.getElementById("id_entry");
    var again = document.querySelector(".form-row.field-reentry_days");
    if (entry && again) { again.hidden = entry.value !== "again"; }
  }

  function showAll() {
    document.querySelectorAll("#steps-group tr.form-row").forEach(showStep);
    showTrigger();
  }

  document.addEventListener("change", function (event) {
    var row = event.target.closest && event.target.closest("#steps-group tr.form-row");
    if (row) { showStep(row); }
    if (event.target.id === "id_trigger" || event.target.id === "id_entry") { showTrigger(); }
  });
  document.addEventListener("formset:added", showAll);
  document.addEventListener("DOMContentLoaded", showAll);
})();
