// Dashboard enhancements: live codes, countdowns, list filters, single submits.
// Every page works without this file; a reload shows the same state.
(function () {
  "use strict";

  // Same wording as reseller/dashboard/cards.py:duration.
  function duration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    if (seconds < 60) return seconds + " s";
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    if (seconds < 3600) return Math.floor(seconds / 60) + " min " + pad(seconds % 60) + " s";
    return Math.floor(seconds / 3600) + " h " + pad(Math.floor((seconds % 3600) / 60)) + " min";
  }

  function setHidden(element, hidden) {
    if (element) element.hidden = hidden;
  }

  // --- filters: the picker's one search field, and a search box over table rows --------

  function matches(text, query) {
    return text.toLowerCase().indexOf(query.toLowerCase()) !== -1;
  }

  // The sentence comes from the page (data-filter-count="{shown} of {total} services"), so
  // that it is translated with the page; only the numbers are filled in here.
  function setCount(input, shown, total) {
    var id = input.getAttribute("aria-describedby");
    var count = id && document.getElementById(id);
    var sentence = count && count.getAttribute("data-filter-count");
    if (sentence) {
      count.textContent = sentence.replace("{shown}", shown).replace("{total}", total);
    }
  }

  function filterRows(input) {
    var body = document.querySelector(input.getAttribute("data-filter-rows"));
    if (!body) return;
    var query = input.value.trim();
    var shown = 0;
    Array.prototype.forEach.call(body.rows, function (row) {
      var text = row.getAttribute("data-filter-text") || row.textContent;
      row.hidden = Boolean(query) && !matches(text, query);
      if (!row.hidden) shown += 1;
    });
    setCount(input, shown, body.rows.length);
  }

  // The same rule as the server (dashboard.routes.index): the text narrows the services by
  // name or code; a text that names no service narrows the chosen service's countries.
  function filterPicker(input) {
    var query = input.value.trim();
    var items = Array.prototype.slice.call(document.querySelectorAll("[data-service-list] li"));
    var hits = items.filter(function (li) {
      return !query || matches(li.getAttribute("data-filter-text"), query);
    });
    var aboutServices = hits.length > 0;
    items.forEach(function (li) {
      li.hidden = aboutServices && hits.indexOf(li) === -1;
    });
    setCount(input, aboutServices ? hits.length : items.length, items.length);
    var table = document.querySelector("[data-picker-rows]");
    if (!table) return;
    var countryQuery = matches(table.getAttribute("data-service-text"), query) ? "" : query;
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      row.hidden = Boolean(countryQuery) && !matches(row.getAttribute("data-filter-text"), countryQuery);
    });
  }

  document.addEventListener("input", function (event) {
    var input = event.target;
    if (input.hasAttribute("data-filter-rows")) filterRows(input);
    if (input.hasAttribute("data-picker-search")) filterPicker(input);
  });

  // --- one submit per form: a double click must not buy twice -----------------------

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (event.defaultPrevented || !form.hasAttribute("data-once")) return;
    if (form._sent) {
      event.preventDefault();
      return;
    }
    form._sent = true;
    var button = form.querySelector("button[type=submit]");
    if (button) button.setAttribute("aria-disabled", "true");
  });

  // A new purchase key, like the server's (`web-` and 16 random URL-safe characters).
  function newOrderKey() {
    var bytes = new Uint8Array(12);
    window.crypto.getRandomValues(bytes);
    var text = "";
    bytes.forEach(function (b) { text += String.fromCharCode(b); });
    return "web-" + window.btoa(text).replace(/\+/g, "-").replace(/\//g, "_");
  }

  // Back/forward cache: a page shown again may be sent again, as a new purchase: each Buy
  // button gets a new key (the one it carried may already have bought a number).
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) return;
    Array.prototype.forEach.call(document.querySelectorAll("form[data-once]"), function (f) {
      f._sent = false;
      var button = f.querySelector("button[type=submit]");
      if (button) button.removeAttribute("aria-disabled");
      var key = f.querySelector("input[data-order-key]");
      if (key) key.value = newOrderKey();
    });
  });

  // --- live activations ----------------------------------------------------------------

  var root = document.querySelector("[data-live-activations]");
  if (!root) return;
  var feedUrl = root.getAttribute("data-feed-url");
  var interval = Math.max(1, parseInt(root.getAttribute("data-poll-interval"), 10) || 3) * 1000;
  var baseTitle = document.title;
  var timer = null;

  function cards() {
    return Array.prototype.slice.call(root.querySelectorAll("[data-activation]"));
  }

  function openCards() {
    return cards().filter(function (card) { return !card.classList.contains("closed"); });
  }

  function field(card, name) {
    return card.querySelector("[data-field='" + name + "']");
  }

  function when(card, name) {
    return card.querySelector("[data-when='" + name + "']");
  }

  function form(card, action) {
    return card.querySelector("form[data-action='" + action + "']");
  }

  function setCountdown(card, name, seconds) {
    var element = card.querySelector("[data-countdown='" + name + "']");
    if (!element) return;
    element.setAttribute("data-seconds", String(seconds));
    element.textContent = duration(seconds);
  }

  // The cancel button is disabled, and explained, while the early-cancel window lasts.
  function setCancelWait(cancel, seconds) {
    var button = cancel.querySelector("button");
    var note = cancel.querySelector("[data-cancel-note]");
    button.disabled = seconds > 0;
    if (seconds > 0) button.setAttribute("aria-describedby", note.id);
    else button.removeAttribute("aria-describedby");
    setHidden(note, seconds <= 0);
  }

  // Every SMS of the number, oldest first: new ones are drawn from the page's <template>
  // (the same markup as the server's); true when one was added.
  function updateMessages(card, messages) {
    var list = field(card, "messages");
    var template = document.querySelector("template[data-sms-item]");
    if (!list || !template) return false;
    var id = card.getAttribute("data-activation");
    var added = false;
    for (var n = list.children.length; n < messages.length; n += 1) {
      var item = template.content.firstElementChild.cloneNode(true);
      var code = item.querySelector("code");
      code.id = "code-" + id + "-" + (n + 1);
      code.textContent = messages[n].code;
      item.querySelector("[data-copy]").setAttribute("data-copy", "#" + code.id);
      var details = item.querySelector("details");
      details.querySelector("p").textContent = messages[n].text || "";
      details.hidden = !messages[n].text;
      list.appendChild(item);
      added = true;
    }
    Array.prototype.forEach.call(list.children, function (li, i) {
      li.classList.toggle("latest", i === list.children.length - 1);
    });
    list.hidden = messages.length === 0;
    return added;
  }

  function updateCard(card, a) {
    var label = field(card, "status_label");
    label.textContent = a.status_label;
    label.className = "badge " + (a.tone || "");

    if (updateMessages(card, a.messages || []) && document.hidden) {
      document.title = "Code received · " + baseTitle;
    }
    setHidden(when(card, "no-code"), (a.messages || []).length > 0 || !a.open);
    setCountdown(card, "lifetime", a.lifetime_left);

    var cancel = form(card, "cancel");
    setHidden(cancel, !a.can_cancel);
    setCancelWait(cancel, a.cancel_in);
    setCountdown(card, "cancel", a.cancel_in);
    setHidden(form(card, "retry"), !a.can_retry);
    setHidden(form(card, "complete"), !a.can_complete);

    if (!a.open) {
      card.classList.add("closed");
      setHidden(when(card, "closed"), false);
      setHidden(when(card, "open"), true);
    }
  }

  function apply(data) {
    var balance = root.ownerDocument.querySelector("[data-balance]");
    if (balance) balance.textContent = data.balance + " " + data.currency;
    var elsewhere = false;
    data.activations.forEach(function (a) {
      var card = document.getElementById("activation-" + a.id);
      if (card) updateCard(card, a);
      else if (a.open) elsewhere = true;
    });
    setHidden(root.querySelector("[data-elsewhere]"), !elsewhere);
    setHidden(root.querySelector("[data-live-error]"), true);
  }

  function showError(text) {
    var element = root.querySelector("[data-live-error]");
    element.textContent = text;
    element.hidden = false;
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(poll, interval);
  }

  // Background tabs keep polling (browsers slow their timers down): the tab title tells
  // someone busy in another tab that the code is here.
  function poll() {
    var ids = cards().map(function (card) { return card.getAttribute("data-activation"); });
    fetch(feedUrl + "?ids=" + encodeURIComponent(ids.join(",")), {
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "application/json" }
    }).then(function (response) {
      if (response.status === 401) {
        showError("You are logged out. Log in again to see your codes.");
        return "stop";
      }
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json().then(apply);
    }).then(function (outcome) {
      if (outcome !== "stop") schedule();
    }, function () {
      showError("Live updates are paused: the server did not answer. Retrying…");
      schedule();
    });
  }

  // Countdowns tick locally between polls; the next poll corrects any drift.
  setInterval(function () {
    openCards().forEach(function (card) {
      Array.prototype.forEach.call(card.querySelectorAll("[data-countdown]"), function (element) {
        var left = Math.max(0, (parseInt(element.getAttribute("data-seconds"), 10) || 0) - 1);
        element.setAttribute("data-seconds", String(left));
        element.textContent = duration(left);
        if (element.getAttribute("data-countdown") === "cancel" && left === 0) {
          setCancelWait(form(card, "cancel"), 0);
        }
      });
    });
  }, 1000);

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      document.title = baseTitle;
      poll();
    }
  });

  poll();
})();
