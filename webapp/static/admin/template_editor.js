/* The template editor: variables beside the form, live preview, Trix for email bodies,
 * a plain editor with a character counter for Telegram, "send test to me".
 * No inline scripts (the admin's CSP allows only nonce'd or same-origin ones). */
(function () {
  "use strict";
  var side = document.getElementById("te-side");
  if (!side) { return; }
  var byId = function (id) { return document.getElementById(id); };
  var cat = JSON.parse(byId("te-catalogue").textContent);
  var code = byId("code"), channel = byId("channel"), locale = byId("locale");
  var subject = byId("subject"), body = byId("body"), buttons = byId("buttons");
  var eventSel = byId("te-event"), clientInput = byId("te-client");
  var form = body.form;
  var lastFocus = body;
  var trix = null, trixInput = null, visual = false;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  // ------------------------------------------------------------ problems at the field

  function fieldBox(name) {
    var box = byId("te-problem-" + name);
    if (box) { return box; }
    var field = byId(name);
    if (!field) { return null; }
    box = el("div", {id: "te-problem-" + name, "class": "te-live-problem"});
    var anchor = name === "body" ? byId("te-body-extras") : field;
    anchor.parentNode.insertBefore(box, anchor.nextSibling);
    return box;
  }

  function showProblems(problems) {
    ["code", "channel", "locale", "subject", "body", "buttons", "client_id"].forEach(function (name) {
      var box = fieldBox(name);
      if (!box) { return; }
      box.textContent = "";
      (problems[name] || []).forEach(function (msg) { box.appendChild(el("div", {}, msg)); });
    });
  }

  // ------------------------------------------------------------ variables

  function eventsForCode() {
    return cat.codes[code.value.trim()] || [];
  }

  function fillEvents() {
    var using = eventsForCode();
    var names = using.length ? using : Object.keys(cat.events).sort();
    var keep = eventSel.value;
    eventSel.textContent = "";
    names.forEach(function (name) { eventSel.appendChild(el("option", {value: name}, name)); });
    if (names.indexOf(keep) >= 0) { eventSel.value = keep; }
  }

  function insert(text) {
    if (lastFocus === trix && trix && trix.editor) {
      trix.editor.insertString(text);
      trix.focus();
      return;
    }
    var field = lastFocus && lastFocus.tagName ? lastFocus : body;
    var start = field.selectionStart || 0, end = field.selectionEnd || 0;
    field.value = field.value.slice(0, start) + text + field.value.slice(end);
    field.selectionStart = field.selectionEnd = start + text.length;
    field.focus();
    field.dispatchEvent(new Event("input", {bubbles: true}));
  }

  function varButton(f) {
    var label = "{{ " + f.name + " }}";
    var btn = el("button", {type: "button", "class": "btn btn-light btn-sm te-var", "data-insert": label,
                            title: f.description || f.name}, label);
    var row = el("div", {"class": "te-var-row"});
    row.appendChild(btn);
    var example = f.example === null || f.example === undefined ? "" : JSON.stringify(f.example);
    var meta = f.type + (f.required ? "" : ", optional") + (example ? " · e.g. " + example : "");
    row.appendChild(el("small", {"class": "text-muted"}, " " + meta + (f.description ? " — " + f.description : "")));
    return row;
  }

  function fillVariables() {
    var box = byId("te-variables");
    box.textContent = "";
    var using = eventsForCode();
    if (!using.length) {
      box.appendChild(el("p", {"class": "small text-muted"},
        "No rule uses the code \"" + code.value + "\": a broadcast template, its data is given per broadcast. " +
        "The variables of the event chosen above are shown."));
    } else {
      box.appendChild(el("p", {"class": "small text-muted"}, "Used by: " + using.join(", ")));
    }
    box.appendChild(el("h6", {}, "Client"));
    cat.client.forEach(function (f) { box.appendChild(varButton(f)); });
    var ev = cat.events[eventSel.value];
    if (ev) {
      box.appendChild(el("h6", {"class": "mt-2"}, "Event " + eventSel.value));
      if (ev.description) { box.appendChild(el("p", {"class": "small"}, ev.description)); }
      ev.fields.forEach(function (f) { box.appendChild(varButton(f)); });
    }
    box.appendChild(el("h6", {"class": "mt-2"}, "Filters and conditions"));
    hintsFor(ev).forEach(function (h) {
      var row = el("div", {"class": "te-var-row"});
      row.appendChild(el("button", {type: "button", "class": "btn btn-light btn-sm te-var", "data-insert": h[0]}, h[0]));
      row.appendChild(el("small", {"class": "text-muted"}, " " + h[1]));
      box.appendChild(row);
    });
  }

  // The generic hints, written with this event's own fields where it has some.
  function hintsFor(ev) {
    var fields = ev ? ev.fields : [];
    var find = function (test) { for (var i = 0; i < fields.length; i++) { if (test(fields[i])) { return fields[i]; } } return null; };
    var time = find(function (f) { return f.type === "datetime"; });
    var money = find(function (f) { return f.type === "money"; });
    var currency = find(function (f) { return f.name === "currency"; });
    var optional = find(function (f) { return !f.required; });
    var hints = [];
    cat.filters.forEach(function (h) {
      var text = h[0];
      if (text.indexOf("starts_at|date") >= 0) {
        if (!time) { return; }
        text = text.replace("starts_at", time.name);
      } else if (text.indexOf("amount|money") >= 0) {
        if (!money) { return; }
        text = text.replace("amount", money.name).replace("(currency)", currency ? "(currency)" : "('RUB')");
      } else if (text.indexOf("{% if reason %}") >= 0) {
        if (!optional) { return; }
        text = text.replace("reason", optional.name);
      }
      hints.push([text, h[1]]);
    });
    return hints;
  }

  side.addEventListener("mousedown", function (e) {
    if (e.target.closest(".te-var")) { e.preventDefault(); }  // keep the editor's selection
  });
  side.addEventListener("click", function (e) {
    var btn = e.target.closest(".te-var");
    if (btn) { insert(btn.getAttribute("data-insert")); }
  });

  // ------------------------------------------------------------ Telegram: hints and counter

  var extras = el("div", {id: "te-body-extras", "class": "te-body-extras"});
  body.parentNode.insertBefore(extras, body.nextSibling);
  var modeBar = el("div", {"class": "btn-group btn-group-sm mb-1 te-modes", role: "group"});
  var btnVisual = el("button", {type: "button", "class": "btn btn-outline-secondary", id: "te-mode-visual"}, "Visual");
  var btnSource = el("button", {type: "button", "class": "btn btn-outline-secondary", id: "te-mode-source"},
                     "HTML source");
  modeBar.appendChild(btnVisual);
  modeBar.appendChild(btnSource);
  body.parentNode.insertBefore(modeBar, body);
  var counter = el("div", {id: "te-counter", "class": "small"});
  var hints = el("div", {id: "te-telegram-hints", "class": "small text-muted"},
                 "Telegram HTML: " + cat.telegram_tags.join("  ") + ". New lines are kept; no <p>, <div> or <br>.");
  extras.appendChild(counter);
  extras.appendChild(hints);
  var renderedLength = null;

  function updateCounter() {
    var n = body.value.length, max = cat.telegram_max_chars;
    var text = "Source: " + n + " / " + max + " characters";
    if (renderedLength !== null) { text += " · rendered with the example: " + renderedLength + " / " + max; }
    counter.textContent = text;
    counter.classList.toggle("text-danger", n > max || (renderedLength || 0) > max);
  }

  // ------------------------------------------------------------ email: Trix (visual) or HTML source

  // What Trix writes back unchanged; other HTML (style attributes, <p>, tables) it simplifies.
  var TRIX_TAGS = /^(div|br|strong|b|em|i|del|a|ul|ol|li|h1|blockquote|pre)$/i;

  function trixKeepsIt(html) {
    var jinja = html.match(/\{[{%#][\s\S]*?[}%#]\}/g) || [];
    if (jinja.some(function (t) { return /[<>&]/.test(t); })) { return "jinja"; }
    var doc = new DOMParser().parseFromString(html, "text/html");
    var all = doc.body.querySelectorAll("*");
    for (var i = 0; i < all.length; i++) {
      var node = all[i];
      if (!TRIX_TAGS.test(node.tagName)) { return "tags"; }
      for (var j = 0; j < node.attributes.length; j++) {
        if (node.attributes[j].name !== "href") { return "tags"; }
      }
    }
    return "ok";
  }

  function ensureTrix(then) {
    if (trix) { if (trix.editor) { then(); } else { trix.addEventListener("trix-initialize", then, {once: true}); } return; }
    trixInput = el("input", {type: "hidden", id: "te-trix-input"});
    trix = el("trix-editor", {input: "te-trix-input", "class": "trix-content form-control te-trix", id: "te-trix"});
    body.parentNode.insertBefore(trixInput, body);
    body.parentNode.insertBefore(trix, body);
    trix.addEventListener("trix-initialize", function () {
      // Allow {{ payment_url }} as a link target: the browser's URL check would refuse it.
      var href = trix.toolbarElement.querySelector("input[name=href]");
      if (href) { href.type = "text"; }
      then();
    }, {once: true});
    trix.addEventListener("trix-file-accept", function (e) { e.preventDefault(); });  // no attachments
    trix.addEventListener("trix-change", function () {
      if (!visual) { return; }
      body.value = trixInput.value;
      schedulePreview();
    });
    trix.addEventListener("focus", function () { lastFocus = trix; });
  }

  function setVisual(on, ask) {
    if (on) {
      var verdict = trixKeepsIt(body.value);
      if (verdict === "jinja") {
        if (ask) { window.alert("This body has template tags with <, > or &: edit it as HTML source."); }
        on = false;
      } else if (verdict === "tags" && !(ask && window.confirm(
          "The visual editor keeps bold, italic, lists, links, headings and quotes only; " +
          "other HTML (style attributes, paragraphs, tables) will be simplified. Continue?"))) {
        on = false;
      }
    }
    visual = on;
    btnVisual.classList.toggle("active", on);
    btnSource.classList.toggle("active", !on);
    if (on) {
      ensureTrix(function () {
        trixInput.value = body.value;
        trix.editor.loadHTML(body.value);
        trix.hidden = false;
        trix.toolbarElement.hidden = false;
        body.hidden = true;
      });
    } else {
      if (trix) { trix.hidden = true; if (trix.toolbarElement) { trix.toolbarElement.hidden = true; } }
      body.hidden = false;
    }
  }

  btnVisual.addEventListener("click", function () { setVisual(true, true); });
  btnSource.addEventListener("click", function () { setVisual(false, false); });

  function applyChannel() {
    var isEmail = channel.value === "email";
    var isTelegram = channel.value === "telegram";
    modeBar.hidden = !isEmail;
    counter.hidden = hints.hidden = !isTelegram;
    subject.closest(".form-group").hidden = !isEmail;
    if (isEmail) {
      setVisual(trixKeepsIt(body.value) === "ok", false);
    } else {
      setVisual(false, false);
    }
    updateCounter();
  }

  // ------------------------------------------------------------ live preview

  var timer = null, seq = 0;

  function draftData() {
    var data = new FormData();
    data.append("code", code.value);
    data.append("channel", channel.value);
    data.append("locale", locale.value);
    data.append("subject", subject.value);
    data.append("body", body.value);
    if (buttons) { data.append("buttons", buttons.value); }
    data.append("event", eventSel.value);
    data.append("client_id", clientInput.value);
    return data;
  }

  function post(url, data) {
    return fetch(url, {method: "POST", body: data, credentials: "same-origin",
                       headers: {"X-CSRFToken": side.getAttribute("data-csrf"), "Accept": "application/json"}});
  }

  function frameDoc(answer) {
    var style = "<style>body{font:14px/1.45 -apple-system,Segoe UI,Roboto,sans-serif;margin:8px;color:#222}" +
                ".tg{white-space:pre-wrap;background:#eef6ff;border-radius:10px;padding:8px 10px}</style>";
    if (answer.html !== null && answer.html !== undefined) { return style + answer.html; }
    if (answer.text === null || answer.text === undefined) { return style + "<p>(nothing rendered)</p>"; }
    // Telegram HTML is already sanitised server-side to Telegram's tags; the frame is sandboxed anyway.
    var text = channel.value === "telegram" ? answer.text
      : answer.text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
    return style + '<div class="tg">' + text + "</div>";
  }

  function runPreview() {
    var mine = ++seq;
    var status = byId("te-preview-status");
    status.textContent = "rendering…";
    post(side.getAttribute("data-preview-url"), draftData()).then(function (resp) {
      if (!resp.ok) { throw new Error("HTTP " + resp.status); }
      return resp.json();
    }).then(function (answer) {
      if (mine !== seq) { return; }  // an older answer arriving late
      showProblems(answer.problems || {});
      var problemCount = Object.keys(answer.problems || {}).length;
      status.textContent = problemCount ? "with problems" : "up to date";
      byId("te-preview-meta").textContent = answer.event || answer.client
        ? "Event " + (answer.event || "—") + " · client " + (answer.client || "—") : "";
      byId("te-preview-subject").textContent = answer.subject ? "Subject: " + answer.subject : "";
      byId("te-preview-frame").srcdoc = frameDoc(answer);
      showButtons(answer.buttons || []);
      renderedLength = answer.length === undefined ? null : answer.length;
      updateCounter();
    }).catch(function (err) {
      if (mine === seq) { status.textContent = "preview failed: " + err.message; }
    });
  }

  // The message's inline keyboard as Telegram lays it out: a row per line, a link marked with ↗.
  function showButtons(rows) {
    var box = byId("te-preview-buttons");
    box.textContent = "";
    box.hidden = !rows.length;
    rows.forEach(function (row) {
      var line = el("div", {"class": "te-kb-row"});
      row.forEach(function (b) {
        var key = el("span", {"class": "te-kb-button", title: b.url ? b.url : "callback: " + b.callback},
                     b.text + (b.url ? " ↗" : ""));
        key.setAttribute("data-kind", b.url ? "url" : "callback");
        line.appendChild(key);
      });
      box.appendChild(line);
    });
  }

  function schedulePreview() {
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(runPreview, 250);
  }

  [code, locale, subject, body, clientInput].concat(buttons ? [buttons] : []).forEach(function (f) {
    f.addEventListener("input", function () { if (f === body) { updateCounter(); } schedulePreview(); });
  });
  [subject, body].forEach(function (f) { f.addEventListener("focus", function () { lastFocus = f; }); });
  code.addEventListener("change", function () { fillEvents(); fillVariables(); schedulePreview(); });
  code.addEventListener("input", function () { fillEvents(); fillVariables(); });
  channel.addEventListener("change", function () { applyChannel(); schedulePreview(); });
  locale.addEventListener("change", schedulePreview);
  eventSel.addEventListener("change", function () { fillVariables(); schedulePreview(); });

  // ------------------------------------------------------------ send test to me

  byId("te-send-test").addEventListener("click", function () {
    var result = byId("te-send-result");
    result.className = "ml-2";
    result.textContent = "sending…";
    post(side.getAttribute("data-send-test-url"), draftData()).then(function (resp) {
      return resp.json().then(function (answer) { return {status: resp.status, answer: answer}; });
    }).then(function (r) {
      result.textContent = "";
      if (r.answer.ok) {
        result.className = "ml-2 text-success";
        result.appendChild(document.createTextNode("Sent to " + r.answer.address + " "));
      } else {
        result.className = "ml-2 text-danger";
        result.appendChild(document.createTextNode((r.answer.error || "not sent") + " "));
      }
      if (r.answer.url) { result.appendChild(el("a", {href: r.answer.url}, "(in the history)")); }
    }).catch(function (err) {
      result.className = "ml-2 text-danger";
      result.textContent = "not sent: " + err.message;
    });
  });

  if (form) {
    form.addEventListener("submit", function () { if (visual && trixInput) { body.value = trixInput.value; } });
  }

  fillEvents();
  fillVariables();
  applyChannel();
  runPreview();
}());
