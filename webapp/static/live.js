// Refreshes the "What was sent" page every 2 s by fetching its body as HTML
// rendered (and escaped) by the server. A static file, so the page's CSP can
// forbid inline scripts.
(function () {
  "use strict";
  var box = document.getElementById("live");
  var status = document.getElementById("live-status");
  if (!box) { return; }
  var busy = false;

  function refresh() {
    if (busy || document.hidden) { return; }
    busy = true;
    fetch(box.dataset.src, { headers: { "Accept": "text/html" }, cache: "no-store" })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        box.innerHTML = html;
        if (status) { status.textContent = "updated " + new Date().toLocaleTimeString(); }
      })
      .catch(function (err) {
        if (status) { status.textContent = "cannot refresh (" + err.message + "); is the demo still running?"; }
      })
      .finally(function () { busy = false; });
  }

  setInterval(refresh, 2000);
})();
