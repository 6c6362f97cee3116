// Return pages: while the payment is open (new / awaiting payment), ask the server for its status and show
// the matching message without a reload, with the time waited so far; after data-wait-notice seconds the
// "what happens next" notice shows. Stops once the payment settles or after about ten minutes.
(function () {
  "use strict";
  function groupOf(status) {
    if (status === "paid" || status === "pending_return" || status === "returned") { return "paid"; }
    if (status === "new" || status === "inpay") { return "open"; }
    return status;
  }
  function show(root, data) {
    var group = groupOf(data.status);
    root.setAttribute("data-status", data.status);
    root.querySelectorAll("[data-when]").forEach(function (el) {
      el.hidden = el.getAttribute("data-when") !== group;
    });
    root.querySelectorAll("[data-status-label]").forEach(function (el) {
      el.textContent = data.status_label;
      el.className = "status status-" + data.status;
    });
    root.querySelectorAll("[data-open-only]").forEach(function (el) { el.hidden = !data.open; });
    var balance = root.querySelector("[data-balance]");
    if (balance && data.balance) { balance.textContent = data.balance; }
  }
  function clock(seconds) {
    var m = Math.floor(seconds / 60), s = seconds % 60;
    return m + ":" + (s < 10 ? "0" : "") + s;
  }
  document.addEventListener("DOMContentLoaded", function () {
    var root = document.getElementById("payment-return");
    if (!root || !root.getAttribute("data-poll-url")) { return; }
    var url = root.getAttribute("data-poll-url");
    var delay = 1000, waited = 0, limit = 10 * 60 * 1000, settled = false;
    var notice = parseInt(root.getAttribute("data-wait-notice"), 10) || 120;
    var before = parseInt(root.getAttribute("data-waited"), 10) || 0;  // seconds waited before this page
    var started = Date.now();
    var elapsed = root.querySelector("[data-elapsed]"), slow = root.querySelector("[data-slow]");
    function tick() {
      if (settled) { return; }
      var seconds = before + Math.floor((Date.now() - started) / 1000);
      if (elapsed) { elapsed.textContent = clock(seconds); }
      if (slow && seconds >= notice) { slow.hidden = false; }
      setTimeout(tick, 1000);
    }
    tick();
    function poll() {
      fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}, cache: "no-store"})
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (data) { show(root, data); if (!data.open) { settled = true; return; } }
          schedule();
        })
        .catch(schedule);
    }
    function schedule() {
      waited += delay;
      if (waited > limit) { return; }
      setTimeout(poll, delay);
      delay = Math.min(delay * 1.5, 10000);  // back off: 1 s, 1.5 s, ... at most every 10 s
    }
    schedule();
  });
})();
