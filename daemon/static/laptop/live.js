/* Keeps the laptop page current from the daemon's events (GET /api/events, same
   origin, the page's session cookie): a change of state fetches the page again and
   swaps <main> (at most every REFRESH_MS); a session's progress is drawn at once.
   Without scripts the page is complete; it just does not update by itself. */
(function () {
  "use strict";
  if (!window.EventSource || !window.fetch || !window.DOMParser) { return; }
  var REFRESH_MS = 1500;
  var STATE_EVENTS = ["sync.finished", "changes.received", "conflicts", "uplink",
                      "custody", "clock.warning"];
  var timer = null;
  var flying = {};

  function live(on) {
    var el = document.getElementById("live");
    if (el) { el.textContent = el.getAttribute(on ? "data-on" : "data-off"); }
  }

  function refresh() {
    timer = null;
    fetch(window.location.pathname, {credentials: "same-origin", cache: "no-store"})
      .then(function (reply) { return reply.ok ? reply.text() : null; })
      .then(function (text) {
        if (!text) { return; }
        var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("page");
        var current = document.getElementById("page");
        if (fresh && current) { current.replaceWith(fresh); live(true); drawFlying(); }
      })
      .catch(function () { live(false); });
  }

  function soon() { if (timer === null) { timer = setTimeout(refresh, REFRESH_MS); } }

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, function (_, name) {
      return values[name] === undefined ? "" : String(values[name]);
    });
  }

  function number(n, digits) {
    return Number(n).toLocaleString(document.documentElement.lang || "id",
                                    {maximumFractionDigits: digits || 0});
  }

  function drawFlying() {
    var section = document.getElementById("flight");
    if (!section) { return; }
    section.textContent = "";
    Object.keys(flying).forEach(function (key) {
      var f = flying[key];
      var line = document.createElement("p");
      line.className = "flying";
      var names = JSON.parse(section.getAttribute("data-names") || "{}");
      var name = names[f.peer] || (f.peer ? f.peer.slice(0, 8) : "?");
      if (f.changes_offered === null) {
        line.textContent = fill(section.getAttribute("data-comparing"), {name: name});
      } else {
        var bar = document.createElement("progress");
        bar.max = f.changes_offered || 1;
        bar.value = f.changes_offered ? f.changes_received : 1;
        line.appendChild(bar);
        line.appendChild(document.createTextNode(" " + fill(
          section.getAttribute("data-receiving"),
          {name: name, got: number(f.changes_received), offered: number(f.changes_offered),
           mb: number(f.bytes_received / 1e6, 1)})));
      }
      section.appendChild(line);
    });
  }

  var events = new EventSource("/api/events");
  events.onopen = function () { live(true); };
  events.onerror = function () { live(false); };
  STATE_EVENTS.forEach(function (kind) { events.addEventListener(kind, soon); });
  events.addEventListener("sync.progress", function (message) {
    var f = JSON.parse(message.data);
    flying[f.peer + "/" + f.direction] = f;
    drawFlying();
  });
  events.addEventListener("sync.finished", function (message) {
    var f = JSON.parse(message.data);
    delete flying[f.peer + "/" + f.direction];
    drawFlying();
  });
}());
