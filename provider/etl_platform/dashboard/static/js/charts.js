// The two charts: rows per bucket stacked by pipeline (throughput) and run durations (avg and p95).
import { bucketTimes } from "./buckets.js";
import { $, svgEl, title } from "./dom.js";
import { bucketLabel, fmtDuration, fmtInt, isNum } from "./format.js";
import { RANGES, state } from "./state.js";
import { emptyNote, frame, hoverBands, legend } from "./svg.js";

const TOP_N = 6; // pipelines drawn on their own in the throughput chart; the rest is "other"
const PALETTE = ["#017cee", "#f59e0b", "#10b981", "#8b5cf6", "#ef4444", "#06b6d4", "#ec4899", "#84cc16"];
const OTHER_COLOR = "#94a3b8";

export function renderCharts() {
  const series = state.series;
  if (!series) return;
  const points = (series.points || []).filter((p) => !state.pipeline || p.pipeline === state.pipeline);
  renderThroughput($("#throughput-chart"), series, points);
  renderDuration($("#duration-chart"), series, points);
}

/** Rows per bucket of the TOP_N pipelines (by rows) and of "other", with their colours. */
function throughputValues(points, times) {
  const index = new Map(times.map((t, i) => [t, i]));
  const totals = new Map();
  for (const p of points) totals.set(p.pipeline, (totals.get(p.pipeline) || 0) + (p.rows || 0));
  const ranked = [...totals.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([n]) => n);
  const top = ranked.slice(0, TOP_N);
  const hasOther = ranked.length > TOP_N;
  const names = hasOther ? [...top, "other"] : top;
  const colors = new Map(names.map((n, i) => [n, n === "other" ? OTHER_COLOR : PALETTE[i % PALETTE.length]]));
  const values = new Map(names.map((n) => [n, new Array(times.length).fill(0)]));
  for (const p of points) {
    const name = top.includes(p.pipeline) ? p.pipeline : "other";
    values.get(name)[index.get(new Date(p.ts).getTime())] += p.rows || 0;
  }
  const stackTotals = times.map((_, i) => names.reduce((s, n) => s + values.get(n)[i], 0));
  return { names, colors, values, stackTotals };
}

/** Stacked bars, one path per pipeline (a rectangle per bucket): buckets are sums, not samples. */
function stackedBars(f, times, step, { names, colors, values }) {
  const base = new Array(times.length).fill(0);
  const slot = times.length > 1 ? f.x(times[0] + step) - f.x(times[0]) : f.pw / 2;
  const barW = Math.max(1, slot * (slot > 6 ? 0.8 : 0.95));
  const areas = svgEl("g", { class: "bars" });
  for (const n of names) {
    const v = values.get(n);
    let d = "";
    times.forEach((t, i) => {
      if (!(v[i] > 0)) return;
      const x0 = Math.max(f.m.left, f.x(t) - barW / 2);
      const x1 = Math.min(f.m.left + f.pw, f.x(t) + barW / 2);
      const yTop = f.y(base[i] + v[i]);
      const yBottom = f.y(base[i]);
      d += `M${x0.toFixed(1)},${yBottom.toFixed(1)}V${yTop.toFixed(1)}H${x1.toFixed(1)}V${yBottom.toFixed(1)}Z`;
    });
    if (d) {
      areas.appendChild(
        svgEl("path", { class: "series-bars", d, fill: colors.get(n), dataset: { pipeline: n } }, title(n))
      );
    }
    v.forEach((x, i) => (base[i] += x));
  }
  return areas;
}

function renderThroughput(container, series, points) {
  const { times, step } = bucketTimes(series, points);
  const bars = throughputValues(points, times);
  const { names, colors, values, stackTotals } = bars;
  const t0 = times.length ? times[0] : series._since;
  const t1 = times.length ? times[times.length - 1] : series._until;
  const f = frame(container, {
    t0,
    t1,
    yMax: Math.max(...stackTotals, 0),
    label: "rows per " + series.bucket + " by pipeline",
    yLabel: "rows/" + series.bucket,
  });
  f.svg.appendChild(stackedBars(f, times, step, bars));
  f.svg.appendChild(hoverBands(f, times, step, (t, i) => {
    const lines = names
      .filter((n) => values.get(n)[i] > 0)
      .map((n) => `${n}: ${fmtInt(values.get(n)[i])} rows`);
    return `${bucketLabel(t, series.bucket)}\ntotal: ${fmtInt(stackTotals[i])} rows${lines.length ? "\n" + lines.join("\n") : ""}`;
  }));
  f.svg.appendChild(legend(f, names.map((n) => ({ name: n, color: colors.get(n) }))));
  if (!points.length) emptyNote(f, "no runs in the " + RANGES[state.range].label);
  container.replaceChildren(f.svg);
}

/** Per bucket: the runs-weighted average duration and the largest p95 of its pipelines. */
function durationValues(points, times) {
  const index = new Map(times.map((t, i) => [t, i]));
  const agg = times.map(() => ({ weight: 0, sum: 0, p95: null, pipelines: 0 }));
  for (const p of points) {
    const a = agg[index.get(new Date(p.ts).getTime())];
    if (isNum(p.avg_duration_s)) {
      const w = Math.max(1, p.runs || 0);
      a.weight += w;
      a.sum += p.avg_duration_s * w;
    }
    if (isNum(p.p95_duration_s)) a.p95 = a.p95 === null ? p.p95_duration_s : Math.max(a.p95, p.p95_duration_s);
    a.pipelines += 1;
  }
  return { avg: agg.map((a) => (a.weight ? a.sum / a.weight : null)), p95: agg.map((a) => a.p95) };
}

/** One path per line (gaps, buckets without finished runs, break it) and dots where points are few. */
function durationLines(f, times, lines) {
  const g = svgEl("g", { class: "lines" });
  for (const { name, values, color, dash } of lines) {
    let d = "";
    let pen = false;
    values.forEach((v, i) => {
      if (!isNum(v)) {
        pen = false;
        return;
      }
      d += (pen ? "L" : "M") + f.x(times[i]).toFixed(1) + "," + f.y(v).toFixed(1);
      pen = true;
    });
    if (d) {
      g.appendChild(
        svgEl(
          "path",
          { class: "series-line", d, stroke: color, "stroke-dasharray": dash || null, dataset: { series: name } },
          title(name)
        )
      );
    }
    values.forEach((v, i) => {
      const isolated = isNum(v) && !isNum(values[i - 1]) && !isNum(values[i + 1]);
      if (isolated || (isNum(v) && times.length <= 40)) {
        g.appendChild(svgEl("circle", { cx: f.x(times[i]), cy: f.y(v), r: 2.5, fill: color }));
      }
    });
  }
  return g;
}

function renderDuration(container, series, points) {
  const { times, step } = bucketTimes(series, points);
  const { avg, p95 } = durationValues(points, times);
  const many = new Set(points.map((p) => p.pipeline)).size > 1;
  $("#duration-hint").textContent = many
    ? "average of finished runs (weighted by runs) and p95 of the slowest pipeline per bucket"
    : "average and p95 of finished runs";
  const t0 = times.length ? times[0] : series._since;
  const t1 = times.length ? times[times.length - 1] : series._until;
  const f = frame(container, {
    t0,
    t1,
    yMax: Math.max(0, ...avg.filter(isNum), ...p95.filter(isNum)),
    durations: true,
    label: "run duration per " + series.bucket,
    yLabel: "duration",
  });
  const lines = [
    { name: "avg", values: avg, color: "#017cee" },
    { name: many ? "p95 (slowest pipeline)" : "p95", values: p95, color: "#f59e0b", dash: "5 3" },
  ];
  f.svg.appendChild(durationLines(f, times, lines));
  f.svg.appendChild(
    hoverBands(f, times, step, (t, i) => {
      if (!isNum(avg[i]) && !isNum(p95[i])) return bucketLabel(t, series.bucket) + "\nno finished runs";
      return `${bucketLabel(t, series.bucket)}\navg: ${fmtDuration(avg[i])}\np95: ${fmtDuration(p95[i])}`;
    })
  );
  f.svg.appendChild(legend(f, lines.map((l) => ({ name: l.name, color: l.color, dash: l.dash }))));
  if (!points.length) emptyNote(f, "no finished runs in the " + RANGES[state.range].label);
  container.replaceChildren(f.svg);
}
