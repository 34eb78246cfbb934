// The stats cards (overall or the selected pipeline) and the pipeline filter's options, from GET api/stats.
import { api } from "./api.js";
import { $, el } from "./dom.js";
import { failureRate, fmtBytes, fmtCompact, fmtDuration, fmtInt, fmtPct, fmtTime } from "./format.js";
import { setError } from "./errors.js";
import { renderPipelines } from "./pipelines.js";
import { RANGES, rangeBounds, seq, state } from "./state.js";

export async function loadStats() {
  const my = ++seq.stats;
  const { since } = rangeBounds();
  try {
    const { data, headers } = await api("stats", { since: since.toISOString() });
    if (my !== seq.stats) return;
    state.stats = data;
    setError("stats", null);
    $("#cache-info").textContent = "stats cache: " + (headers.get("X-ETL-Cache") || "n/a");
    $("#updated").textContent = "updated " + fmtTime(new Date().toISOString());
    renderStats();
    renderPipelineOptions();
    renderPipelines();
  } catch (e) {
    if (my === seq.stats) setError("stats", e);
  }
}

function currentScope() {
  if (!state.stats) return null;
  if (!state.pipeline) return state.stats.overall;
  return (
    (state.stats.pipelines || []).find((p) => p.pipeline === state.pipeline) || {
      runs: 0,
      by_status: {},
      avg_duration_s: null,
      p95_duration_s: null,
      rows: 0,
      bytes: 0,
      rows_per_second: null,
    }
  );
}

function card(key, label, value, shown, opts) {
  return el(
    "div",
    {
      class: "card " + ((opts && opts.cls) || ""),
      dataset: { stat: key, value: value === null || value === undefined ? "" : String(value) },
      title: (opts && opts.title) || null,
    },
    el("div", { class: "label", text: label }),
    el("div", { class: "value", text: shown }),
    opts && opts.sub ? el("div", { class: "sub", text: opts.sub }) : null
  );
}

export function renderStats() {
  const s = currentScope();
  const box = $("#stats");
  if (!s) return;
  const by = Object.assign({ pending: 0, running: 0, success: 0, failed: 0 }, s.by_status || {});
  const rate = failureRate(by);
  $("#stats-title").textContent = state.pipeline ? "Pipeline " + state.pipeline : "Overview";
  // The API rounds `since` down to its UTC midnight (the rollup is per day): say which range it is.
  const since = state.stats && state.stats.since;
  $("#scope").textContent = RANGES[state.range].label + (since ? " · since " + fmtTime(since) : "");
  $("#scope").title = since ? "stats since " + since + " (ranges are whole UTC days)" : "";
  $("#clear-pipeline").hidden = !state.pipeline;
  box.replaceChildren(
    card("runs", "Runs", s.runs, fmtInt(s.runs), { title: fmtInt(s.runs) + " runs" }),
    card("success", "Success", by.success, fmtInt(by.success), { cls: "success" }),
    card("failed", "Failed", by.failed, fmtInt(by.failed), { cls: "failed" + (by.failed ? " bad" : "") }),
    card("running", "Running", by.running, fmtInt(by.running), {
      cls: "running",
      sub: by.pending ? fmtInt(by.pending) + " pending" : null,
    }),
    card("failure_rate", "Failure rate", rate, fmtPct(rate), {
      cls: rate > 0 ? "bad" : "",
      title: "failed / (success + failed)",
    }),
    card("avg_duration_s", "Avg duration", s.avg_duration_s, fmtDuration(s.avg_duration_s), {
      title: "finished runs",
    }),
    card("p95_duration_s", "p95 duration", s.p95_duration_s, fmtDuration(s.p95_duration_s), {
      title: "finished runs (histogram bucket, ±10 %)",
    }),
    card("rows", "Rows", s.rows, fmtCompact(s.rows), { title: fmtInt(s.rows) + " rows", sub: fmtBytes(s.bytes) }),
    card("rows_per_second", "Rows/s", s.rows_per_second, fmtCompact(s.rows_per_second), {
      title: "sum of rows / sum of durations of finished runs",
    })
  );
}

export function renderPipelineOptions() {
  const select = $("#filter-pipeline");
  const names = new Set(((state.stats && state.stats.pipelines) || []).map((p) => p.pipeline));
  if (state.pipeline) names.add(state.pipeline);
  const sorted = [...names].sort();
  const existing = [...select.options].slice(1).map((o) => o.value);
  if (existing.join("\n") !== sorted.join("\n")) {
    select.replaceChildren(
      el("option", { value: "", text: "All pipelines" }),
      ...sorted.map((n) => el("option", { value: n, text: n }))
    );
  }
  select.value = state.pipeline;
}
