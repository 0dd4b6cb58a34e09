// A job's progress ({done, total, message, at}, from context.set_progress):
// a <progress> bar (indeterminate without a total), "3 of 10 (30%)", the
// message as text, and when it was reported.

import { h } from "../lib/dom.js";
import { num, timeEl } from "../lib/format.js";

/** The numbers of a progress report; null when it is not one. */
export function progressNumbers(progress) {
  if (!progress || typeof progress !== "object") return null;
  const done = Number(progress.done);
  if (!Number.isFinite(done)) return null;
  const raw = progress.total;
  const total = raw === null || raw === undefined || !Number.isFinite(Number(raw)) ? null : Number(raw);
  let percent = null;
  if (total !== null) percent = total > 0 ? Math.min(100, Math.max(0, (done / total) * 100)) : 100;
  return { done, total, percent };
}

/** "3 of 10 (30%)", or "3 done" without a total. */
export function progressText(progress) {
  const n = progressNumbers(progress);
  if (!n) return "";
  if (n.total === null) return `${num(n.done)} done`;
  return `${num(n.done)} of ${num(n.total)} (${Math.floor(n.percent)}%)`;
}

/**
 * The bar with its figures. options: {compact} (one line, for tables),
 * {label} (the accessible name of the bar).
 */
export function progressView(progress, { compact = false, label = "Progress" } = {}) {
  const n = progressNumbers(progress);
  if (!n) return null;
  const bar = n.total === null
    // No total: an indeterminate bar (no value).
    ? h("progress", { class: "progress", "aria-label": label })
    : h("progress", {
        class: "progress",
        max: String(n.total > 0 ? n.total : 1),
        value: String(n.total > 0 ? Math.min(n.done, n.total) : 1),
        "aria-label": label,
        "aria-valuetext": progressText(progress),
      });
  const message = typeof progress.message === "string" && progress.message ? progress.message : null;
  if (compact) {
    return h("div", { class: "progress-view compact", title: message ? `${progressText(progress)} — ${message}` : progressText(progress) },
      bar, h("span", { class: "progress-figures small muted" }, progressText(progress)));
  }
  return h("div", { class: "progress-view" },
    bar,
    h("div", { class: "progress-line" },
      h("strong", { class: "progress-figures" }, progressText(progress)),
      progress.at ? h("span", { class: "muted small" }, " · reported ", timeEl(progress.at)) : null),
    message ? h("p", { class: "progress-message" }, message) : null);
}
