// Progressive enhancement for the console; every page works without this file.
(function () {
  "use strict";

  var pad = function (n) { return String(n).padStart(2, "0"); };

  // Server renders UTC; show the viewer's local time and keep UTC in the tooltip.
  function localizeTimes(root) {
    root.querySelectorAll("time[datetime]:not([data-local])").forEach(function (el) {
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
  document.addEventListener("htmx:load", function (event) { enhance(event.target); });
})();
