// The page's state, its filters kept in the URL's hash, and the request counters that drop late answers.
import { DAY, HOUR, localToIso } from "./format.js";

export const RANGES = {
  "24h": { span: 24 * HOUR, bucket: "hour", label: "last 24 h" },
  "7d": { span: 7 * DAY, bucket: "hour", label: "last 7 days" },
  "30d": { span: 30 * DAY, bucket: "day", label: "last 30 days" },
  "90d": { span: 90 * DAY, bucket: "day", label: "last 90 days" },
};

export const state = {
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
export const seq = { stats: 0, series: 0, runs: 0 }; // request counters: late answers of old requests are dropped

/** What the tables' links do; the page's bootstrap sets it (it reloads and reconnects everything). */
export const actions = { selectPipeline: (name) => {} };

export function readHash() {
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

export function writeHash() {
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

export function rangeBounds() {
  const r = RANGES[state.range];
  const until = Date.now();
  return { since: new Date(until - r.span), until: new Date(until), bucket: r.bucket };
}

export function runKey(pipeline, runId) {
  return pipeline + "\u0000" + runId;
}

export function resetPages() {
  state.cursors = [null];
  state.nextCursor = null;
}

export function matchesFilters(run) {
  if (state.pipeline && run.pipeline !== state.pipeline) return false;
  if (state.status && run.status !== state.status) return false;
  const t = new Date(run.started_at).getTime();
  const since = localToIso(state.since);
  const until = localToIso(state.until);
  if (since && t < new Date(since).getTime()) return false;
  if (until && t >= new Date(until).getTime()) return false;
  return true;
}
