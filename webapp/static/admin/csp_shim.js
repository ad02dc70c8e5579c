/* Flask-Admin's templates carry inline handlers (onclick="return modelActions.execute('retry')",
 * onclick="return faHelpers.safeConfirm(...)") and javascript: links.  The admin's CSP runs only
 * same-origin or nonce'd scripts, so the browser blocks those: bulk actions would do nothing and a
 * delete would skip its confirmation.  This rebinds them as ordinary listeners, for the page as
 * loaded and for nodes added later (filters, select2). */
(function () {
  "use strict";

  function rebind(root) {
    if (!root || !root.querySelectorAll) { return; }
    var links = root.querySelectorAll('a[href^="javascript:"]');
    for (var i = 0; i < links.length; i++) {
      links[i].setAttribute("href", "#");
      links[i].setAttribute("data-vestnik-void", "1");
    }
    var handlers = root.querySelectorAll("[onclick]");
    for (var j = 0; j < handlers.length; j++) {
      var node = handlers[j];
      var code = node.getAttribute("onclick");
      node.removeAttribute("onclick");
      var m = code.match(/modelActions\.execute\('([^']+)'\)/);
      if (m) { node.setAttribute("data-vestnik-action", m[1]); continue; }
      m = code.match(/safeConfirm\('((?:[^'\\]|\\.)*)'\)/);
      if (m) { node.setAttribute("data-vestnik-confirm", m[1].replace(/\\(.)/g, "$1")); continue; }
      node.setAttribute("data-vestnik-void", "1");
    }
  }

  document.addEventListener("click", function (e) {
    var el = e.target.closest && e.target.closest("[data-vestnik-action],[data-vestnik-confirm],[data-vestnik-void]");
    if (!el) { return; }
    var name = el.getAttribute("data-vestnik-action");
    if (name) {
      e.preventDefault();
      window.modelActions.execute(name);
      return;
    }
    var question = el.getAttribute("data-vestnik-confirm");
    if (question) {
      if (!window.confirm(question)) { e.preventDefault(); }
      return;
    }
    if (el.tagName === "A") { e.preventDefault(); }
  });

  rebind(document);
  new MutationObserver(function (mutations) {
    mutations.forEach(function (m) {
      for (var k = 0; k < m.addedNodes.length; k++) {
        var n = m.addedNodes[k];
        if (n.nodeType === 1) { rebind(n.parentNode || n); }
      }
    });
  }).observe(document.documentElement, {childList: true, subtree: true});
}());
