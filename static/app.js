// Callboard's own script: draws the depth chart of a queue page with uPlot, and shows whether live
// parts are paused. htmx does the polling; its triggers skip hidden tabs ([!document.hidden]).
(function () {
  "use strict";
  var COLORS = ["#2f7de1", "#c98a00", "#7a5cc2", "#d1453b", "#3a9a5b"];

  function drawChart(el) {
    if (!window.uPlot || el.dataset.drawn) return;
    var series;
    try { series = JSON.parse(el.dataset.series); } catch (e) { return; }
    if (!series || !series.data || series.data[0].length < 2) {
      el.textContent = "Collecting history…";
      return;
    }
    el.dataset.drawn = "1";
    var opts = {
      width: Math.max(320, el.clientWidth || 800),
      height: 180,
      cursor: { drag: { x: false, y: false } },
      legend: { live: true },
      scales: { x: { time: true } },
      axes: [{}, { size: 60 }],
      series: [{}].concat(series.labels.map(function (label, i) {
        return { label: label, stroke: COLORS[i % COLORS.length], width: 1.5, points: { show: false } };
      })),
    };
    new window.uPlot(opts, series.data, el);
  }

  function drawAll(root) {
    (root || document).querySelectorAll(".chart[data-series]").forEach(drawChart);
  }

  function showVisibility() {
    var live = document.getElementById("live-indicator");
    if (live) {
      live.classList.toggle("paused", document.hidden);
      live.textContent = document.hidden ? "paused" : "live";
    }
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); showVisibility(); });
  document.addEventListener("htmx:load", function (evt) { drawAll(evt.target); });
  document.addEventListener("visibilitychange", showVisibility);
  // A failed poll (server gone) marks the indicator until the next successful swap.
  document.addEventListener("htmx:sendError", function () {
    var live = document.getElementById("live-indicator");
    if (live) { live.classList.add("offline"); live.textContent = "offline"; }
  });
  document.addEventListener("htmx:afterSwap", function () {
    var live = document.getElementById("live-indicator");
    if (live) { live.classList.remove("offline"); showVisibility(); }
  });
})();
