// Callboard's own script: the poll clock of the live parts, the charts (uPlot: a queue's depth, the
// overview's throughput, each over a range the user picks and the browser remembers),
// whether live parts are paused, the controls' helpers, the colour scheme and the keyboard shortcuts. The Content-Security-Policy allows no
// inline script or handler and no eval, so everything the pages do in script lives here.
// Live parts carry hx-trigger="callboard:poll from:body": one timer fires that event every poll_ms
// (the body's data-poll-ms) while the tab is visible, and once as it becomes visible again; htmx then
// refetches each part. The chart element sits outside the swapped partial, so a poll updates its data
// instead of rebuilding it (hover survives).
(function () {
  "use strict";
  //: Colours of series with no tone (dashboard/words.py STATE_STYLES gives each state one): variables of
  //: static/app.css's palette, read at each draw, so charts follow the colour scheme.
  var COLORS = ["--ready", "--flight", "--delayed", "--dead", "--ok"];
  var INTEGER_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 1e7];
  var plots = {};
  //: Seconds each chart range spans (the server's depth tiers and flow ranges use the same names).
  var SPANS = { "1h": 3600, "24h": 86400, "7d": 604800 };
  var ranges = { depth: savedRange("depth"), flow: savedRange("flow") };
  //: The queue chart's stored part (GET .../depth?range=), refetched at most once a minute.
  var stored = null;
  var storedAt = 0;

  function savedRange(kind) {
    try {
      var value = window.localStorage.getItem("callboard:range:" + kind);
      return SPANS[value] ? value : "1h";
    } catch (e) { return "1h"; }
  }

  function readJSON(selector, attr) {
    var holder = document.querySelector(selector);
    if (!holder) return null;
    try { return JSON.parse(holder.getAttribute(attr)); } catch (e) { return null; }
  }

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  // A series' colour: its state's tone from the stylesheet (--state-<tone>, static/app.css, in the
  // current scheme), so the chart, the tabs and the badges agree; COLORS for a series without one.
  function colour(tones, i) {
    var tone = tones && tones[i];
    return (tone && cssVar("--state-" + tone)) || cssVar(COLORS[i % COLORS.length]);
  }

  // One uPlot per chart element, rebuilt when its range (and so its time scale) changes.
  function draw(id, key, labels, data, empty, bars, tones) {
    var el = document.getElementById(id);
    if (!el || !window.uPlot) return;
    var old = plots[id];
    if (data[0].length < 2) {
      if (old) { old.destroy(); delete plots[id]; }
      el.textContent = empty;
      return;
    }
    if (old && old.callboardKey === key) { old.setData(data); return; }
    if (old) old.destroy();
    el.textContent = "";
    var style = getComputedStyle(el);
    var width = el.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    var axis = { stroke: cssVar("--chart-axis"), grid: { stroke: cssVar("--chart-grid") }, ticks: { stroke: cssVar("--chart-grid") } };
    var plot = new window.uPlot({
      width: Math.max(260, width || 800),
      height: 180,
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      axes: [axis, Object.assign({ size: 60, incrs: INTEGER_STEPS }, axis)],
      series: [{}].concat(labels.map(function (label, i) {
        var line = { label: label, stroke: colour(tones, i), width: 1.5, points: { show: false } };
        if (bars && window.uPlot.paths && window.uPlot.paths.bars) {
          line.paths = window.uPlot.paths.bars({ size: [0.8, 40] });
          line.fill = line.stroke;
        }
        return line;
      })),
    }, data, el);
    plot.callboardKey = key;
    plots[id] = plot;
  }

  function columns(rows, width) {
    var out = [];
    for (var c = 0; c < width; c++) out.push(rows.map(function (r) { return r[c]; }));
    return out;
  }

  function fetchStored(el) {
    var range = ranges.depth;
    storedAt = Date.now();
    fetch(el.dataset.depthUrl + "?range=" + encodeURIComponent(range), {
      credentials: "same-origin", headers: { Accept: "application/json" },
    }).then(function (r) { return r.ok ? r.json() : null; }).then(function (body) {
      if (!body || body.range !== ranges.depth) return;
      stored = body;
      var note = document.querySelector("[data-chart-note]");
      if (note) note.textContent = body.error ? "History from Redis unavailable: " + body.error : "";
      updateDepth();
    }, function () { storedAt = 0; });
  }

  // The queue page: stored points (Redis) before what this process holds at poll resolution.
  function updateDepth() {
    var el = document.getElementById("queue-chart");
    var live = readJSON(".series[data-series]", "data-series");
    if (!el || !live) return;
    var range = ranges.depth;
    if (el.dataset.depthUrl && (!stored || stored.range !== range || Date.now() - storedAt > 60000)) {
      if (Date.now() - storedAt > 2000) fetchStored(el);
    }
    var now = Date.now() / 1000;
    var start = now - SPANS[range];
    var liveRows = [];
    for (var i = 0; i < live.data[0].length; i++) liveRows.push(live.data.map(function (col) { return col[i]; }));
    liveRows = liveRows.filter(function (r) { return r[0] >= start; });
    var rows = [];
    if (stored && stored.range === range) {
      var first = liveRows.length ? liveRows[0][0] : now;
      var last = stored.points.length ? stored.points[stored.points.length - 1][0] : 0;
      rows = stored.points.filter(function (p) { return p[0] >= start && (range !== "1h" || p[0] < first); });
      liveRows = range === "1h" ? liveRows : liveRows.filter(function (r) { return r[0] > last; }).slice(-1);
    }
    rows = rows.concat(liveRows);
    var data = columns(rows, live.labels.length + 1);
    draw("queue-chart", range, live.labels, data, "Collecting history…", false, live.tones);
  }

  // The overview: jobs succeeded and failed per step of the chosen range, from the live partial.
  function updateFlow() {
    var flow = readJSON(".flow-series[data-flow]", "data-flow");
    if (!flow) return;
    var range = ranges.flow;
    document.querySelectorAll("[data-flow-range]").forEach(function (block) {
      block.hidden = block.dataset.flowRange !== range;
    });
    var chosen = flow[range];
    if (!chosen) return;
    var holder = document.querySelector(".flow-series[data-empty]");
    var empty = holder ? holder.dataset.empty : "No jobs recorded in this range.";
    draw("flow-chart", range, chosen.labels, chosen.data, empty, true, chosen.tones);
  }

  function showRanges() {
    document.querySelectorAll("button[data-range-for]").forEach(function (b) {
      b.setAttribute("aria-pressed", String(ranges[b.dataset.rangeFor] === b.dataset.range));
    });
  }

  function updateChart() { showRanges(); updateDepth(); updateFlow(); }

  // Colours are baked into a uPlot when it is built: a new scheme rebuilds every chart from its data.
  function redrawCharts() {
    Object.keys(plots).forEach(function (id) { plots[id].destroy(); delete plots[id]; });
    updateChart();
  }

  // The colour scheme: "light" or "dark" stored and set as <html data-theme> (static/theme.js sets it
  // before the first paint), or "system": nothing stored, and app.css follows prefers-color-scheme.
  var THEME_KEY = "callboard:theme";
  var THEMES = { light: true, dark: true };

  function savedTheme() {
    try {
      var value = window.localStorage.getItem(THEME_KEY);
      return THEMES[value] ? value : "system";
    } catch (e) { return "system"; }
  }

  function showTheme(choice) {
    if (THEMES[choice]) document.documentElement.setAttribute("data-theme", choice);
    else document.documentElement.removeAttribute("data-theme");
    document.querySelectorAll("select[data-theme-choice]").forEach(function (s) { s.value = choice; });
    redrawCharts();
  }

  document.addEventListener("change", function (evt) {
    var select = evt.target;
    if (!select.matches || !select.matches("select[data-theme-choice]")) return;
    var choice = THEMES[select.value] ? select.value : "system";
    try {
      if (choice === "system") window.localStorage.removeItem(THEME_KEY);
      else window.localStorage.setItem(THEME_KEY, choice);
    } catch (e) { /* private mode: this page only */ }
    showTheme(choice);
  });
  // Another tab changed it, or the system switched while we follow it.
  window.addEventListener("storage", function (evt) { if (evt.key === THEME_KEY) showTheme(savedTheme()); });
  if (window.matchMedia) {
    var systemDark = window.matchMedia("(prefers-color-scheme: dark)");
    if (systemDark.addEventListener) systemDark.addEventListener("change", redrawCharts);
  }

  // Keyboard shortcuts: "/" focuses the page's own search or filter field (else the header's), "?"
  // opens the list of shortcuts in a modal <dialog> (it takes focus; Escape closes it). Keys typed
  // into a field, or with Ctrl, Alt or Meta, are left alone.
  function typing(el) {
    return el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  }

  function showShortcuts() {
    var dialog = document.getElementById("shortcuts");
    if (dialog && !dialog.open && dialog.showModal) dialog.showModal();
  }

  document.addEventListener("keydown", function (evt) {
    if (evt.defaultPrevented || evt.ctrlKey || evt.metaKey || evt.altKey || typing(evt.target)) return;
    var dialog = document.getElementById("shortcuts");
    if (dialog && dialog.open) return;
    if (evt.key === "/") {
      var field = document.querySelector("main input[type=search]") || document.querySelector("header input[type=search]");
      if (!field) return;
      evt.preventDefault();
      field.focus();
      field.select();
    } else if (evt.key === "?") {
      evt.preventDefault();
      showShortcuts();
    }
  });

  document.addEventListener("click", function (evt) {
    if (evt.target.closest && evt.target.closest("button[data-shortcuts]")) showShortcuts();
  });

  document.addEventListener("click", function (evt) {
    var button = evt.target.closest ? evt.target.closest("button[data-range-for]") : null;
    if (!button || !SPANS[button.dataset.range]) return;
    var kind = button.dataset.rangeFor;
    ranges[kind] = button.dataset.range;
    try { window.localStorage.setItem("callboard:range:" + kind, ranges[kind]); } catch (e) { /* private mode */ }
    if (kind === "depth") { stored = null; storedAt = 0; }
    updateChart();
  });

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
    // The template gives the question for one job (data-confirm-one) and for {n} (hx-confirm): the
    // words agree with the count (dashboard/words.py plural).
    var question = n === 1 && elt.dataset.confirmOne ? elt.dataset.confirmOne : evt.detail.question;
    if (window.confirm(question.replace("{n}", n.toLocaleString("en")))) evt.detail.issueRequest(true);
  });

  // The live job list (partials/job_table.html, [data-live-list]): its poll asks for the read that
  // every viewer shares (live=1), and is held while the user has rows selected, a control is on its
  // way or running, the page-size menu has the focus, or a press (mouse, pen, touch) that began in
  // it is not yet released: a swap between press and release would take away the link or box
  // pressed, and the click would be lost. An answer that finds the list held is dropped. A control's
  // own reload (callboard:changed) is never held. Focus survives a swap through the rows' stable ids
  // (htmx restores it); the page's scroll is not touched.
  var pressed = null;
  document.addEventListener("pointerdown", function (evt) {
    pressed = evt.target.closest ? evt.target.closest("[data-live-list]") : null;
  }, true);
  // The click follows the release in the same task, before any answer can be swapped in.
  function released() { pressed = null; }
  document.addEventListener("pointerup", released, true);
  document.addEventListener("pointercancel", released, true);

  function listHeld(list) {
    if (pressed === list) return true;
    if (list.querySelector("input[name=ids]:checked")) return true;
    if (document.querySelector("[data-action].htmx-request, #operation [data-status=running]")) return true;
    var active = document.activeElement;
    return !!(active && active.tagName === "SELECT" && list.contains(active));
  }

  function livePoll(detail) {
    var event = detail.triggeringEvent || (detail.requestConfig && detail.requestConfig.triggeringEvent);
    var elt = detail.elt || (detail.requestConfig && detail.requestConfig.elt);
    return !!(event && event.type === "callboard:poll" && elt && elt.hasAttribute("data-live-list"));
  }

  document.addEventListener("htmx:configRequest", function (evt) {
    if (!livePoll(evt.detail)) return;
    if (listHeld(evt.detail.elt)) { evt.preventDefault(); return; }
    evt.detail.parameters.live = "1";
  });

  document.addEventListener("htmx:beforeSwap", function (evt) {
    if (livePoll(evt.detail) && listHeld(evt.detail.requestConfig.elt)) evt.detail.shouldSwap = false;
  });

  // Say so while a selection holds the list.
  document.addEventListener("change", function (evt) {
    var list = evt.target.closest ? evt.target.closest("[data-live-list]") : null;
    var note = list && list.querySelector("[data-held-note]");
    if (note) note.hidden = !list.querySelector("input[name=ids]:checked");
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

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("select[data-theme-choice]").forEach(function (s) { s.value = savedTheme(); });
    updateChart(); showVisibility(); startPolling();
  });
  document.addEventListener("htmx:afterSettle", updateChart);
  document.addEventListener("visibilitychange", onVisibilityChange);
  // A failed poll (server gone) marks the indicator until the next successful swap.
  document.addEventListener("htmx:sendError", function () { setLive("offline"); });
  document.addEventListener("htmx:afterSwap", showVisibility);
})();
