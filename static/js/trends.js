// Draws the runs-per-hour chart from the JSON the page embeds; the table beside it is the no-JS view.
(function () {
  "use strict";
  var colors = { pending: "#5b6473", running: "#1f5fb8", completed: "#17794a", failed: "#b42318",
    cancelled: "#9aa3b2", interrupted: "#9a6700" };

  function draw() {
    var holder = document.getElementById("trend-chart");
    var source = document.getElementById("trend-data");
    if (!holder || !source || typeof uPlot === "undefined") return;
    var data = JSON.parse(source.textContent);
    var series = [{}];
    var columns = [data.t];
    data.series.forEach(function (s) {
      series.push({ label: s.label, stroke: colors[s.key], width: 2, scale: "runs" });
      columns.push(s.values);
    });
    series.push({ label: "Failure rate %", stroke: "#000", dash: [4, 4], width: 1, scale: "%" });
    columns.push(data.failureRate);
    var width = Math.max(300, holder.clientWidth || 800);
    new uPlot({
      width: width,
      height: 260,
      series: series,
      scales: { "%": { range: [0, 100] } },
      axes: [{}, { scale: "runs", label: "runs" }, { scale: "%", side: 1, label: "% failed", grid: { show: false } }]
    }, columns, holder);
    holder.removeAttribute("aria-hidden");
  }
  document.addEventListener("DOMContentLoaded", draw);
})();
