// Small progressive enhancements; every page works without them.
document.addEventListener("DOMContentLoaded", function () {
  // Auto-submit forms that carry data-autosubmit (gateway redirects).
  document.querySelectorAll("form[data-autosubmit]").forEach(function (form) { form.submit(); });
  // Copy buttons: <button data-copy="text">.
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      if (navigator.clipboard) { navigator.clipboard.writeText(button.getAttribute("data-copy")); }
      button.classList.add("copied");
    });
  });
  // The phone menu: the button shows only with script (CSS hides the menu behind it on narrow screens).
  var toggle = document.querySelector(".menu-toggle"), menu = document.getElementById("menu");
  if (toggle && menu) {
    toggle.hidden = false;
    document.documentElement.classList.add("js");
    toggle.addEventListener("click", function () {
      var open = toggle.getAttribute("aria-expanded") !== "true";
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
      menu.classList.toggle("open", open);
    });
  }
  // Forms with data-confirm on a button: ask before a step that cannot be undone (refund, cancel).
  document.querySelectorAll("[data-confirm]").forEach(function (button) {
    button.addEventListener("click", function (event) {
      if (!window.confirm(button.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });
  // A checkbox named "<group>_enabled" shows the other "<group>_*" fields only while it is ticked
  // (the 54-FZ receipt settings while receipts are off); hidden fields are still submitted as they are.
  document.querySelectorAll("input[type=checkbox][name$='_enabled']").forEach(function (box) {
    var group = box.name.slice(0, -"enabled".length);
    var form = box.form;
    if (!form) { return; }
    var blocks = Array.prototype.filter.call(form.elements, function (el) {
      return el !== box && el.name && el.name.indexOf(group) === 0;
    }).map(function (el) { return el.closest(".field") || el; });
    function sync() { blocks.forEach(function (b) { b.hidden = !box.checked; }); }
    box.addEventListener("change", sync);
    sync();
  });
  // A server error under a field goes away as soon as the field is edited.
  document.querySelectorAll(".has-error input, .has-error select, .has-error textarea").forEach(function (input) {
    function clear() {
      var box = input.closest(".has-error");
      if (!box) { return; }
      box.classList.remove("has-error");
      box.querySelectorAll("[data-server-error], .error:not([id])").forEach(function (e) { e.remove(); });
    }
    input.addEventListener("input", clear);
    input.addEventListener("change", clear);
  });
});
