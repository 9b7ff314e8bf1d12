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
    // An alias (Asia/Calcutta) is not in the list but the server maps it to its zone.
    var known = /^[A-Za-z_]+(\/[A-Za-z0-9_+-]+)+$/.test(detected) ||
      Array.prototype.some.call(zonePicker.options, function (option) {
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
  if (zonePicker && zonePicker.hasAttribute("data-searchable")) { searchable(zonePicker); }
  document.querySelectorAll("[data-js-hide]").forEach(function (element) {
    element.hidden = true;
  });
  var autosubmit = "select[data-autosubmit]:not([data-searchable])";
  document.querySelectorAll(autosubmit).forEach(function (select) {
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

  // The zone list filtered as the guest types ("tokyo", "+09", "new york"): the
  // native select stays (and submits); a search box above it keeps only the
  // options whose label or zone name holds every typed word.
  function searchable(select) {
    var all = Array.prototype.slice.call(select.options);
    var search = document.createElement("input");
    search.type = "search";
    search.id = "tz-search";
    search.autocomplete = "off";
    search.setAttribute("aria-label", select.getAttribute("data-search-label") || "");
    search.setAttribute("aria-controls", select.id);
    search.placeholder = select.getAttribute("data-search-placeholder") || "";
    select.parentNode.insertBefore(search, select);
    var words = function (text) {
      return text.toLowerCase().replace(/[_/]/g, " ").split(/\s+/).filter(Boolean);
    };
    search.addEventListener("input", function () {
      var wanted = words(search.value);
      var current = select.value;
      var shown = all.filter(function (option) {
        var haystack = (option.textContent + " " + option.value).toLowerCase()
          .replace(/[_/]/g, " ");
        return wanted.every(function (word) { return haystack.indexOf(word) !== -1; });
      });
      while (select.options.length) { select.remove(0); }
      (wanted.length ? shown : all).forEach(function (option) { select.add(option); });
      select.value = current;
      select.size = wanted.length ? Math.max(2, Math.min(8, shown.length)) : 0;
    });
    // A filtered list is a listbox: arrow keys move in it, Enter or a click picks.
    var pointer = false;
    select.addEventListener("pointerdown", function () { pointer = true; });
    select.addEventListener("change", function () {
      if (select.size <= 1 || pointer) { select.form.submit(); }
      pointer = false;
    });
    select.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && select.size > 1) {
        event.preventDefault();
        select.form.submit();
      }
    });
    search.addEventListener("keydown", function (event) {
      if (event.key === "ArrowDown" && select.options.length) {
        event.preventDefault();
        select.focus();
      } else if (event.key === "Enter") {
        event.preventDefault();
        if (search.value && select.options.length) {
          select.value = select.options[0].value;
          select.form.submit();
        }
      }
    });
  }
})();
