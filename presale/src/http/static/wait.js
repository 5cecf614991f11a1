// emta waiting page: keeps position, people ahead and the estimate current without a
// reload, by polling the status endpoint (served from each replica's cache) with backoff:
// every 2 s at first, growing by half up to 30 s, and faster again as the turn nears.
// When the turn comes, the queue closes or every unit left is promised (or a promise
// lapses), the page reloads once to show the form or the news.
(function () {
  "use strict";
  var root = document.querySelector("[data-status-url]");
  if (!root) return;
  var url = root.getAttribute("data-status-url");
  // What the page shows: it reloads only when the status says otherwise (another
  // replica a tick behind says the same again; it is not a reason to reload).
  function flag(name) { return root.getAttribute("data-" + name) === "true"; }
  var shown = { admitted: flag("admitted"), closed: flag("closed"), promised: flag("promised") };
  // A replica whose counters are behind the page's (its ticks failing, or just started)
  // is not believed over it: the queue never moves back.
  var serving = parseInt(root.getAttribute("data-serving") || "0", 10);
  // Closed is final: nothing more to wait for.
  if (shown.closed) return;
  var delay = 2000;
  function set(id, v) {
    var el = document.getElementById(id);
    if (el && v !== null && v !== undefined) el.textContent = String(v);
  }
  function poll() {
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 429 || r.status === 503) {
          var ra = parseInt(r.headers.get("retry-after") || "5", 10);
          delay = Math.max(delay, ra * 1000);
          throw new Error("busy");
        }
        return r.json();
      })
      .then(function (s) {
        if (typeof s.serving === "number" && s.serving < serving) return;
        serving = Math.max(serving, s.serving || 0);
        if (!!s.admitted !== shown.admitted || !!s.closed !== shown.closed ||
            !!s.promised !== shown.promised) { window.location.reload(); return; }
        set("ticket", s.ticket);
        set("ahead", s.ahead);
        if (s.eta_secs !== null) set("eta", Math.ceil(s.eta_secs / 60));
        delay = s.ahead !== null && s.ahead < 50 ? 2000 : Math.min(delay * 1.5, 30000);
      })
      .catch(function () { delay = Math.min(delay * 1.5, 30000); })
      .then(function () { setTimeout(poll, delay); });
  }
  setTimeout(poll, delay);
})();
