// Progressive enhancement for the console; every page works without this file.
(function () {
  "use strict";

  var pad = function (n) { return String(n).padStart(2, "0"); };

  // The same wording as the server's `age` filter (monitor_tags._span).
  function span(seconds) {
    seconds = Math.floor(Math.abs(seconds));
    if (seconds < 60) return seconds + " s";
    if (seconds < 3600) {
      return seconds < 600 ? Math.floor(seconds / 60) + " min " + (seconds % 60) + " s" : Math.floor(seconds / 60) + " min";
    }
    if (seconds < 86400) return Math.floor(seconds / 3600) + " h " + Math.floor((seconds % 3600) / 60) + " min";
    return Math.floor(seconds / 86400) + " d " + Math.floor((seconds % 86400) / 3600) + " h";
  }

  // Relative times ("3 min ago") are written by the server; keep them current between refreshes.
  function refreshRelativeTimes(root) {
    root.querySelectorAll("time[data-relative][datetime]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d)) return;
      var delta = (Date.now() - d.getTime()) / 1000;
      el.textContent = delta >= 0 ? span(delta) + " ago" : "in " + span(delta);
    });
  }

  // Copy buttons beside ids: shown only when this script runs; the id stays selectable text.
  function enableCopyButtons(root) {
    root.querySelectorAll("button.copy-button[hidden]").forEach(function (button) {
      button.hidden = false;
    });
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.appendChild(area);
    area.select();
    var ok = document.execCommand("copy");
    area.remove();
    return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button.copy-button") : null;
    if (!button) return;
    var label = button.textContent;
    copyText(button.getAttribute("data-copy")).then(
      function () { button.textContent = "Copied"; },
      function () { button.textContent = "Select and copy"; }
    ).then(function () {
      setTimeout(function () { button.textContent = label; }, 1500);
    });
  });

  // A running run's panel is re-rendered on every poll; keep each JSON block as the reader left it.
  var folds = {};
  document.addEventListener("toggle", function (event) {
    var block = event.target;
    if (block.matches && block.matches("details.json-block[id]")) folds[block.id] = block.open;
  }, true);
  function restoreFolds(root) {
    root.querySelectorAll("details.json-block[id]").forEach(function (block) {
      if (Object.prototype.hasOwnProperty.call(folds, block.id)) block.open = folds[block.id];
    });
  }

  // Server renders UTC; show the viewer's local time and keep UTC in the tooltip.
  function localizeTimes(root) {
    root.querySelectorAll("time[datetime]:not([data-local]):not([data-relative])").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d)) return;
      var zone = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" })
        .formatToParts(d).filter(function (p) { return p.type === "timeZoneName"; })
        .map(function (p) { return p.value; })[0] || "";
      el.title = el.textContent;
      el.textContent = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
        pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + " " + zone;
      el.setAttribute("data-local", "");
    });
  }

  // A schedule form shows only the fields its cadence reads.
  function showCadenceFields(root) {
    var form = root.querySelector ? root.querySelector("#schedule-form") : null;
    if (!form) return;
    var select = form.querySelector("select[name=cadence]");
    var apply = function () {
      form.querySelectorAll("[data-cadences]").forEach(function (field) {
        field.hidden = field.getAttribute("data-cadences").split(" ").indexOf(select.value) === -1;
      });
    };
    select.addEventListener("change", apply);
    apply();
  }

  function enhance(root) {
    localizeTimes(root);
    refreshRelativeTimes(root);
    enableCopyButtons(root);
    restoreFolds(root);
    showCadenceFields(root);
  }

  document.addEventListener("change", function (event) {
    if (event.target.id === "select-page") {
      document.querySelectorAll(".row-select").forEach(function (box) { box.checked = event.target.checked; });
    }
  });
  // "/" focuses the search box, unless the viewer is typing somewhere already.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    if (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName)) return;
    var box = document.getElementById("console-search");
    if (!box) return;
    event.preventDefault();
    box.focus();
    box.select();
  });
  document.addEventListener("DOMContentLoaded", function () { enhance(document); });
  setInterval(function () { refreshRelativeTimes(document); }, 15000);
  document.addEventListener("htmx:load", function (event) { enhance(event.target); });
})();
