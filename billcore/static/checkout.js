// "Add funds": show the commission and the total as the amount is typed.
// Same rule as billcore.money.commission on the server: commission = fixed + amount * percent / 100,
// rounded once, half up, to the currency's minor unit. Integer (BigInt) arithmetic in minor units, so
// no binary floating point ever touches money. The server recomputes everything on submit.
(function () {
  "use strict";
  // "1234.5" -> 123450n for 2 digits; null when not an amount or too precise.
  function toMinor(text, digits) {
    var s = String(text || "").replace(/\s+/g, "").replace(",", ".");
    var m = /^(\d{1,16})(?:\.(\d*))?$/.exec(s);
    if (!m) { return null; }
    var frac = m[2] || "";
    if (frac.length > digits) { return null; }
    while (frac.length < digits) { frac += "0"; }
    return BigInt(m[1] + frac);
  }
  // "2.5" (percent, up to 4 decimals) -> 25000n (percent * 10^4)
  function percentScaled(text) {
    var m = /^(\d+)(?:\.(\d{0,4}))?$/.exec(String(text || "0"));
    if (!m) { return 0n; }
    var frac = (m[2] || "");
    while (frac.length < 4) { frac += "0"; }
    return BigInt(m[1] + frac);
  }
  // The page's language writes money as the server's templating.money does: "1 100,00 ₽" (Russian,
  // no-break spaces) or "1 100.00 RUB" (English); data-lang and data-suffix come from the server.
  var LANG = "en", SUFFIX = null;
  function fromMinor(value, digits, currency) {
    var s = value.toString();
    while (s.length <= digits) { s = "0" + s; }
    var whole = s.slice(0, s.length - digits), frac = s.slice(s.length - digits);
    if (LANG === "ru") {
      whole = whole.replace(/\B(?=(\d{3})+(?!\d))/g, "\u00a0");
      return (digits ? whole + "," + frac : whole) + (SUFFIX !== null ? SUFFIX : "\u00a0" + currency);
    }
    whole = whole.replace(/\B(?=(\d{3})+(?!\d))/g, " ");
    return (digits ? whole + "." + frac : whole) + " " + currency;
  }
  function commissionMinor(amount, fixed, pct) {
    // amount * pct / (100 * 10^4), rounded half up (all values are non-negative)
    var den = 1000000n, num = amount * pct, q = num / den;
    if ((num % den) * 2n >= den) { q += 1n; }
    return fixed + q;
  }
  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("add-funds");
    if (!form) { return; }
    LANG = form.getAttribute("data-lang") || "en";
    if (form.hasAttribute("data-suffix")) { SUFFIX = form.getAttribute("data-suffix"); }
    var autopay = document.getElementById("autopay-field");
    var amountInput = form.querySelector("#amount");
    var commissionCell = document.getElementById("live-commission");
    var totalCell = document.getElementById("live-total-value");
    var errorBox = document.getElementById("amount-live-error");
    function update() {
      var radio = form.querySelector("input[name=paymethod]:checked");
      errorBox.hidden = true;
      if (autopay) {  // offered only for a method that can top up automatically
        autopay.hidden = !(radio && radio.dataset.recurring);
        if (autopay.hidden) { autopay.querySelector("input").checked = false; }
      }
      commissionCell.textContent = "—";
      totalCell.textContent = "—";
      if (!radio || !amountInput.value.trim()) { return; }
      var digits = parseInt(radio.dataset.digits, 10), cur = radio.dataset.currency;
      var amount = toMinor(amountInput.value, digits);
      var problem = null;
      if (amount === null || amount <= 0n) {
        problem = errorBox.dataset.msgFormat;
      } else if (radio.dataset.min && amount < toMinor(radio.dataset.min, digits)) {
        problem = errorBox.dataset.msgMin.replace("{amount}", radio.dataset.minText);
      } else if (radio.dataset.max && amount > toMinor(radio.dataset.max, digits)) {
        problem = errorBox.dataset.msgMax.replace("{amount}", radio.dataset.maxText);
      }
      if (problem) {
        errorBox.textContent = problem;
        errorBox.hidden = false;
        return;
      }
      var fee = commissionMinor(amount, toMinor(radio.dataset.fixed, digits), percentScaled(radio.dataset.percent));
      commissionCell.textContent = fromMinor(fee, digits, cur);
      totalCell.textContent = fromMinor(amount + fee, digits, cur);
    }
    amountInput.addEventListener("input", update);
    form.querySelectorAll("input[name=paymethod]").forEach(function (r) { r.addEventListener("change", update); });
    update();
  });
})();
