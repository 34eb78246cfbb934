/* ETL performance dashboard: vanilla JS + hand-drawn SVG, no external resources.
 *
 * Every URL is relative (api/..., static/...) so the page works under /etl/ and inside the Airflow UI's
 * iframe. The browser authenticates with the Airflow UI's `_token` cookie (same origin).
 * API contract: docs/dashboard.md.
 */
(function () {
  "use strict";

  // ------------------------------------------------------------------------------------------ constants
  const HOUR = 3600e3;
  const DAY = 24 * HOUR;
  const RANGES = {
    "24h": { span: 24 * HOUR, bucket: "hour", label: "last 24 h" },
    "7d": { span: 7 * DAY, bucket: "hour", label: "last 7 days" },
    "30d": { span: 30 * DAY, bucket: "day", label: "last 30 days" },
    "90d": { span: 90 * DAY, bucket: "day", label: "last 90 days" },
  };
  const TOP_N = 6; // pipelines drawn on their own in the throughput chart; the rest is "other"
  const PALETTE = ["#017cee", "#f59e0b", "#10b981", "#8b5cf6", "#ef4444", "#06b6d4", "#ec4899", "#84cc16"];
  const OTHER_COLOR = "#94a3b8";
  const REFRESH_EVERY_MS = 2000; // live events refresh stats and charts at most this often
  const PERIODIC_MS = 60000; // and everything refreshes this often anyway
  const SLOW_FACTOR = 2; // p95 at least this many times the median p95 of the other pipelines
  const GROWING = 0.25; // rows in the 2nd half of the range at least 25 % above the 1st half
  const SVG_NS = "http://www.w3.org/2000/svg";

  // ------------------------------------------------------------------------------------------ state
  const state = {
    range: "7d",
    pipeline: "",
    status: "",
    since: "", // datetime-local values (local time)
    until: "",
    pageSize: 50,
    cursors: [null], // the cursor each visited page was loaded with; the last one is the current page
    nextCursor: null,
    sort: { key: "failure_rate", dir: -1 },
    stats: null,
    series: null,
    runs: [],
    errors: {}, // source -> {status, detail}
    flashes: new Map(), // run key -> time until which the row flashes
  };
  const seq = { stats: 0, series: 0, runs: 0 }; // request counters: late answers of old requests are dropped

  // ------------------------------------------------------------------------------------------ helpers
  const $ = (sel, root) => (root || document).querySelector(sel);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function svgEl(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
  }

  function append(node, children) {
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
  }

  function title(text) {
    return svgEl("title", { text });
  }

  const isNum = (v) => typeof v === "number" && isFinite(v);
  const pad = (n) => String(n).padStart(2, "0");

  function fmtInt(v) {
    return isNum(v) ? Math.round(v).toLocaleString("en-US") : "–";
  }

  function fmtCompact(v, digits) {
    if (!isNum(v)) return "–";
    const a = Math.abs(v);
    const d = digits === undefined ? 1 : digits;
    const trim = (x) => x.toFixed(d).replace(/\.0+$/, "");
    if (a >= 1e12) return trim(v / 1e12) + "T";
    if (a >= 1e9) return trim(v / 1e9) + "B";
    if (a >= 1e6) return trim(v / 1e6) + "M";
    if (a >= 1e4) return trim(v / 1e3) + "k";
    if (a >= 100 || Number.isInteger(v)) return Math.round(v).toLocaleString("en-US");
    return v.toFixed(a >= 10 ? 1 : 2);
  }

  function fmtBytes(v) {
    if (!isNum(v)) return "–";
    if (v === 0) return "0";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    let x = v;
    while (x >= 1024 && i < units.length - 1) {
      x /= 1024;
      i++;
    }
    return (i === 0 ? x : x.toFixed(x >= 100 ? 0 : 1)) + " " + units[i];
  }

  function fmtDuration(s) {
    if (!isNum(s)) return "–";
    if (s < 1) return s.toFixed(2) + " s";
    if (s < 60) return (s < 10 ? s.toFixed(1) : Math.round(s)) + " s";
    if (s < 3600) return Math.floor(s / 60) + "m " + pad(Math.round(s % 60)) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + pad(Math.floor((s % 3600) / 60)) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }

  function fmtTickDuration(s) {
    if (s === 0) return "0";
    if (s < 60) return fmtDuration(s);
    if (s < 3600) return s % 60 ? fmtDuration(s) : s / 60 + "m";
    const h = Math.floor(s / 3600);
    const m = Math.round((s % 3600) / 60);
    return m ? h + "h " + pad(m) + "m" : h + "h";
  }

  function fmtPct(v) {
    if (!isNum(v)) return "–";
    if (v === 0) return "0 %";
    const p = v * 100;
    return (p < 1 ? p.toFixed(2) : p < 10 ? p.toFixed(1) : Math.round(p)) + " %";
  }

  function fmtTime(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    if (isNaN(d)) return iso;
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(
      d.getMinutes()
    )}:${pad(d.getSeconds())}`;
  }

  function fmtAgo(iso) {
    if (!iso) return "–";
    const s = (Date.now() - new Date(iso).getTime()) / 1000;
    if (!isFinite(s)) return iso;
    if (s < 60) return "just now";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  }

  /** A datetime-local value (local time) as ISO 8601 with an offset (UTC), or "" when empty/invalid. */
  function localToIso(value) {
    if (!value) return "";
    const d = new Date(value);
    return isNaN(d) ? "" : d.toISOString();
  }

  function runKey(pipeline, runId) {
    return pipeline + "\u0000" + runId;
  }

  function failureRate(by) {
    const finished = (by.success || 0) + (by.failed || 0);
    return finished ? (by.failed || 0) / finished : 0;
  }

  function median(values) {
    const v = values.filter(isNum).sort((a, b) => a - b);
    if (!v.length) return null;
    const m = Math.floor(v.length / 2);
    return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
  }

  // ------------------------------------------------------------------------------------------ API
  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
      this.detail = detail;
    }
  }

  function formatDetail(detail) {
    if (detail === null || detail === undefined) return "";
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      // FastAPI validation errors: [{loc: ["query", "page_size"], msg: "..."}]
      return detail
        .map((d) => (d && d.loc ? d.loc.filter((p) => p !== "query").join(".") + ": " + d.msg : JSON.stringify(d)))
        .join("; ");
    }
    return JSON.stringify(detail);
  }

  async function api(path, params) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) {
      if (v !== null && v !== undefined && v !== "") qs.set(k, v);
    }
    const url = "api/" + path + (qs.toString() ? "?" + qs.toString() : "");
    let resp;
    try {
      resp = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    } catch (e) {
      throw new ApiError(0, "cannot reach the api-server (" + e.message + ")");
    }
    if (!resp.ok) {
      let detail = resp.statusText || "HTTP " + resp.status;
      try {
        const body = await resp.json();
        if (body && body.detail !== undefined) detail = formatDetail(body.detail);
      } catch (e) {
        /* not JSON */
      }
      throw new ApiError(resp.status, detail);
    }
    return { data: await resp.json(), headers: resp.headers };
  }

  function setError(source, err) {
    if (err) state.errors[source] = err;
    else delete state.errors[source];
    renderErrors();
  }

  /** Airflow's login (it redirects to the auth manager's form) and back to the page, or the UI showing it. */
  function loginUrl() {
    let back = location.href;
    try {
      if (window.top !== window && window.top.location.origin === location.origin) back = window.top.location.href;
    } catch (e) {
      /* a cross-origin parent: come back to the page itself */
    }
    return "../api/v2/auth/login?next=" + encodeURIComponent(back);
  }

  function renderErrors() {
    const banner = $("#error");
    const text = $(".error-text", banner);
    const errors = Object.entries(state.errors);
    text.textContent = "";
    if (!errors.length) {
      banner.hidden = true;
      return;
    }
    if (errors.some(([, e]) => e.status === 401)) {
      append(text, [
        "Not signed in: ",
        el("a", { href: loginUrl(), target: "_top", text: "sign in to Airflow" }),
        ", then reload this page. (" + errors.find(([, e]) => e.status === 401)[1].detail + ")",
      ]);
    } else {
      const lines = errors.map(([source, e]) => {
        const code = e.status === 403 ? "403 forbidden" : e.status ? "HTTP " + e.status : "network";
        return `${source}: ${code}: ${e.detail}`;
      });
      text.textContent = lines.join(" · ");
    }
    banner.hidden = false;
  }

  // ------------------------------------------------------------------------------------------ URL state
  function readHash() {
    const p = new URLSearchParams(location.hash.replace(/^#/, ""));
    if (RANGES[p.get("range")]) state.range = p.get("range");
    state.pipeline = p.get("pipeline") || "";
    state.status = p.get("status") || "";
    state.since = p.get("since") || "";
    state.until = p.get("until") || "";
    const size = parseInt(p.get("size"), 10);
    if ([25, 50, 100].includes(size)) state.pageSize = size;
    const sort = p.get("sort");
    if (sort) {
      state.sort = { key: sort.replace(/^-/, ""), dir: sort.startsWith("-") ? -1 : 1 };
    }
  }

  function writeHash() {
    const p = new URLSearchParams();
    if (state.range !== "7d") p.set("range", state.range);
    if (state.pipeline) p.set("pipeline", state.pipeline);
    if (state.status) p.set("status", state.status);
    if (state.since) p.set("since", state.since);
    if (state.until) p.set("until", state.until);
    if (state.pageSize !== 50) p.set("size", state.pageSize);
    if (!(state.sort.key === "failure_rate" && state.sort.dir === -1)) {
      p.set("sort", (state.sort.dir < 0 ? "-" : "") + state.sort.key);
    }
    const hash = p.toString();
    const url = location.pathname + location.search + (hash ? "#" + hash : "");
    try {
      history.replaceState(null, "", url);
    } catch (e) {
      /* sandboxed iframe: no history */
    }
  }

  function rangeBounds() {
    const r = RANGES[state.range];
    const until = Date.now();
    return { since: new Date(until - r.span), until: new Date(until), bucket: r.bucket };
  }

  // ------------------------------------------------------------------------------------------ stats
  async function loadStats() {
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

  function renderStats() {
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
    const card = (key, label, value, shown, opts) =>
      el(
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

  function renderPipelineOptions() {
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

  // ------------------------------------------------------------------------------------------ pipelines table
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

  function sparkline(values) {
    const w = 90;
    const h = 22;
    const svg = svgEl("svg", { class: "spark", width: w, height: h, viewBox: `0 0 ${w} ${h}` });
    if (values.length < 2) return svg;
    const max = Math.max(...values, 1);
    const x = (i) => (i / (values.length - 1)) * (w - 2) + 1;
    const y = (v) => h - 2 - (v / max) * (h - 4);
    const line = values.map((v, i) => (i ? "L" : "M") + x(i).toFixed(1) + "," + y(v).toFixed(1)).join("");
    svg.appendChild(svgEl("path", { class: "area", d: line + `L${x(values.length - 1)},${h - 1}L${x(0)},${h - 1}Z` }));
    svg.appendChild(svgEl("path", { d: line }));
    return svg;
  }

  function renderPipelines() {
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
    tbody.replaceChildren(
      ...rows.map((r) => {
        const cls = [r.failing && "failing", r.slow && "slow", r.growing && "growing", r.pipeline === state.pipeline && "selected"]
          .filter(Boolean)
          .join(" ");
        const growthText = isNum(r.growth)
          ? (r.growth >= 0 ? "+" : "") + Math.round(r.growth * 100) + " %"
          : r.growth === Infinity
            ? "new"
            : "";
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
            onclick: () => selectPipeline(r.pipeline === state.pipeline ? "" : r.pipeline),
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
          el("td", { title: fmtTime(r.last_started_at), text: fmtAgo(r.last_started_at) })
        );
      })
    );
  }

  // ------------------------------------------------------------------------------------------ series
  async function loadSeries() {
    const my = ++seq.series;
    const { since, until, bucket } = rangeBounds();
    try {
      // All pipelines: the pipelines table needs every trend; the charts filter on the client.
      const { data } = await api("series", { since: since.toISOString(), until: until.toISOString(), bucket });
      if (my !== seq.series) return;
      data._since = since.getTime();
      data._until = until.getTime();
      data._bucket = bucket;
      state.series = data;
      setError("series", null);
      renderCharts();
      renderPipelines();
    } catch (e) {
      if (my === seq.series) setError("series", e);
    }
  }

  /** Bucket start times (ms) covering the range, merged with the times the API returned. */
  function bucketTimes(series, points) {
    const step = series._bucket === "hour" ? HOUR : DAY;
    const times = new Set();
    for (let t = Math.floor(series._since / step) * step; t < series._until; t += step) times.add(t);
    for (const p of points) times.add(new Date(p.ts).getTime());
    return { times: [...times].sort((a, b) => a - b), step };
  }

  function seriesTrends() {
    const out = new Map();
    const series = state.series;
    if (!series || !series.points) return out;
    const { times } = bucketTimes(series, series.points);
    const index = new Map(times.map((t, i) => [t, i]));
    const perPipeline = new Map();
    for (const p of series.points) {
      if (!perPipeline.has(p.pipeline)) perPipeline.set(p.pipeline, new Array(times.length).fill(0));
      perPipeline.get(p.pipeline)[index.get(new Date(p.ts).getTime())] += p.rows || 0;
    }
    const mid = (series._since + series._until) / 2;
    const bins = Math.min(30, times.length);
    for (const [name, values] of perPipeline) {
      let first = 0;
      let second = 0;
      values.forEach((v, i) => {
        if (times[i] < mid) first += v;
        else second += v;
      });
      const growth = first > 0 ? (second - first) / first : second > 0 ? Infinity : null;
      const spark = new Array(bins).fill(0);
      values.forEach((v, i) => {
        spark[Math.min(bins - 1, Math.floor((i * bins) / values.length))] += v;
      });
      out.set(name, { growth, spark });
    }
    return out;
  }

  // ------------------------------------------------------------------------------------------ charts
  function niceStep(span, count) {
    const raw = span / Math.max(1, count);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const norm = raw / mag;
    return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
  }

  function yTicks(max, count, durations) {
    if (!(max > 0)) max = 1;
    let step;
    if (durations && max >= 60) {
      const steps = [60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
      step = steps.find((s) => max / s <= count) || niceStep(max, count);
    } else {
      step = niceStep(max, count);
    }
    const top = Math.ceil(max / step) * step;
    const ticks = [];
    for (let v = 0; v <= top + step / 2; v += step) ticks.push(v);
    return { ticks, top };
  }

  function timeTicks(t0, t1, width) {
    const maxTicks = Math.max(2, Math.floor(width / 80));
    const steps = [HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY];
    const step = steps.find((s) => (t1 - t0) / s <= maxTicks) || 30 * DAY;
    const ticks = [];
    // Local time: hours that are multiples of the step, or every n-th local midnight.
    const d = new Date(t0);
    if (step < DAY) {
      d.setMinutes(0, 0, 0);
      const every = step / HOUR;
      for (; d.getTime() <= t1; d.setHours(d.getHours() + 1)) {
        if (d.getTime() >= t0 && d.getHours() % every === 0) ticks.push(d.getTime());
      }
    } else {
      d.setHours(0, 0, 0, 0);
      const every = Math.round(step / DAY);
      for (let i = 0; d.getTime() <= t1; d.setDate(d.getDate() + 1), i++) {
        if (d.getTime() >= t0 && i % every === 0) ticks.push(d.getTime());
      }
    }
    const month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    const label = (ms) => {
      const d = new Date(ms);
      const day = month[d.getMonth()] + " " + d.getDate();
      if (step >= DAY) return day;
      return d.getHours() === 0 || step >= 12 * HOUR ? day + " " + pad(d.getHours()) + ":00" : pad(d.getHours()) + ":00";
    };
    return ticks.map((t) => ({ t, label: label(t) }));
  }

  function bucketLabel(ms, bucket) {
    const d = new Date(ms);
    const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
    return bucket === "hour" ? day + " " + pad(d.getHours()) + ":00" : day;
  }

  /** The frame of a chart: svg, scales, grid, axes and a legend row. */
  function frame(container, opts) {
    const width = Math.max(320, Math.floor(container.clientWidth || 600));
    const height = 250;
    const m = { top: 30, right: 14, bottom: 26, left: 58 };
    const svg = svgEl("svg", {
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": opts.label,
    });
    const pw = width - m.left - m.right;
    const ph = height - m.top - m.bottom;
    const x = (t) => m.left + ((t - opts.t0) / Math.max(1, opts.t1 - opts.t0)) * pw;
    const { ticks, top } = yTicks(opts.yMax, 5, opts.durations);
    const y = (v) => m.top + ph - (v / top) * ph;

    const grid = svgEl("g", { class: "grid" });
    const yAxis = svgEl("g", { class: "axis y-axis" });
    for (const v of ticks) {
      grid.appendChild(svgEl("line", { class: "gridline", x1: m.left, x2: m.left + pw, y1: y(v), y2: y(v) }));
      yAxis.appendChild(
        svgEl("text", {
          x: m.left - 6,
          y: y(v) + 4,
          "text-anchor": "end",
          text: opts.durations ? fmtTickDuration(v) : fmtCompact(v, 1),
        })
      );
    }
    yAxis.appendChild(svgEl("line", { x1: m.left, x2: m.left, y1: m.top, y2: m.top + ph }));
    const xAxis = svgEl("g", { class: "axis x-axis" });
    xAxis.appendChild(svgEl("line", { x1: m.left, x2: m.left + pw, y1: m.top + ph, y2: m.top + ph }));
    for (const { t, label } of timeTicks(opts.t0, opts.t1, pw)) {
      const xt = x(t);
      xAxis.appendChild(svgEl("line", { x1: xt, x2: xt, y1: m.top + ph, y2: m.top + ph + 4 }));
      xAxis.appendChild(svgEl("text", { x: xt, y: m.top + ph + 17, "text-anchor": "middle", text: label }));
    }
    svg.append(grid, yAxis, xAxis);
    if (opts.yLabel) {
      svg.appendChild(
        svgEl("text", { class: "axis-label", x: 4, y: 12, "font-size": 11, fill: "#64748b", text: opts.yLabel })
      );
    }
    return { svg, x, y, m, pw, ph, width, height };
  }

  function legend(f, items) {
    const g = svgEl("g", { class: "legend" });
    let lx = f.m.left + 70;
    let ly = 12;
    for (const { name, color, dash } of items) {
      const w = 22 + Math.min(24, name.length) * 6.2 + 14;
      if (lx + w > f.width - f.m.right) {
        lx = f.m.left + 70;
        ly += 14;
      }
      g.appendChild(
        svgEl("line", {
          x1: lx,
          x2: lx + 14,
          y1: ly - 4,
          y2: ly - 4,
          stroke: color,
          "stroke-width": 6,
          "stroke-dasharray": dash || null,
        })
      );
      g.appendChild(svgEl("text", { x: lx + 18, y: ly, text: name.length > 24 ? name.slice(0, 23) + "…" : name }));
      lx += w;
    }
    return g;
  }

  function emptyChart(container, text) {
    container.replaceChildren(el("div", { class: "empty", text }));
  }

  function renderCharts() {
    const series = state.series;
    if (!series) return;
    const points = (series.points || []).filter((p) => !state.pipeline || p.pipeline === state.pipeline);
    renderThroughput($("#throughput-chart"), series, points);
    renderDuration($("#duration-chart"), series, points);
  }

  function renderThroughput(container, series, points) {
    const { times, step } = bucketTimes(series, points);
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
    const t0 = times.length ? times[0] : series._since;
    const t1 = times.length ? times[times.length - 1] : series._until;
    const f = frame(container, {
      t0,
      t1,
      yMax: Math.max(...stackTotals, 0),
      label: "rows per " + series.bucket + " by pipeline",
      yLabel: "rows/" + series.bucket,
    });
    // Stacked bars, one path per pipeline (a rectangle per bucket): buckets are sums, not samples.
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
    f.svg.appendChild(areas);
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

  function emptyNote(f, text) {
    f.svg.appendChild(
      svgEl("text", { x: f.m.left + f.pw / 2, y: f.m.top + f.ph / 2, "text-anchor": "middle", fill: "#64748b", text })
    );
  }

  function hoverBands(f, times, step, text) {
    const g = svgEl("g", { class: "hover" });
    const w = Math.max(2, f.x(times[0] + step) - f.x(times[0]));
    times.forEach((t, i) => {
      const x = f.x(t) - w / 2;
      const x0 = Math.max(f.m.left, x);
      const x1 = Math.min(f.m.left + f.pw, x + w);
      g.appendChild(
        svgEl("rect", { class: "hover-band", x: x0, y: f.m.top, width: Math.max(1, x1 - x0), height: f.ph }, title(text(t, i)))
      );
    });
    return g;
  }

  function renderDuration(container, series, points) {
    const { times, step } = bucketTimes(series, points);
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
    const avg = agg.map((a) => (a.weight ? a.sum / a.weight : null));
    const p95 = agg.map((a) => a.p95);
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
    const g = svgEl("g", { class: "lines" });
    for (const { name, values, color, dash } of lines) {
      // Gaps (buckets without finished runs) break the line.
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
    f.svg.appendChild(g);
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

  // ------------------------------------------------------------------------------------------ runs table
  function runParams() {
    return {
      pipeline: state.pipeline,
      status: state.status,
      since: localToIso(state.since),
      until: localToIso(state.until),
      page_size: state.pageSize,
      cursor: state.cursors[state.cursors.length - 1],
    };
  }

  async function loadRuns(opts) {
    const my = ++seq.runs;
    const table = $("#runs");
    if (!(opts && opts.quiet)) table.classList.add("loading");
    $("#next-page").disabled = true;
    $("#prev-page").disabled = true;
    try {
      const { data } = await api("runs", runParams());
      if (my !== seq.runs) return;
      state.runs = data.runs || [];
      state.nextCursor = data.next_cursor || null;
      setError("runs", null);
    } catch (e) {
      if (my !== seq.runs) return;
      setError("runs", e);
      if (opts && opts.onErrorPop && state.cursors.length > 1) state.cursors.pop();
    } finally {
      if (my === seq.runs) {
        table.classList.remove("loading");
        renderRuns();
      }
    }
  }

  function runRow(r) {
    const key = runKey(r.pipeline, r.run_id);
    const flashUntil = state.flashes.get(key);
    const running = r.status === "running" || r.status === "pending";
    let duration = r.duration_s;
    if (!isNum(duration) && running && r.started_at) duration = (Date.now() - new Date(r.started_at).getTime()) / 1000;
    return el(
      "tr",
      {
        class: flashUntil && flashUntil > Date.now() ? "flash" : null,
        dataset: { runId: r.run_id, pipeline: r.pipeline, status: r.status },
      },
      el("td", {}, el("span", { class: "badge " + r.status, text: r.status })),
      el("td", {}, el("a", {
        href: "#",
        class: "pipeline-link",
        text: r.pipeline,
        title: "Show only " + r.pipeline,
        onclick: (ev) => {
          ev.preventDefault();
          selectPipeline(r.pipeline);
        },
      })),
      el("td", { class: "mono run-id", title: r.run_id }, el("span", { class: "clip", text: r.run_id })),
      el(
        "td",
        { class: "run-links" },
        el("a", {
          class: "transfer-link",
          href: "transfer?" + new URLSearchParams({ dag_id: r.pipeline, run_id: r.run_id }).toString(),
          text: "Transfer",
          title: "Chunks, rows/s and memory of this run's transfer tasks",
        }),
        " · ",
        el("a", {
          class: "airflow-link",
          href: airflowRunUrl(r.pipeline, r.run_id),
          target: "_top",
          text: "Airflow",
          title: "This run in Airflow",
          onclick: navigateTop,
        })
      ),
      el("td", { text: fmtTime(r.started_at), title: r.started_at + (r.finished_at ? "\nfinished " + r.finished_at : "") }),
      el("td", {
        class: "num" + (running ? " muted" : ""),
        text: isNum(duration) ? fmtDuration(duration) + (running && !isNum(r.duration_s) ? " …" : "") : "–",
      }),
      el("td", { class: "num", text: fmtInt(r.rows), title: fmtInt(r.rows) + " rows" }),
      el("td", { class: "num", text: fmtCompact(r.rows_per_second) }),
      el("td", { class: "num", text: fmtBytes(r.bytes) }),
      el("td", { class: "error", title: r.error || null }, r.error ? el("span", { class: "error-text", text: r.error }) : null)
    );
  }

  /** The run's page in Airflow's UI (this page is <root>etl/). */
  function airflowRunUrl(pipeline, runId) {
    const root = location.pathname.replace(/etl\/?$/, "");
    return root + "dags/" + encodeURIComponent(pipeline) + "/runs/" + encodeURIComponent(runId);
  }

  /** Inside Airflow's UI the page is an iframe sandboxed without allow-top-navigation: a target="_top"
   * link cannot leave it, so the (same-origin) UI's router is told instead (history + popstate). */
  function navigateTop(ev) {
    if (window.top === window) return;
    try {
      window.top.history.pushState({}, "", ev.currentTarget.href);
      window.top.dispatchEvent(new PopStateEvent("popstate", { state: {} }));
      ev.preventDefault();
    } catch (e) {
      /* a cross-origin parent: the link's own behaviour */
    }
  }

  function renderRuns() {
    const tbody = $("#runs tbody");
    if (!state.runs.length) {
      const what = state.errors.runs
        ? "Could not load the runs (see the message above)"
        : state.pipeline || state.status || state.since || state.until
          ? "No runs match the filters"
          : "No runs yet";
      tbody.replaceChildren(el("tr", {}, el("td", { colspan: 10, class: "empty", text: what })));
    } else {
      tbody.replaceChildren(...state.runs.map(runRow));
    }
    const page = state.cursors.length;
    const first = (page - 1) * state.pageSize + 1;
    const last = first + state.runs.length - 1;
    $("#page-info").textContent = state.runs.length ? `Page ${page} · runs ${fmtInt(first)}–${fmtInt(last)}` : `Page ${page}`;
    $("#page-info").dataset.page = String(page);
    $("#prev-page").disabled = page <= 1;
    $("#next-page").disabled = !state.nextCursor;
  }

  function resetPages() {
    state.cursors = [null];
    state.nextCursor = null;
  }

  // ------------------------------------------------------------------------------------------ live events
  const live = { es: null, retry: 0, timer: null, url: null };

  function setLive(status, text) {
    const node = $("#live-status");
    node.className = "live " + status;
    node.textContent = text;
  }

  function connectLive() {
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

  function matchesFilters(run) {
    if (state.pipeline && run.pipeline !== state.pipeline) return false;
    if (state.status && run.status !== state.status) return false;
    const t = new Date(run.started_at).getTime();
    const since = localToIso(state.since);
    const until = localToIso(state.until);
    if (since && t < new Date(since).getTime()) return false;
    if (until && t >= new Date(until).getTime()) return false;
    return true;
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
    scheduleRefresh(finished || (msg.kind === "dag_run" && !run));
  }

  function replaceRow(run) {
    const rows = document.querySelectorAll("#runs tbody tr[data-run-id]");
    for (const tr of rows) {
      if (tr.dataset.runId === run.run_id && tr.dataset.pipeline === run.pipeline) {
        tr.replaceWith(runRow(run));
        return;
      }
    }
  }

  const refresh = { timer: null, last: 0, runs: false };

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

  // ------------------------------------------------------------------------------------------ actions
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

  function bind() {
    $("#range").value = state.range;
    $("#filter-status").value = state.status;
    $("#filter-since").value = state.since;
    $("#filter-until").value = state.until;
    $("#page-size").value = String(state.pageSize);

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
      resetPages();
      writeHash();
      loadRuns();
    });
    for (const id of ["#filter-since", "#filter-until"]) {
      $(id).addEventListener("change", () => {
        state.since = $("#filter-since").value;
        state.until = $("#filter-until").value;
        resetPages();
        writeHash();
        loadRuns();
      });
    }
    $("#page-size").addEventListener("change", (e) => {
      state.pageSize = parseInt(e.target.value, 10) || 50;
      resetPages();
      writeHash();
      loadRuns();
    });
    $("#clear-filters").addEventListener("click", () => {
      state.status = "";
      state.since = "";
      state.until = "";
      $("#filter-status").value = "";
      $("#filter-since").value = "";
      $("#filter-until").value = "";
      if (state.pipeline) selectPipeline("");
      else {
        resetPages();
        writeHash();
        loadRuns();
      }
    });
    $("#filters").addEventListener("submit", (e) => e.preventDefault());
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
    readHash();
    bind();
    renderPipelineOptions();
    reloadAll();
    connectLive();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
