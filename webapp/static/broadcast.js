// Live progress of one broadcast in the admin: polls its JSON endpoint every
// second and fills the numbers in. A static file, so the admin's CSP can
// forbid inline scripts. Reloads the page once the state changes, so the
// action buttons match it.
(function () {
  "use strict";
  var box = document.getElementById("progress");
  if (!box) { return; }
  var shown = box.dataset.status;
  var testDone = box.dataset.testDone === "1";
  var stamp = document.getElementById("progress-updated");
  var busy = false;

  function set(id, value) {
    var el = document.getElementById(id);
    if (el) { el.textContent = value === null || value === undefined ? "—" : String(value); }
  }

  function refresh() {
    if (busy || document.hidden || shown === "completed" || shown === "canceled") { return; }
    busy = true;
    fetch(box.dataset.src, { headers: { "Accept": "application/json" }, cache: "no-store", credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (p) {
        set("p-status", p.status + (p.stage ? " (" + p.stage + " stage)" : ""));
        set("p-sent", p.sent);
        set("p-failed", p.failed);
        set("p-pending", p.pending);
        set("p-canceled", p.canceled);
        set("p-planned", p.planned_messages);
        var reason = document.getElementById("p-reason");
        if (reason) { reason.hidden = !p.paused_reason; reason.textContent = p.paused_reason || ""; }
        if (stamp) { stamp.textContent = "updated " + new Date().toLocaleTimeString(); }
        // A new state brings other buttons (e.g. "Send to everyone" once the test is done).
        if (p.status !== shown || p.test_done !== testDone) {
          shown = p.status; testDone = p.test_done; window.location.reload();
        }
      })
      .catch(function (err) { if (stamp) { stamp.textContent = "cannot refresh (" + err.message + ")"; } })
      .finally(function () { busy = false; });
  }

  setInterval(refresh, 1000);
})();
