// fbproxy booking form: progressive enhancement only. Without this file the
// form works the same; with it the guest's time zone is detected, the pickers
// apply themselves, and months, days and times change in place (see inPlace).
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
  // Listened for on the document: the form may be swapped in later (inPlace).
  document.addEventListener("submit", function (event) {
    var bookingForm = event.target;
    if (bookingForm.id !== "booking-form") { return; }
    var button = bookingForm.querySelector("button[type=submit]");
    // One booking per click: a second click would only meet a 409.
    // The words come from the page, in its language.
    var busy = button.getAttribute("data-busy") || button.textContent;
    window.setTimeout(function () { button.disabled = true; button.textContent = busy; }, 0);
  });
  var target = window.location.hash && document.getElementById(window.location.hash.slice(1));
  if (target && target.tagName === "H2") { target.focus(); }
  var main = document.getElementById("main");
  if (main && main.querySelector(":scope > [data-stay]") && window.fetch && window.DOMParser &&
      window.AbortController && window.history && window.history.pushState) {
    inPlace(main);
  }

  // Month changes and day and time picks without a page load: a click on a link to
  // this same page (another ?month=, day=, start=) fetches that very URL, the page
  // the server renders for it, and swaps in what changed; the URL is pushed, so Back,
  // Forward, reloading and sharing work as with the plain link. Everything is still
  // rendered by the server (words in the page's language, zone labels, the offer
  // with the guest's own booking counted free when moving it); main's children
  // marked data-stay (the header, the zone and length pickers) stay, the rest is
  // replaced. Anything unexpected (an error page, a network failure) falls back to
  // the plain navigation the link would have made.
  function inPlace(main) {
    var announce = document.createElement("p");
    announce.id = "in-place-status";
    announce.className = "visually-hidden";
    announce.setAttribute("role", "status");
    announce.setAttribute("aria-live", "polite");
    document.body.appendChild(announce);
    var shown = withoutHash(window.location.href);
    var pending = null;

    main.addEventListener("click", function (event) {
      if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey ||
          event.shiftKey || event.altKey) { return; }
      var link = event.target.closest && event.target.closest("a[href]");
      if (!link || link.target || link.hasAttribute("download")) { return; }
      var url = new URL(link.href, window.location.href);
      if (url.origin !== window.location.origin || url.pathname !== window.location.pathname ||
          !url.search) { return; }
      event.preventDefault();
      go(url.href, {push: true, rel: link.getAttribute("rel") || ""});
    });
    window.addEventListener("popstate", function () {
      // Only a jump within the page (the skip link) keeps the same address.
      if (withoutHash(window.location.href) === shown) { return; }
      go(window.location.href, {push: false, rel: ""});
    });

    function go(href, how) {
      if (pending) { pending.abort(); }
      var controller = new AbortController();
      pending = controller;
      main.setAttribute("aria-busy", "true");
      window.fetch(href, {credentials: "same-origin", headers: {"Accept": "text/html"},
                          signal: controller.signal})
        .then(function (response) {
          var type = response.headers.get("Content-Type") || "";
          if (!response.ok || type.indexOf("text/html") !== 0 ||
              new URL(response.url).pathname !== new URL(href).pathname) {
            throw new Error("not a page to swap in");
          }
          return response.text();
        })
        .then(function (html) {
          if (pending !== controller) { return; }  // a later click won
          pending = null;
          var next = new DOMParser().parseFromString(html, "text/html");
          main.removeAttribute("aria-busy");
          if (!swap(next)) { throw new Error("not the same kind of page"); }
          shown = withoutHash(href);
          if (how.push) {
            if (href === window.location.href) {
              window.history.replaceState(null, "", href);
            } else {
              window.history.pushState(null, "", href);
            }
          }
          settle(href, how);
        })
        .catch(function (error) {
          if (error && error.name === "AbortError") { return; }
          // The plain navigation instead (popstate already changed the address).
          if (how.push) {
            window.location.assign(href);
          } else {  // a load by GET, even where a form post made this entry
            window.location.replace(withoutHash(window.location.href));
          }
        });
    }

    function swap(next) {
      var nextMain = next.getElementById("main");
      if (!nextMain) { return false; }
      var stays = children(main).filter(staying);
      var nextStays = children(nextMain).filter(staying);
      // The parts that stay must be what the new page has there (the same zone and
      // length, say; not so after Back to a page first seen without ?tz=).
      if (stays.length !== nextStays.length || stays.some(function (element, index) {
        return !sameAs(element, nextStays[index]);
      })) { return false; }
      children(main).forEach(function (element) {
        if (!staying(element)) { main.removeChild(element); }
      });
      // The new page's parts, in its order around the parts that stay.
      var cursor = null;
      var index = 0;
      children(nextMain).forEach(function (element) {
        if (staying(element)) {
          cursor = stays[index];
          keepHiddenFields(cursor, nextStays[index]);
          index += 1;
        } else {
          var node = document.importNode(element, true);
          main.insertBefore(node, cursor ? cursor.nextSibling : main.firstChild);
          cursor = node;
        }
      });
      // The language links carry the month and day too.
      var languages = document.querySelector("nav.languages");
      var nextLanguages = next.querySelector("nav.languages");
      if (languages && nextLanguages) {
        languages.parentNode.replaceChild(document.importNode(nextLanguages, true), languages);
      }
      document.title = next.title;
      main.querySelectorAll("[data-js-hide]").forEach(function (element) {
        element.hidden = true;
      });
      return true;
    }

    function sameAs(mine, theirs) {
      if (mine.tagName !== theirs.tagName) { return false; }
      if (mine.tagName !== "FORM") {
        return squash(mine.textContent) === squash(theirs.textContent);
      }
      return Array.prototype.every.call(theirs.querySelectorAll("select[id]"), function (select) {
        var own = document.getElementById(select.id);
        return Boolean(own) && own.value === select.value;
      });
    }

    // The pickers' form stays (with its search box), its hidden month and day move
    // on, so changing the zone next keeps the day the guest is looking at.
    function keepHiddenFields(mine, theirs) {
      if (mine.tagName !== "FORM") { return; }
      mine.querySelectorAll(":scope > input[type=hidden]").forEach(function (input) {
        mine.removeChild(input);
      });
      var first = mine.firstChild;
      theirs.querySelectorAll(":scope > input[type=hidden]").forEach(function (input) {
        mine.insertBefore(document.importNode(input, true), first);
      });
    }

    function settle(href, how) {
      var id = new URL(href).hash.slice(1);
      var target = id && document.getElementById(id);
      if (how.push && target && target.tagName === "H2") {
        // A day or a time picked: focus on its heading, and its section (the times,
        // or the form below them on a phone) brought into view, as the link's #
        // would have.
        var region = target.closest("section") || target;
        if (!inView(region)) {
          region.scrollIntoView({block: "start", behavior: reducedMotion() ? "auto" : "smooth"});
        }
        target.focus({preventScroll: true});
        announce.textContent = "";
        return;
      }
      // A month changed, or Back or Forward: the arrow pressed keeps the focus if it
      // is still there, else the day's heading takes it; the change is announced.
      var arrow = how.rel && main.querySelector("a.nav[rel='" + how.rel + "']");
      var heading = (target && target.tagName === "H2" && target) ||
        document.getElementById("slots-heading");
      if (arrow) {
        arrow.focus();
      } else if (heading) {
        heading.focus({preventScroll: true});
      }
      announce.textContent = ["month-heading", "slots-heading"].map(function (name) {
        var element = document.getElementById(name);
        return element ? element.textContent.trim() : "";
      }).concat(textOf(main.querySelector(".book .when"))).filter(Boolean).join(". ");
    }
  }

  function children(element) { return Array.prototype.slice.call(element.children); }
  function staying(element) { return element.hasAttribute("data-stay"); }
  function squash(text) { return text.replace(/\s+/g, " ").trim(); }
  function textOf(element) { return element ? element.textContent.trim() : ""; }
  function withoutHash(url) { return url.split("#")[0]; }
  function reducedMotion() {
    return Boolean(window.matchMedia &&
                   window.matchMedia("(prefers-reduced-motion: reduce)").matches);
  }
  function inView(element) {
    var box = element.getBoundingClientRect();
    return box.top >= 0 && box.bottom <= (window.innerHeight ||
                                           document.documentElement.clientHeight);
  }

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
