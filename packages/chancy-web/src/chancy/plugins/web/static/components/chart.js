// SVG charts for metric series: sparklines and full line/bar charts.
//
// A series is the API's `{data: [{timestamp, value}], type}`. Counters are
// drawn as bars (one per bucket), gauges as lines, histograms as the average
// line inside a min–max band (or as bars of the observation count).

import { h, s } from "../lib/dom.js";
import { absolute, compactNum, duration, num, toDate } from "../lib/format.js";

export const RES_SECONDS = { "1min": 60, "5min": 300, "1hour": 3600, "1day": 86400 };

function toNumber(v) {
  const n = typeof v === "number" ? v : Number(v);
  return Number.isFinite(n) ? n : null;
}

/** Histogram fields from an object value (tolerates missing avg). */
export function histogramParts(raw) {
  if (!raw || typeof raw !== "object") {
    const n = toNumber(raw);
    return { count: n, sum: n, avg: n, min: n, max: n };
  }
  const count = toNumber(raw.count);
  const sum = toNumber(raw.sum);
  let avg = toNumber(raw.avg ?? raw.mean);
  if (avg === null && count && sum !== null) avg = sum / count;
  return { count, sum, avg, min: toNumber(raw.min), max: toNumber(raw.max) };
}

/** Points sorted by time: [{t (ms), v, raw}]; `mode` picks a histogram field. */
export function normalize(series, mode = "avg") {
  const data = Array.isArray(series?.data) ? series.data : [];
  const points = [];
  for (const p of data) {
    const d = toDate(p?.timestamp ?? p?.t ?? p?.time);
    if (!d) continue;
    const raw = p.value ?? p.v;
    let v;
    if (raw && typeof raw === "object") v = histogramParts(raw)[mode] ?? histogramParts(raw).avg;
    else v = toNumber(raw);
    if (v === null || v === undefined) continue;
    points.push({ t: d.getTime(), v, raw });
  }
  points.sort((a, b) => a.t - b.t);
  return points;
}

/** Whether a metric key measures seconds (execution/wait times). */
export function isTimeKey(key) {
  return /(_time|duration|latency|elapsed|_seconds)$/i.test(String(key));
}

export function valueFormatter(key, type, mode) {
  if (type === "histogram" && mode === "count") return num;
  return isTimeKey(key) ? duration : num;
}

/** Counter buckets over the last `count` buckets, zeros where nothing was recorded. */
function fillBuckets(points, bucketMs, count, end) {
  const last = Math.floor(end / bucketMs) * bucketMs;
  const first = last - (count - 1) * bucketMs;
  const byBucket = new Map();
  for (const p of points) {
    const b = Math.floor(p.t / bucketMs) * bucketMs;
    if (b >= first) byBucket.set(b, (byBucket.get(b) || 0) + p.v);
  }
  const out = [];
  for (let t = first; t <= last; t += bucketMs) out.push({ t, v: byBucket.get(t) || 0 });
  return out;
}

/**
 * A small trend picture. Returns an <svg> with an accessible label.
 */
export function sparkline(series, { resolution = "5min", buckets = 24, label = "trend", width = 120, height = 28 } = {}) {
  const type = series?.type || "counter";
  const bucketMs = (RES_SECONDS[resolution] || 300) * 1000;
  let points = normalize(series, type === "histogram" ? "avg" : "avg");
  const end = Date.now();
  const start = end - buckets * bucketMs;
  const attrs = { class: "spark", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", preserveAspectRatio: "none" };
  if (type === "counter") points = fillBuckets(points, bucketMs, buckets, end);
  else points = points.filter((p) => p.t >= start);
  const total = points.reduce((a, p) => a + p.v, 0);
  const latest = points.length ? points[points.length - 1].v : null;
  const summary = type === "counter"
    ? `${label}: ${num(total)} in the last ${buckets} × ${resolution}`
    : `${label}: latest ${latest === null ? "none" : num(latest)}`;
  const svg = s("svg", { ...attrs, "aria-label": summary }, s("title", {}, summary));
  if (!points.length || (type === "counter" && total === 0)) {
    svg.appendChild(s("line", { x1: 0, x2: width, y1: height - 1.5, y2: height - 1.5, class: "spark-flat" }));
    return svg;
  }
  const max = Math.max(...points.map((p) => p.v), 0) || 1;
  const min = type === "counter" ? 0 : Math.min(...points.map((p) => p.v), 0);
  const y = (v) => height - 2 - ((v - min) / (max - min || 1)) * (height - 4);
  if (type === "counter") {
    const bw = width / points.length;
    points.forEach((p, i) => {
      if (p.v <= 0) return;
      svg.appendChild(s("rect", { x: i * bw + 0.5, y: y(p.v), width: Math.max(1, bw - 1), height: height - 2 - y(p.v), class: "spark-bar" }));
    });
  } else {
    const x = (t) => ((t - start) / (end - start)) * width;
    const d = points.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
    svg.appendChild(s("path", { d, class: "spark-line" }));
  }
  return svg;
}

/**
 * Round tick values from at most `min` to at least `max` (the last tick is
 * never below the data, so nothing is drawn above the chart). A constant
 * series is shown against zero (0…v, or v…0), or 0…1 when it is zero;
 * `integer` keeps steps whole (counts).
 */
export function niceTicks(min, max, count = 4, { integer = false } = {}) {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [0, 1];
  if (min > max) [min, max] = [max, min];
  if (min === max) {
    if (min === 0) max = 1;
    else if (min > 0) min = 0;
    else max = 0;
  }
  const raw = (max - min) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  let step = (norm > 5 ? 10 : norm > 2 ? 5 : norm > 1 ? 2 : 1) * mag;
  if (integer) step = Math.max(1, Math.round(step));
  const start = Math.floor(min / step) * step;
  const ticks = [];
  for (let v = start; ticks.length < 12; v += step) {
    ticks.push(Number(v.toPrecision(12)));
    if (v >= max - step * 1e-9) break;
  }
  return ticks;
}

function timeLabel(t, span) {
  const d = new Date(t);
  if (span <= 2 * 86400000) return d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  if (span <= 120 * 86400000) return d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
  return d.toLocaleDateString(undefined, { year: "2-digit", month: "short" });
}

/**
 * A full chart for one metric key.
 * options: {key, type, resolution, mode ("avg"|"count"), height}
 */
export function chart(series, { key = "", resolution = "5min", mode = "avg", height = 200, width = 640 } = {}) {
  const type = series?.type || "gauge";
  const bucketMs = (RES_SECONDS[resolution] || 300) * 1000;
  const asBars = type === "counter" || (type === "histogram" && mode === "count");
  const pts = normalize(series, type === "histogram" ? mode : "avg");
  const fmt = valueFormatter(key, type, mode);
  const label = `${key} (${type}${type === "histogram" ? ", " + mode : ""}, ${resolution})`;
  if (!pts.length) {
    return h("div", { class: "chart-empty" }, "No data points at this resolution yet.");
  }
  // Room above the top tick's label and below the time labels.
  const m = { top: 16, right: 12, bottom: 24, left: 56 };
  const iw = width - m.left - m.right;
  const ih = height - m.top - m.bottom;
  let t0 = pts[0].t;
  let t1 = pts[pts.length - 1].t + (asBars ? bucketMs : 0);
  if (t1 - t0 < bucketMs * 4) t0 = t1 - bucketMs * 4;
  const band = type === "histogram" && mode !== "count"
    ? pts.map((p) => ({ t: p.t, ...histogramParts(p.raw) }))
    : null;
  let vmin = asBars ? 0 : Math.min(...pts.map((p) => p.v));
  let vmax = Math.max(...pts.map((p) => p.v));
  if (band) {
    for (const b of band) {
      if (b.min !== null) vmin = Math.min(vmin, b.min);
      if (b.max !== null) vmax = Math.max(vmax, b.max);
    }
  }
  if (!asBars && vmin > 0 && vmin < vmax * 0.5) vmin = 0;
  const integer = asBars && pts.every((p) => Number.isInteger(p.v));
  const ticks = niceTicks(Math.min(vmin, vmax), vmax, 4, { integer });
  const y0 = ticks[0];
  const y1 = ticks[ticks.length - 1] === y0 ? y0 + 1 : ticks[ticks.length - 1];
  const x = (t) => m.left + ((t - t0) / (t1 - t0 || 1)) * iw;
  const y = (v) => m.top + ih - ((v - y0) / (y1 - y0)) * ih;

  const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
  svg.appendChild(s("title", {}, label));
  // Grid and y axis.
  for (const tick of ticks) {
    svg.appendChild(s("line", { x1: m.left, x2: width - m.right, y1: y(tick), y2: y(tick), class: "grid" }));
    svg.appendChild(s("text", { x: m.left - 6, y: y(tick) + 4, class: "axis", "text-anchor": "end" }, fmt === num ? compactNum(tick) : fmt(tick)));
  }
  // X axis labels.
  const span = t1 - t0;
  const xticks = 5;
  for (let i = 0; i <= xticks; i += 1) {
    const t = t0 + (span * i) / xticks;
    svg.appendChild(s("text", { x: x(t), y: height - 6, class: "axis", "text-anchor": i === 0 ? "start" : i === xticks ? "end" : "middle" }, timeLabel(t, span)));
  }
  svg.appendChild(s("line", { x1: m.left, x2: width - m.right, y1: m.top + ih, y2: m.top + ih, class: "baseline" }));

  if (asBars) {
    const bw = Math.max(1, ((bucketMs / (t1 - t0)) * iw) - 1);
    for (const p of pts) {
      const top = y(Math.max(p.v, y0));
      const bar = s("rect", { x: x(p.t), y: top, width: bw, height: Math.max(0, m.top + ih - top), class: "bar" },
        s("title", {}, `${absolute(p.t)}: ${fmt(p.v)}`));
      svg.appendChild(bar);
    }
  } else {
    if (band && band.some((b) => b.min !== null && b.max !== null)) {
      const okay = band.filter((b) => b.min !== null && b.max !== null);
      const upper = okay.map((b, i) => `${i ? "L" : "M"}${x(b.t).toFixed(1)},${y(b.max).toFixed(1)}`).join(" ");
      const lower = okay.slice().reverse().map((b) => `L${x(b.t).toFixed(1)},${y(b.min).toFixed(1)}`).join(" ");
      svg.appendChild(s("path", { d: `${upper} ${lower} Z`, class: "band" }));
    }
    const d = pts.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
    svg.appendChild(s("path", { d, class: "line" }));
    const showDots = pts.length <= 120;
    for (const p of pts) {
      let tip = `${absolute(p.t)}: ${fmt(p.v)}`;
      if (type === "histogram") {
        const hp = histogramParts(p.raw);
        tip = `${absolute(p.t)}\navg ${fmt(hp.avg)} · min ${fmt(hp.min)} · max ${fmt(hp.max)} · count ${num(hp.count)}`;
      }
      svg.appendChild(s("circle", { cx: x(p.t), cy: y(p.v), r: showDots ? 2.5 : 0.01, class: "pt" }));
      svg.appendChild(s("circle", { cx: x(p.t), cy: y(p.v), r: 7, class: "hit" }, s("title", {}, tip)));
    }
  }
  return svg;
}

/** Summary numbers for a series (latest value and the total for counters). */
export function summarize(series, key, mode = "avg") {
  const type = series?.type || "gauge";
  const pts = normalize(series, type === "histogram" ? mode : "avg");
  const fmt = valueFormatter(key, type, mode);
  if (!pts.length) return "no data";
  if (type === "counter") return `total ${num(pts.reduce((a, p) => a + p.v, 0))} · latest ${num(pts[pts.length - 1].v)}`;
  if (type === "histogram") {
    let count = 0;
    let sum = 0;
    for (const p of pts) {
      const hp = histogramParts(p.raw);
      count += hp.count || 0;
      sum += hp.sum || 0;
    }
    const f = valueFormatter(key, type, "avg");
    return `${num(count)} observations · overall avg ${count ? f(sum / count) : "—"}`;
  }
  return `latest ${fmt(pts[pts.length - 1].v)}`;
}
