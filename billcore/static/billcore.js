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
});
