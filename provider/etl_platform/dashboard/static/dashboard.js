/* ETL performance dashboard: vanilla JS + hand-drawn SVG, no external resources, no build step.
 *
 * The page's bootstrap (an ES module; the others are under js/, one job each): it reads the filters from
 * the URL's hash, binds the controls and loads everything. Every URL is relative (api/..., static/...) so
 * the page works under /etl/ and inside the Airflow UI's iframe. API contract: docs/dashboard.md.
 */
import { renderCharts } from "./js/charts.js";
import { $ } from "./js/dom.js";
import { renderErrors } from "./js/errors.js";
import { isNum } from "./js/format.js";
import { connectLive } from "./js/live.js";
import { renderPipelines } from "./js/pipelines.js";
import { loadRuns, replaceRow } from "./js/runs.js";
import { loadSeries } from "./js/series.js";
import { loadStats, renderPipelineOptions, renderStats } from "./js/stats.js";
import { actions, readHash, resetPages, state, writeHash } from "./js/state.js";

const PERIODIC_MS = 60000; // everything refreshes this often anyway (live events: more often)

function selectPipeline(name) {
  state.pipeline = name;
  resetPages();
  writeHash();
  renderPipelineOptions();
  renderStats();
  renderPipelines();
  renderCharts();
  loadRuns();
  connectLive();
}

function reloadAll() {
  loadStats();
  loadSeries();
  loadRuns({ quiet: true });
}

/** Filters changed: back to page 1 of the runs, with the URL's hash saying which filters. */
function reloadRuns() {
  resetPages();
  writeHash();
  loadRuns();
}

function bindFilters() {
  $("#range").addEventListener("change", (e) => {
    state.range = e.target.value;
    writeHash();
    loadStats();
    loadSeries();
  });
  $("#refresh").addEventListener("click", reloadAll);
  $("#filter-pipeline").addEventListener("change", (e) => selectPipeline(e.target.value));
  $("#clear-pipeline").addEventListener("click", () => selectPipeline(""));
  $("#filter-status").addEventListener("change", (e) => {
    state.status = e.target.value;
    reloadRuns();
  });
  for (const id of ["#filter-since", "#filter-until"]) {
    $(id).addEventListener("change", () => {
      state.since = $("#filter-since").value;
      state.until = $("#filter-until").value;
      reloadRuns();
    });
  }
  $("#page-size").addEventListener("change", (e) => {
    state.pageSize = parseInt(e.target.value, 10) || 50;
    reloadRuns();
  });
  $("#clear-filters").addEventListener("click", () => {
    state.status = "";
    state.since = "";
    state.until = "";
    $("#filter-status").value = "";
    $("#filter-since").value = "";
    $("#filter-until").value = "";
    if (state.pipeline) selectPipeline("");
    else reloadRuns();
  });
  $("#filters").addEventListener("submit", (e) => e.preventDefault());
}

function bindTables() {
  $("#next-page").addEventListener("click", () => {
    if (!state.nextCursor) return;
    state.cursors.push(state.nextCursor);
    loadRuns({ onErrorPop: true });
  });
  $("#prev-page").addEventListener("click", () => {
    if (state.cursors.length <= 1) return;
    state.cursors.pop();
    loadRuns();
  });
  for (const th of document.querySelectorAll("#pipelines th[data-sort]")) {
    th.addEventListener("click", () => {
      const key = th.dataset.sort;
      if (state.sort.key === key) state.sort.dir = -state.sort.dir;
      else state.sort = { key, dir: key === "pipeline" ? 1 : -1 };
      writeHash();
      renderPipelines();
    });
  }
  $(".error-close").addEventListener("click", () => {
    state.errors = {};
    renderErrors();
  });
}

function bindWindow() {
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(renderCharts, 150);
  });
  window.addEventListener("hashchange", () => {
    const before = JSON.stringify([state.pipeline, state.status, state.since, state.until, state.pageSize, state.range]);
    readHash();
    if (JSON.stringify([state.pipeline, state.status, state.since, state.until, state.pageSize, state.range]) !== before) {
      bindValues();
      resetPages();
      reloadAll();
      connectLive();
    }
  });
  setInterval(() => {
    if (!document.hidden) {
      loadStats();
      loadSeries();
    }
  }, PERIODIC_MS);
  // Running rows show their elapsed time: tick it while page 1 shows running runs.
  setInterval(() => {
    if (state.runs.some((r) => r.status === "running" && !isNum(r.duration_s))) {
      for (const r of state.runs) if (r.status === "running" && !isNum(r.duration_s)) replaceRow(r);
    }
  }, 5000);
}

function bindValues() {
  $("#range").value = state.range;
  $("#filter-status").value = state.status;
  $("#filter-since").value = state.since;
  $("#filter-until").value = state.until;
  $("#page-size").value = String(state.pageSize);
  renderPipelineOptions();
}

function init() {
  actions.selectPipeline = selectPipeline;
  readHash();
  bindValues();
  bindFilters();
  bindTables();
  bindWindow();
  reloadAll();
  connectLive();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
else init();
