// SVG chart parts: the frame (scales, grid, axes), legend, hover bands, empty note and the sparkline.
import { svgEl, title } from "./dom.js";
import { DAY, HOUR, fmtCompact, fmtTickDuration, pad } from "./format.js";

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

/** The frame of a chart: svg, scales, grid, axes and a legend row. */
export function frame(container, opts) {
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
  const f = { svg, x, y, m, pw, ph, width, height };
  svg.append(grid(f, ticks), yAxis(f, ticks, opts.durations), xAxis(f, opts));
  if (opts.yLabel) {
    svg.appendChild(
      svgEl("text", { class: "axis-label", x: 4, y: 12, "font-size": 11, fill: "#64748b", text: opts.yLabel })
    );
  }
  return f;
}

function grid(f, ticks) {
  const g = svgEl("g", { class: "grid" });
  for (const v of ticks) {
    g.appendChild(svgEl("line", { class: "gridline", x1: f.m.left, x2: f.m.left + f.pw, y1: f.y(v), y2: f.y(v) }));
  }
  return g;
}

function yAxis(f, ticks, durations) {
  const { m, ph } = f;
  const g = svgEl("g", { class: "axis y-axis" });
  for (const v of ticks) {
    g.appendChild(
      svgEl("text", {
        x: m.left - 6,
        y: f.y(v) + 4,
        "text-anchor": "end",
        text: durations ? fmtTickDuration(v) : fmtCompact(v, 1),
      })
    );
  }
  g.appendChild(svgEl("line", { x1: m.left, x2: m.left, y1: m.top, y2: m.top + ph }));
  return g;
}

function xAxis(f, opts) {
  const { m, pw, ph } = f;
  const g = svgEl("g", { class: "axis x-axis" });
  g.appendChild(svgEl("line", { x1: m.left, x2: m.left + pw, y1: m.top + ph, y2: m.top + ph }));
  for (const { t, label } of timeTicks(opts.t0, opts.t1, pw)) {
    const xt = f.x(t);
    g.appendChild(svgEl("line", { x1: xt, x2: xt, y1: m.top + ph, y2: m.top + ph + 4 }));
    g.appendChild(svgEl("text", { x: xt, y: m.top + ph + 17, "text-anchor": "middle", text: label }));
  }
  return g;
}

export function legend(f, items) {
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

export function emptyNote(f, text) {
  f.svg.appendChild(
    svgEl("text", { x: f.m.left + f.pw / 2, y: f.m.top + f.ph / 2, "text-anchor": "middle", fill: "#64748b", text })
  );
}

export function hoverBands(f, times, step, text) {
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

export function sparkline(values) {
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
