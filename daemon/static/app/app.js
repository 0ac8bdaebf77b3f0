// The officer's app: live search as the name is typed (results rendered by the daemon).
(function () {
  "use strict";
  var input = document.getElementById("q");
  var out = document.getElementById("results");
  if (!input || !out) { return; }
  var timer = null, asked = 0;
  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () {
      var mine = ++asked;
      fetch("/app/cari?frag=1&q=" + encodeURIComponent(input.value), {credentials: "same-origin"})
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null && mine === asked) { out.innerHTML = html; } });
    }, 150);
  });
})();
