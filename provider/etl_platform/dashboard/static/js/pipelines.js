// The pipelines table: one row per pipeline with its flags (failing, slow, growing), sortable by column.
import { seriesTrends } from "./buckets.js";
import { $, el } from "./dom.js";
import { failureRate, fmtAgo, fmtCompact, fmtDuration, fmtInt, fmtPct, fmtTime, isNum, median } from "./format.js";
import { RANGES, actions, state } from "./state.js";
import { sparkline } from "./svg.js";

const SLOW_FACTOR = 2; // p95 at least this many times the median p95 of the other pipelines
const GROWING = 0.25; // rows in the 2nd half of the range at least 25 % above the 1st half

function pipelineRows() {
  const pipelines = (state.stats && state.stats.pipelines) || [];
  const trends = seriesTrends();
  return pipelines.map((p) => {
    const by = Object.assign({ pending: 0, running: 0, success: 0, failed: 0 }, p.by_status || {});
    const trend = trends.get(p.pipeline) || { growth: null, spark: [] };
    const rate = failureRate(by);
    // Slow: p95 well above the median p95 of the other pipelines (also meaningful with just two).
    const med = median(pipelines.filter((o) => o !== p).map((o) => o.p95_duration_s));
    return Object.assign({}, p, {
      by,
      failure_rate: rate,
      failing: rate > 0,
      slow:
        pipelines.length > 1 &&
        isNum(p.p95_duration_s) &&
        isNum(med) &&
        p.p95_duration_s >= SLOW_FACTOR * med &&
        p.p95_duration_s - med >= 1,
      growth: trend.growth,
      growing: isNum(trend.growth) && trend.growth >= GROWING,
      spark: trend.spark,
    });
  });
}

function sortRows(rows) {
  const { key, dir } = state.sort;
  const val = (r) => {
    const v = r[key];
    if (key === "last_started_at") return v ? new Date(v).getTime() : null;
    return v;
  };
  return rows.slice().sort((a, b) => {
    const va = val(a);
    const vb = val(b);
    if (va === vb) return a.pipeline < b.pipeline ? -1 : 1;
    if (va === null || va === undefined) return 1; // missing values last either way
    if (vb === null || vb === undefined) return -1;
    if (typeof va === "string") return dir * va.localeCompare(vb);
    return dir * (va - vb);
  });
}

export function renderPipelines() {
  const tbody = $("#pipelines tbody");
  const rows = sortRows(pipelineRows());
  for (const th of document.querySelectorAll("#pipelines th[data-sort]")) {
    th.classList.toggle("sorted-asc", th.dataset.sort === state.sort.key && state.sort.dir > 0);
    th.classList.toggle("sorted-desc", th.dataset.sort === state.sort.key && state.sort.dir < 0);
  }
  if (!rows.length) {
    tbody.replaceChildren(
      el("tr", {}, el("td", { colspan: 10, class: "empty", text: "No pipeline runs in the " + RANGES[state.range].label }))
    );
    return;
  }
  tbody.replaceChildren(...rows.map(pipelineRow));
}

function pipelineRow(r) {
  const cls = [r.failing && "failing", r.slow && "slow", r.growing && "growing", r.pipeline === state.pipeline && "selected"]
    .filter(Boolean)
    .join(" ");
  return el(
    "tr",
    {
      class: cls,
      dataset: {
        pipeline: r.pipeline,
        failing: String(r.failing),
        slow: String(r.slow),
        growing: String(r.growing),
      },
      title: "Show only " + r.pipeline,
      onclick: () => actions.selectPipeline(r.pipeline === state.pipeline ? "" : r.pipeline),
    },
    el(
      "td",
      {},
      el("span", { class: "pipeline-name", text: r.pipeline }),
      r.failing ? el("span", { class: "flag failing", text: "failing" }) : null,
      r.slow ? el("span", { class: "flag slow", text: "slow" }) : null,
      r.growing ? el("span", { class: "flag growing", text: "growing" }) : null
    ),
    el("td", { class: "num", text: fmtInt(r.runs) }),
    el(
      "td",
      { class: "num counts" },
      el("span", { class: "s", text: fmtInt(r.by.success) }),
      " / ",
      el("span", { class: "f", text: fmtInt(r.by.failed) }),
      " / ",
      el("span", { class: "r", text: fmtInt(r.by.running + r.by.pending) })
    ),
    ...figureCells(r)
  );
}

/** The row's cells after the counts: rate, durations, rows, rows/s, trend and last start. */
function figureCells(r) {
  const growthText = isNum(r.growth)
    ? (r.growth >= 0 ? "+" : "") + Math.round(r.growth * 100) + " %"
    : r.growth === Infinity
      ? "new"
      : "";
  return [
    el("td", { class: "num" + (r.failing ? " rate-bad" : ""), text: fmtPct(r.failure_rate) }),
    el("td", { class: "num", text: fmtDuration(r.avg_duration_s) }),
    el("td", {
      class: "num" + (r.slow ? " p95-slow" : ""),
      text: fmtDuration(r.p95_duration_s),
      title: r.slow ? "p95 at least " + SLOW_FACTOR + "× the median p95 of the other pipelines" : null,
    }),
    el("td", { class: "num", text: fmtCompact(r.rows), title: fmtInt(r.rows) }),
    el("td", { class: "num", text: fmtCompact(r.rows_per_second) }),
    el(
      "td",
      { title: "rows per bucket over the " + RANGES[state.range].label },
      sparkline(r.spark),
      growthText ? el("span", { class: "trend " + (r.growing ? "up" : "down"), text: growthText }) : null
    ),
    el("td", { title: fmtTime(r.last_started_at), text: fmtAgo(r.last_started_at) }),
  ];
}
