// Formatting of numbers, durations and times for the page, and the small number helpers its views share.
export const HOUR = 3600e3;
export const DAY = 24 * HOUR;

export const isNum = (v) => typeof v === "number" && isFinite(v);
export const pad = (n) => String(n).padStart(2, "0");

export function fmtInt(v) {
  return isNum(v) ? Math.round(v).toLocaleString("en-US") : "–";
}

export function fmtCompact(v, digits) {
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

export function fmtBytes(v) {
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

export function fmtDuration(s) {
  if (!isNum(s)) return "–";
  if (s < 1) return s.toFixed(2) + " s";
  if (s < 60) return (s < 10 ? s.toFixed(1) : Math.round(s)) + " s";
  if (s < 3600) return Math.floor(s / 60) + "m " + pad(Math.round(s % 60)) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h " + pad(Math.floor((s % 3600) / 60)) + "m";
  return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
}

export function fmtTickDuration(s) {
  if (s === 0) return "0";
  if (s < 60) return fmtDuration(s);
  if (s < 3600) return s % 60 ? fmtDuration(s) : s / 60 + "m";
  const h = Math.floor(s / 3600);
  const m = Math.round((s % 3600) / 60);
  return m ? h + "h " + pad(m) + "m" : h + "h";
}

export function fmtPct(v) {
  if (!isNum(v)) return "–";
  if (v === 0) return "0 %";
  const p = v * 100;
  return (p < 1 ? p.toFixed(2) : p < 10 ? p.toFixed(1) : Math.round(p)) + " %";
}

export function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(
    d.getMinutes()
  )}:${pad(d.getSeconds())}`;
}

export function fmtAgo(iso) {
  if (!iso) return "–";
  const s = (Date.now() - new Date(iso).getTime()) / 1000;
  if (!isFinite(s)) return iso;
  if (s < 60) return "just now";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}

export function bucketLabel(ms, bucket) {
  const d = new Date(ms);
  const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  return bucket === "hour" ? day + " " + pad(d.getHours()) + ":00" : day;
}

/** A datetime-local value (local time) as ISO 8601 with an offset (UTC), or "" when empty/invalid. */
export function localToIso(value) {
  if (!value) return "";
  const d = new Date(value);
  return isNaN(d) ? "" : d.toISOString();
}

export function failureRate(by) {
  const finished = (by.success || 0) + (by.failed || 0);
  return finished ? (by.failed || 0) / finished : 0;
}

export function median(values) {
  const v = values.filter(isNum).sort((a, b) => a - b);
  if (!v.length) return null;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}
