// Formatting helpers: dates, relative times, numbers, job states.

import { h } from "./dom.js";

export const JOB_STATES = ["pending", "running", "succeeded", "failed", "retrying"];

/** A Date from an ISO string, epoch seconds/milliseconds or a Date; null if unusable. */
export function toDate(value) {
  if (value === null || value === undefined || value === "") return null;
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value;
  if (typeof value === "number") {
    const d = new Date(value < 1e12 ? value * 1000 : value);
    return Number.isNaN(d.getTime()) ? null : d;
  }
  const d = new Date(String(value));
  return Number.isNaN(d.getTime()) ? null : d;
}

const rtf = typeof Intl !== "undefined" && Intl.RelativeTimeFormat
  ? new Intl.RelativeTimeFormat(undefined, { numeric: "auto", style: "short" })
  : null;

/** "3 min. ago", "in 2 hr." … */
export function relative(value, now = Date.now()) {
  const d = toDate(value);
  if (!d) return "—";
  const diff = (d.getTime() - now) / 1000;
  const abs = Math.abs(diff);
  const units = [
    ["year", 31536000],
    ["month", 2592000],
    ["week", 604800],
    ["day", 86400],
    ["hour", 3600],
    ["minute", 60],
    ["second", 1],
  ];
  if (abs < 5) return "just now";
  for (const [unit, seconds] of units) {
    if (abs >= seconds || unit === "second") {
      const n = Math.round(diff / seconds);
      if (rtf) return rtf.format(n, unit);
      return n < 0 ? `${-n} ${unit}s ago` : `in ${n} ${unit}s`;
    }
  }
  return d.toLocaleString();
}

/** Absolute local date and time, with seconds. */
export function absolute(value) {
  const d = toDate(value);
  if (!d) return "—";
  return d.toLocaleString(undefined, {
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
}

/** A <time> element showing a relative time with the absolute one as tooltip. */
export function timeEl(value, { mode = "relative" } = {}) {
  const d = toDate(value);
  if (!d) return h("span", { class: "muted" }, "—");
  return h(
    "time",
    { datetime: d.toISOString(), title: absolute(d) + " (" + d.toISOString() + ")" },
    mode === "absolute" ? absolute(d) : relative(d),
  );
}

/** Time plus relative time: "Mar 3, 10:22:01 (3 min. ago)". */
export function timeFull(value) {
  const d = toDate(value);
  if (!d) return h("span", { class: "muted" }, "—");
  return h("span", {}, h("time", { datetime: d.toISOString(), title: d.toISOString() }, absolute(d)),
    " ", h("span", { class: "muted" }, "(" + relative(d) + ")"));
}

const nf = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });

export function num(value) {
  if (value === null || value === undefined || value === "") return "—";
  const n = Number(value);
  return Number.isFinite(n) ? nf.format(n) : String(value);
}

export function compactNum(value) {
  const n = Number(value);
  if (!Number.isFinite(n)) return "—";
  return Math.abs(n) < 10000 ? nf.format(n) : compact.format(n);
}

/** Seconds as "850 ms", "12.3 s", "4 min 2 s", "3 h 5 min". */
export function duration(seconds) {
  const n = Number(seconds);
  if (!Number.isFinite(n)) return "—";
  const abs = Math.abs(n);
  if (abs < 1) return `${nf.format(n * 1000)} ms`;
  if (abs < 60) return `${nf.format(n)} s`;
  if (abs < 3600) return `${Math.floor(n / 60)} min ${Math.round(n % 60)} s`;
  if (abs < 86400) return `${Math.floor(n / 3600)} h ${Math.round((n % 3600) / 60)} min`;
  return `${Math.floor(n / 86400)} d ${Math.round((n % 86400) / 3600)} h`;
}

/** Bytes as "512 MiB". */
export function bytes(value) {
  let n = Number(value);
  if (!Number.isFinite(n)) return String(value);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${nf.format(n)} ${units[i]}`;
}

/** The state shown for a job: cancelled jobs are stored as `failed`. */
export function jobState(job) {
  if (!job) return "unknown";
  if (job.state === "failed" && isCancelled(job)) return "cancelled";
  return job.state || "unknown";
}

export function isCancelled(job) {
  return Array.isArray(job?.errors) && job.errors.some((e) => e && typeof e === "object" && e.cancelled === true);
}

/** Which timestamp the jobs list shows for a state. */
export function jobTimeField(state) {
  if (state === "pending") return ["created_at", "Created"];
  if (state === "running" || state === "retrying") return ["started_at", "Started"];
  return ["completed_at", "Completed"];
}

/** "8f3a…c21b" for long ids. */
export function shortId(id) {
  const text = String(id ?? "");
  return text.length > 13 ? `${text.slice(0, 8)}…${text.slice(-4)}` : text;
}

/** Last dotted segment of an import path. */
export function shortName(path) {
  const text = String(path ?? "");
  const i = text.lastIndexOf(".");
  return i >= 0 ? text.slice(i + 1) : text;
}

export function plural(n, word, many = word + "s") {
  return `${num(n)} ${n === 1 ? word : many}`;
}

export function titleCase(text) {
  const t = String(text ?? "");
  return t.charAt(0).toUpperCase() + t.slice(1);
}

/** Rate limit as "N per W seconds". */
export function rateLimit(queue) {
  if (!queue || queue.rate_limit === null || queue.rate_limit === undefined) return "none";
  const w = queue.rate_limit_window;
  return `${num(queue.rate_limit)} per ${num(w)} ${Number(w) === 1 ? "second" : "seconds"}`;
}

/** Per-key rate limit as "N per W seconds per key". */
export function keyRateLimit(queue) {
  if (!queue || queue.key_rate_limit === null || queue.key_rate_limit === undefined) return "none";
  const w = queue.key_rate_limit_window;
  return `${num(queue.key_rate_limit)} per ${num(w)} ${Number(w) === 1 ? "second" : "seconds"} per key`;
}

/** A queue's cluster-wide and per-key limits, short ("3 at once", "1 per key", …); [] without any. */
export function queueLimits(queue) {
  const set = (v) => v !== null && v !== undefined;
  const out = [];
  if (set(queue?.global_concurrency)) out.push(`${num(queue.global_concurrency)} at once`);
  if (set(queue?.key_concurrency)) out.push(`${num(queue.key_concurrency)} per key`);
  if (set(queue?.key_rate_limit)) out.push(`${num(queue.key_rate_limit)}/${num(queue.key_rate_limit_window)} s per key`);
  return out;
}

/** Normalise a job limit ({t, v} in job rows, {type_, value} in cron jobs). */
export function normLimit(limit) {
  if (!limit || typeof limit !== "object") return { type: String(limit), value: "" };
  const type = limit.type_ ?? limit.t ?? limit.type ?? "?";
  const value = limit.value ?? limit.v ?? "";
  return { type: String(type), value };
}

export function limitValue({ type, value }) {
  if (type === "memory") return `${bytes(value)} (${num(value)} bytes)`;
  if (type === "time") return `${duration(value)}`;
  return String(value);
}
