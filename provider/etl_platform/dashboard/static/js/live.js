// Live updates: the SSE stream of run events (our own reconnect with backoff) patches the runs table and
// schedules a throttled refresh of the stats and charts.
import { $ } from "./dom.js";
import { renderRuns, replaceRow, loadRuns } from "./runs.js";
import { loadSeries } from "./series.js";
import { loadStats } from "./stats.js";
import { matchesFilters, runKey, state } from "./state.js";

const REFRESH_EVERY_MS = 2000; // live events refresh stats and charts at most this often
const live = { es: null, retry: 0, timer: null, url: null };
const refresh = { timer: null, last: 0, runs: false };

function setLive(status, text) {
  const node = $("#live-status");
  node.className = "live " + status;
  node.textContent = text;
}

export function connectLive() {
  if (live.timer) clearTimeout(live.timer);
  live.timer = null;
  if (live.es) live.es.close();
  if (typeof EventSource === "undefined") {
    setLive("disconnected", "no live updates (EventSource unsupported)");
    return;
  }
  const url = "api/stream" + (state.pipeline ? "?pipeline=" + encodeURIComponent(state.pipeline) : "");
  live.url = url;
  setLive("connecting", live.retry ? "reconnecting" : "connecting");
  const es = new EventSource(url, { withCredentials: true });
  live.es = es;
  es.onopen = () => {
    if (live.es !== es) return;
    live.retry = 0;
    setLive("connected", "live");
  };
  es.onerror = () => {
    if (live.es !== es) return;
    // Our own reconnect, with backoff, instead of the browser's fixed retry.
    es.close();
    live.es = null;
    live.retry += 1;
    const delay = Math.min(30000, 1000 * Math.pow(2, live.retry - 1)) * (0.8 + Math.random() * 0.4);
    setLive("disconnected", "disconnected, retry in " + Math.round(delay / 1000) + " s");
    live.timer = setTimeout(connectLive, delay);
    if (live.retry === 2) loadStats(); // surfaces a 401/403 in the banner if that is the cause
  };
  es.addEventListener("run", (ev) => {
    if (live.es !== es) return;
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch (e) {
      return;
    }
    onRunEvent(msg);
  });
}

function onRunEvent(msg) {
  if (!msg || !msg.pipeline || !msg.run_id) return;
  const key = runKey(msg.pipeline, msg.run_id);
  state.flashes.set(key, Date.now() + 2500);
  const run = state.runs.find((r) => r.pipeline === msg.pipeline && r.run_id === msg.run_id);
  let finished = false;
  if (run) {
    if (msg.kind === "dag_run" && msg.status) {
      run.status = msg.status;
      if (msg.status === "success" || msg.status === "failed") {
        run.finished_at = run.finished_at || msg.at;
        finished = true;
      }
    } else if (msg.kind === "task" && run.status === "pending") {
      run.status = "running";
    }
    replaceRow(run);
  } else if (state.cursors.length === 1 && (msg.status === "running" || msg.status === "pending")) {
    addFreshRun(msg);
  }
  scheduleRefresh(finished || (msg.kind === "dag_run" && !run));
}

/** A run page 1 does not show yet: on top, when it matches the filters. */
function addFreshRun(msg) {
  const fresh = {
    pipeline: msg.pipeline,
    run_id: msg.run_id,
    status: msg.kind === "dag_run" ? msg.status : "running",
    started_at: msg.at || new Date().toISOString(),
    finished_at: null,
    duration_s: null,
    rows: 0,
    bytes: 0,
    rows_per_second: null,
    error: null,
  };
  if (matchesFilters(fresh)) {
    state.runs.unshift(fresh);
    if (state.runs.length > state.pageSize) {
      state.runs.length = state.pageSize;
      // The last row moved to the next page; a stale cursor would skip it, so reload on Next.
    }
    renderRuns();
  }
}

/** Stats and charts (and page 1 of the runs when asked) at most every REFRESH_EVERY_MS. */
function scheduleRefresh(withRuns) {
  refresh.runs = refresh.runs || withRuns;
  if (refresh.timer) return;
  const wait = Math.max(250, refresh.last + REFRESH_EVERY_MS - Date.now());
  refresh.timer = setTimeout(() => {
    refresh.timer = null;
    refresh.last = Date.now();
    loadStats();
    loadSeries();
    if (refresh.runs && state.cursors.length === 1) loadRuns({ quiet: true });
    refresh.runs = false;
  }, wait);
}
