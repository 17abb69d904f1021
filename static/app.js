// Callboard's own script: the poll clock of the live parts, the depth chart of a queue page (uPlot),
// whether live parts are paused, and the controls' helpers. The Content-Security-Policy allows no
// inline script or handler and no eval, so everything the pages do in script lives here.
// Live parts carry hx-trigger="callboard:poll from:body": one timer fires that event every poll_ms
// (the body's data-poll-ms) while the tab is visible, and once as it becomes visible again; htmx then
// refetches each part. The chart element sits outside the swapped partial, so a poll updates its data
// instead of rebuilding it (hover survives).
(function () {
  "use strict";
  var COLORS = ["#2f7de1", "#c98a00", "#7a5cc2", "#d1453b", "#3a9a5b"];
  var INTEGER_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 1e7];
  var plot = null;

  function readSeries() {
    var holder = document.querySelector(".series[data-series]");
    if (!holder) return null;
    try { return JSON.parse(holder.dataset.series); } catch (e) { return null; }
  }

  function updateChart() {
    var el = document.getElementById("queue-chart");
    var series = readSeries();
    if (!el || !window.uPlot || !series) return;
    if (series.data[0].length < 2) {
      if (!plot) el.textContent = "Collecting history…";
      return;
    }
    if (plot) { plot.setData(series.data); return; }
    el.textContent = "";
    var style = getComputedStyle(el);
    var width = el.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    plot = new window.uPlot({
      width: Math.max(320, width || 800),
      height: 180,
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      axes: [{}, { size: 60, incrs: INTEGER_STEPS }],
      series: [{}].concat(series.labels.map(function (label, i) {
        return { label: label, stroke: COLORS[i % COLORS.length], width: 1.5, points: { show: false } };
      })),
    }, series.data, el);
  }

  function setLive(state) {
    var live = document.getElementById("live-indicator");
    if (!live) return;
    live.dataset.state = state;
    live.className = "live " + state;
    live.textContent = state;
  }

  function showVisibility() { setLive(document.hidden ? "paused" : "live"); }

  var pollTimer = null;

  // One visibility check per tick: a hidden tab sends nothing.
  function poll() {
    if (!document.hidden) document.body.dispatchEvent(new CustomEvent("callboard:poll"));
  }

  function startPolling() {
    var ms = parseInt(document.body.dataset.pollMs, 10);
    if (!(ms > 0)) return;
    if (pollTimer !== null) window.clearInterval(pollTimer);
    pollTimer = window.setInterval(poll, ms);
  }

  // Back in view: refresh now, and count the next interval from here.
  function onVisibilityChange() {
    showVisibility();
    if (document.hidden) return;
    poll();
    startPolling();
  }

  // Instead of inline handlers: a <select data-autosubmit> submits its form on change, and a
  // <form data-no-submit> (the job selection, sent by htmx buttons) is never submitted natively.
  document.addEventListener("change", function (evt) {
    var el = evt.target;
    if (el.matches && el.matches("select[data-autosubmit]") && el.form) el.form.submit();
  });

  document.addEventListener("submit", function (evt) {
    if (evt.target.matches && evt.target.matches("form[data-no-submit]")) evt.preventDefault();
  });

  // Controls: "select all on this page", and confirmations that say how many jobs they touch.
  document.addEventListener("change", function (evt) {
    var box = evt.target;
    if (!box.matches || !box.matches("input[data-select-all]")) return;
    var form = box.closest("form");
    form.querySelectorAll("input[name=ids]").forEach(function (b) { b.checked = box.checked; });
  });

  document.addEventListener("htmx:confirm", function (evt) {
    var elt = evt.detail.elt;
    if (!elt.hasAttribute("data-confirm-selection")) return;
    evt.preventDefault();
    var form = document.getElementById("job-form");
    var n = form ? form.querySelectorAll("input[name=ids]:checked").length : 0;
    if (n === 0) { window.alert("Select one or more jobs first."); return; }
    if (window.confirm(evt.detail.question.replace("{n}", String(n)))) evt.detail.issueRequest(true);
  });

  // "Copy as code": the Clipboard API needs a secure context (https or localhost) and may be refused;
  // then the code is selected instead, for Ctrl-C.
  document.addEventListener("click", function (evt) {
    var button = evt.target.closest ? evt.target.closest("button[data-copy]") : null;
    var code = button && document.getElementById(button.dataset.copy);
    if (!code) return;
    var status = button.parentNode.querySelector("[data-copy-status]");
    function say(text) { if (status) status.textContent = text; }
    function select() {
      var range = document.createRange();
      range.selectNodeContents(code);
      window.getSelection().removeAllRanges();
      window.getSelection().addRange(range);
      say("Selected: press Ctrl+C to copy");
    }
    if (!navigator.clipboard || !window.isSecureContext) { select(); return; }
    navigator.clipboard.writeText(code.textContent).then(function () { say("Copied"); }, select);
  });

  // A control that failed answers with its status (403 when the Redis ACL refused it, 503, 500)
  // and its progress panel: show that panel, which says why, instead of dropping the answer.
  document.addEventListener("htmx:beforeSwap", function (evt) {
    var target = evt.detail.target;
    if (evt.detail.xhr.status >= 400 && target && target.id === "operation") {
      evt.detail.shouldSwap = true;
      evt.detail.isError = false;
    }
  });

  document.addEventListener("DOMContentLoaded", function () { updateChart(); showVisibility(); startPolling(); });
  document.addEventListener("htmx:afterSettle", updateChart);
  document.addEventListener("visibilitychange", onVisibilityChange);
  // A failed poll (server gone) marks the indicator until the next successful swap.
  document.addEventListener("htmx:sendError", function () { setLive("offline"); });
  document.addEventListener("htmx:afterSwap", showVisibility);
})();
