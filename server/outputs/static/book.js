// fbproxy booking form: progressive enhancement only. Without this file the
// form works the same; with it the guest's time zone is detected and the
// pickers apply themselves.
(function () {
  "use strict";
  var zonePicker = document.getElementById("tz");
  if (zonePicker && zonePicker.hasAttribute("data-detect")) {
    var detected = "";
    try {
      detected = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    } catch (ignored) { /* an old browser: keep the page's zone */ }
    var known = Array.prototype.some.call(zonePicker.options, function (option) {
      return option.value === detected;
    });
    if (known && detected !== zonePicker.value) {
      var query = new URLSearchParams(window.location.search);
      query.set("tz", detected);
      window.location.replace(window.location.pathname + "?" + query.toString() +
                              window.location.hash);
      return;
    }
  }
  document.querySelectorAll("[data-js-hide]").forEach(function (element) {
    element.hidden = true;
  });
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
  var bookingForm = document.getElementById("booking-form");
  if (bookingForm) {
    bookingForm.addEventListener("submit", function () {
      var button = bookingForm.querySelector("button[type=submit]");
      // One booking per click: a second click would only meet a 409.
      // The words come from the page, in its language.
      var busy = button.getAttribute("data-busy") || button.textContent;
      window.setTimeout(function () { button.disabled = true; button.textContent = busy; }, 0);
    });
  }
  var target = window.location.hash && document.getElementById(window.location.hash.slice(1));
  if (target && target.tagName === "H2") { target.focus(); }
})();
