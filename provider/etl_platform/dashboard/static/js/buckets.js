// The series' points laid out on the range's buckets: for the charts and the pipelines' trends.
import { DAY, HOUR } from "./format.js";
import { state } from "./state.js";

/** Bucket start times (ms) covering the range, merged with the times the API returned. */
export function bucketTimes(series, points) {
  const step = series._bucket === "hour" ? HOUR : DAY;
  const times = new Set();
  for (let t = Math.floor(series._since / step) * step; t < series._until; t += step) times.add(t);
  for (const p of points) times.add(new Date(p.ts).getTime());
  return { times: [...times].sort((a, b) => a - b), step };
}

/** Per pipeline: rows growth from the range's 1st half to its 2nd, and a sparkline of at most 30 bins. */
export function seriesTrends() {
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
