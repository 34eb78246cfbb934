// The per-run Transfer view: a DAG run's transfer attempts from GET api/transfer, each with SVG charts of
// its chunks. Every ledger value is set as text (textContent / attributes), never parsed as HTML.
import { el, svgEl as svg } from "./js/dom.js";
import { fmtInt, isNum } from "./js/format.js";
import { navigateTop } from "./js/links.js";

const params = new URLSearchParams(location.search);
const query = {
  dag_id: params.get("dag_id") || "",
  run_id: params.get("run_id") || "",
  task_id: params.get("task_id") || "",
  map_index: mapIndex(params.get("map_index")),
};

/** The UI leaves {MAP_INDEX} as is (or sends -1) for a task that is not mapped: anything else but an integer is -1. */
function mapIndex(value) {
  if (value === null) return null;
  return /^\s*-?\d+\s*$/.test(value) ? Number.parseInt(value, 10) : -1;
}

// The Transfer view's own formats (binary byte units, durations in min and s); js/format.js has the rest.
function fmtCompact(v) {
  if (!isNum(v)) return "–";
  const units = [[1e9, "G"], [1e6, "M"], [1e3, "k"]];
  for (const [size, unit] of units) if (Math.abs(v) >= size) return (v / size).toFixed(1) + unit;
  return String(Math.round(v * 10) / 10);
}

function fmtBytes(v) {
  if (!isNum(v)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return (i ? v.toFixed(1) : String(v)) + " " + units[i];
}

function fmtDuration(s) {
  if (!isNum(s)) return "–";
  if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + " s";
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${Math.round(s % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

const fmtTime = (iso) => (iso ? new Date(iso).toLocaleString() : "–");

// ------------------------------------------------------------------------------------------ links
/** Airflow's root: this page is <root>etl/transfer. */
function airflowRoot() {
  return location.pathname.replace(/etl\/transfer\/?$/, "");
}

function airflowUrl(dagId, runId, taskId, index) {
  let url = `${airflowRoot()}dags/${encodeURIComponent(dagId)}/runs/${encodeURIComponent(runId)}`;
  if (taskId) {
    url += `/tasks/${encodeURIComponent(taskId)}`;
    if (isNum(index) && index >= 0) url += `/mapped/${index}`;
  }
  return url;
}

// ------------------------------------------------------------------------------------------ data
async function load() {
  const qs = new URLSearchParams({ dag_id: query.dag_id, run_id: query.run_id });
  if (query.task_id) qs.set("task_id", query.task_id);
  if (query.map_index !== null) qs.set("map_index", String(query.map_index));
  const resp = await fetch("api/transfer?" + qs.toString(), {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
  });
  let body = null;
  try {
    body = await resp.json();
  } catch (e) {
    /* not JSON */
  }
  if (!resp.ok) {
    const detail = body && typeof body.detail === "string" ? body.detail : resp.statusText || `HTTP ${resp.status}`;
    throw new Error(resp.status === 401 ? "Not signed in to Airflow" : detail);
  }
  return body;
}

function showError(message) {
  const banner = document.getElementById("error");
  banner.querySelector(".error-text").textContent = message || "";
  banner.hidden = !message;
}

// ------------------------------------------------------------------------------------------ charts
const W = 460;
const H = 200;
const M = { top: 12, right: 12, bottom: 28, left: 56 };

/**
 * A line (or dots) chart of `points` ({x, y}); x in ms since epoch when `time`, else a chunk number.
 */
function chart(name, points, opts) {
  const box = el("figure", { class: "chart transfer-chart", "data-chart": name });
  box.appendChild(el("figcaption", { class: "hint", text: opts.title }));
  if (!points.length) {
    box.appendChild(el("div", { class: "empty", text: "no chunks recorded" }));
    return box;
  }
  const xs = points.map((p) => p.x);
  const ys = points.map((p) => p.y);
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs) === x0 ? x0 + 1 : Math.max(...xs);
  const y1 = Math.max(...ys, 0) || 1;
  const sx = (x) => M.left + ((x - x0) / (x1 - x0)) * (W - M.left - M.right);
  const sy = (y) => H - M.bottom - (y / y1) * (H - M.top - M.bottom);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": opts.title });
  const axis = svg("g", { class: "axis" });
  for (const t of [0, 0.5, 1]) {
    const y = sy(y1 * t);
    axis.appendChild(svg("line", { class: "gridline", x1: M.left, x2: W - M.right, y1: y, y2: y }));
    axis.appendChild(svg("text", { x: M.left - 6, y: y + 4, "text-anchor": "end", text: opts.fmtY(y1 * t) }));
  }
  axis.appendChild(svg("line", { x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom }));
  axis.appendChild(svg("text", { x: M.left, y: H - 8, text: opts.fmtX(x0) }));
  axis.appendChild(svg("text", { x: W - M.right, y: H - 8, "text-anchor": "end", text: opts.fmtX(x1) }));
  root.appendChild(axis);
  const d = points.map((p, i) => `${i ? "L" : "M"}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join("");
  root.appendChild(svg("path", { class: "series-line", d, stroke: opts.color }));
  const dots = svg("g", { fill: opts.color });
  for (const p of points) {
    dots.appendChild(
      svg("circle", { cx: sx(p.x).toFixed(1), cy: sy(p.y).toFixed(1), r: 2.5 }, svg("title", { text: p.label }))
    );
  }
  root.appendChild(dots);
  box.appendChild(root);
  return box;
}

function charts(attempt) {
  const chunks = attempt.chunks;
  const t0 = attempt.started_at ? new Date(attempt.started_at).getTime() : null;
  const since = (ms) => (t0 === null ? "" : `+${((ms - t0) / 1000).toFixed(1)} s`);
  let total = 0;
  const cumulative = [];
  if (t0 !== null && chunks.length) cumulative.push({ x: t0, y: 0, label: "start" });
  for (const c of chunks) {
    total += c.rows;
    const at = new Date(c.committed_at).getTime();
    cumulative.push({ x: at, y: total, label: `${fmtInt(total)} rows at ${fmtTime(c.committed_at)} (stream ${c.stream + 1})` });
  }
  const perChunk = (key, unit) =>
    chunks
      .map((c, i) => ({ x: i + 1, y: c[key], label: `chunk ${i + 1}: ${fmtCompact(c[key])} ${unit}` }))
      .filter((p) => isNum(p.y));
  return el(
    "div",
    { class: "charts" },
    chart("rows", cumulative, {
      title: "Rows moved over time",
      color: "#017cee",
      fmtX: since,
      fmtY: fmtCompact,
    }),
    chart("rate", perChunk("rows_per_second", "rows/s"), {
      title: "Rows/s per chunk",
      color: "#15803d",
      fmtX: (x) => `chunk ${x}`,
      fmtY: fmtCompact,
    }),
    chart("memory", perChunk("rss_mb", "MB"), {
      title: "Worker memory (RSS, MB) per chunk",
      color: "#7c3aed",
      fmtX: (x) => `chunk ${x}`,
      fmtY: (v) => fmtCompact(v) + " MB",
    })
  );
}

// ------------------------------------------------------------------------------------------ render
function fact(label, value, cls) {
  return el("div", { class: "card" + (cls ? " " + cls : "") },
    el("div", { class: "label", text: label }),
    el("div", { class: "value", text: value })
  );
}

function attemptSection(a) {
  const map = a.map_index >= 0 ? ` [${a.map_index}]` : "";
  const head = el(
    "div",
    { class: "panel-head" },
    el("h2", { text: `${a.task_id}${map} · try ${a.try_number}` }),
    el("span", { class: "badge " + a.status, text: a.status }),
    el("span", { class: "hint", text: `${a.source || "?"} → ${a.destination || "?"}` }),
    el("a", {
      class: "attempt-link",
      href: airflowUrl(query.dag_id, query.run_id, a.task_id, a.map_index),
      target: "_top",
      text: "task in Airflow",
      onclick: navigateTop,
    })
  );
  const facts = el(
    "div",
    { class: "cards facts" },
    fact("Strategy", a.strategy || "–"),
    fact("Resumed from", a.resumed_from || "start"),
    fact("Rows", fmtInt(a.rows)),
    fact("Bytes", fmtBytes(a.bytes)),
    fact("Duration", fmtDuration(a.seconds)),
    fact("Rows/s", fmtCompact(a.rows_per_second)),
    fact("Peak memory", isNum(a.peak_rss_mb) ? fmtCompact(a.peak_rss_mb) + " MB" : "–"),
    fact("Chunks", fmtInt(a.chunks.length) + (a.truncated ? "+" : ""))
  );
  return el(
    "section",
    { class: "panel attempt", "data-task-id": a.task_id, "data-try": a.try_number, "data-status": a.status },
    head,
    el("p", { class: "hint", text: `started ${fmtTime(a.started_at)} · finished ${fmtTime(a.finished_at)}` }),
    facts,
    a.error ? el("pre", { class: "attempt-error", text: a.error }) : null,
    a.truncated ? el("p", { class: "hint", text: "Only the first chunks are shown (the view's limit)." }) : null,
    charts(a)
  );
}

function render(body) {
  const main = document.getElementById("attempts");
  if (!body.attempts.length) {
    main.replaceChildren(
      el("section", { class: "panel" }, el("p", { class: "empty", id: "no-transfer", text: "No transfer recorded for this run." }))
    );
    return;
  }
  main.replaceChildren(...body.attempts.map(attemptSection));
}

async function refresh() {
  try {
    const body = await load();
    showError("");
    render(body);
  } catch (e) {
    showError(e.message);
    document.getElementById("attempts").replaceChildren();
  }
}

function init() {
  const scope = query.task_id ? `${query.dag_id} · ${query.run_id} · ${query.task_id}` : `${query.dag_id} · ${query.run_id}`;
  document.getElementById("scope").textContent = scope;
  document.title = `Transfer · ${scope}`;
  const open = document.getElementById("open-airflow");
  open.href = airflowUrl(query.dag_id, query.run_id, query.task_id, query.map_index);
  open.addEventListener("click", navigateTop);
  const etl = document.getElementById("open-etl");
  etl.href = `${airflowRoot()}etl/`;
  etl.addEventListener("click", (ev) => {
    if (window.top !== window) {
      ev.preventDefault();
      location.href = etl.href; // inside the UI: the dashboard in this same frame
    }
  });
  document.getElementById("refresh").addEventListener("click", refresh);
  if (!query.dag_id || !query.run_id) {
    showError("This page needs dag_id and run_id in its address.");
    document.getElementById("attempts").replaceChildren();
    return;
  }
  refresh();
}

init();
