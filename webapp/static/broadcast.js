// Live progress of one broadcast in the admin: polls its JSON endpoint every
// second and fills in the numbers, the bar of each channel and the estimated
// end. A static file, so the admin's CSP can forbid inline scripts. Reloads
// the page once the state changes, so the action buttons match it.
(function () {
  "use strict";
  var box = document.getElementById("progress");
  if (!box) { return; }
  var shown = box.dataset.status;
  var testDone = box.dataset.testDone === "1";
  var stamp = document.getElementById("progress-updated");
  var busy = false;
  // Once the admin submits a form here (schedule, start, pause...), the page is being left: a poll
  // that sees the new state must not reload it, or the reload races the form's own redirect and one
  // of the two pages shows without the flash message that says what happened.
  var leaving = false;
  document.addEventListener("submit", function (e) { if (!e.defaultPrevented) { leaving = true; } });
  window.addEventListener("pagehide", function () { leaving = true; });

  function set(id, value) {
    var el = document.getElementById(id);
    if (el) { el.textContent = value === null || value === undefined ? "—" : String(value); }
  }

  function pct(n, total) { return (total ? (100 * n / total) : 0).toFixed(2) + "%"; }

  function channelText(c) {
    if (c.text) { return c.text; }  // in the admin's language (webapp/admin/broadcasts.py)
    var parts = [c.sent + " sent", c.failed + " failed" + (c.resent ? " (" + c.resent + " resent)" : ""),
                 c.waiting + " waiting"];
    if (c.canceled) { parts.push(c.canceled + " canceled"); }
    if (c.rate_per_min !== null) { parts.push(c.rate_per_min + " a minute"); }
    if (c.seconds_left !== null) { parts.push("ends in " + c.ends_in); }
    return parts.join(" · ");
  }

  function showChannels(channels) {
    var holder = document.getElementById("p-channels");
    if (!holder) { return; }
    channels.forEach(function (c) {
      var row = holder.querySelector('[data-channel="' + c.channel + '"]');
      if (!row) { return; }  // a channel the page did not know: the reload on a state change brings it
      row.querySelector(".p-ch-text").textContent = channelText(c);
      var bar = row.querySelector(".progress-stack");
      bar.setAttribute("aria-label", c.label || (c.channel + ": " + c.sent + " sent, " + c.failed + " failed, " +
                       c.waiting + " waiting of " + c.total));
      bar.querySelector(".seg-sent").style.width = pct(c.sent, c.total);
      bar.querySelector(".seg-failed").style.width = pct(c.failed, c.total);
      bar.querySelector(".seg-canceled").style.width = pct(c.canceled, c.total);
    });
  }

  function showEstimate(e) {
    var line = document.getElementById("p-eta");
    if (!line || !e) { return; }
    line.hidden = !e.ends_at;
    if (!e.ends_at) { return; }
    set("p-ends-in", e.ends_in);
    var at = document.getElementById("p-ends-at");
    at.setAttribute("datetime", e.ends_at);
    at.textContent = e.ends_at.slice(0, 16).replace("T", " ");
    set("p-decided", e.decided_by);
  }

  function refresh() {
    if (leaving || busy || document.hidden || shown === "completed" || shown === "canceled") { return; }
    busy = true;
    fetch(box.dataset.src, { headers: { "Accept": "application/json" }, cache: "no-store", credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (p) {
        set("p-status", p.status_text || (p.status + (p.stage ? " (" + p.stage + " stage)" : "")));
        set("p-sent", p.sent);
        set("p-failed", p.failed);
        set("p-pending", p.pending);
        set("p-canceled", p.canceled);
        set("p-planned", p.planned_messages);
        if (p.estimate) { showChannels(p.estimate.channels); showEstimate(p.estimate); }
        var reason = document.getElementById("p-reason");
        if (reason) { reason.hidden = !p.paused_reason; reason.textContent = p.paused_reason || ""; }
        if (stamp) { stamp.textContent = (box.dataset.updated || "updated") + " " + new Date().toLocaleTimeString(); }
        // A new state brings other buttons (e.g. "Send to everyone" once the test is done).
        if (!leaving && (p.status !== shown || p.test_done !== testDone)) {
          shown = p.status; testDone = p.test_done; window.location.reload();
        }
      })
      .catch(function (err) { if (stamp) { stamp.textContent = "cannot refresh (" + err.message + ")"; } })
      .finally(function () { busy = false; });
  }

  setInterval(refresh, 1000);
})();
