// The profile page: while a Telegram connect link waits for "Start", ask the
// server every 2 s whether it was used, and reload to show the new state.
// A static file, so the page's CSP can forbid inline scripts.
(function () {
  "use strict";
  var wait = document.querySelector("[data-tg-wait]");
  if (!wait) { return; }
  var url = wait.dataset.statusUrl;
  var timer = setInterval(function () {
    if (document.hidden) { return; }
    fetch(url, { headers: { "Accept": "application/json" }, cache: "no-store", credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : { connected: false }; })
      .then(function (state) {
        if (state.connected) { clearInterval(timer); window.location.reload(); }
      })
      .catch(function () { /* the next tick tries again */ });
  }, 2000);
})();
