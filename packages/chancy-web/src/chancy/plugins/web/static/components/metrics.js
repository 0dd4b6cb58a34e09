// Metric cards: one chart per key with its type and a histogram mode switch,
// plus a loader that tolerates a missing Metrics plugin.

import { api, metricPath } from "../api.js";
import { h, replace } from "../lib/dom.js";
import { chart, summarize } from "./chart.js";
import { badge, emptyState, errorBox, loading, resolutionPicker } from "./ui.js";

const FIRST = ["throughput", "execution_time", "wait_time"];

/**
 * The API route the charts read. Pages chart metrics when the server lists
 * it in /api/v1/configuration (whichever plugin serves it).
 */
export const METRICS_ROUTE = "GET /api/v1/metrics/{prefix}";

/** Throughput and timings first, then alphabetical. */
export function byImportance(a, b) {
  const rank = (k) => {
    const i = FIRST.indexOf(k.split(":").pop());
    return i < 0 ? FIRST.length : i;
  };
  return rank(a) - rank(b) || a.localeCompare(b);
}

/** A card charting one metric key. */
export function metricCard(key, series, { resolution = "5min", title } = {}) {
  const type = series?.type || "gauge";
  let mode = "avg";
  const body = h("div", { class: "chart-box" });
  const summary = h("p", { class: "muted small" });
  const draw = () => {
    replace(body, chart(series, { key, resolution, mode }));
    summary.textContent = summarize(series, key, mode);
  };
  const controls = type === "histogram"
    ? h(
        "div",
        { class: "segmented", role: "group", "aria-label": "Histogram value" },
        ["avg", "count"].map((m) =>
          h("button", {
            type: "button",
            class: "btn small" + (m === mode ? " active" : ""),
            "aria-pressed": String(m === mode),
            onclick: (e) => {
              mode = m;
              for (const b of e.currentTarget.parentElement.children) {
                const on = b === e.currentTarget;
                b.classList.toggle("active", on);
                b.setAttribute("aria-pressed", String(on));
              }
              draw();
            },
          }, m === "avg" ? "Average" : "Count")),
      )
    : null;
  draw();
  return h(
    "article",
    { class: "card metric-card" },
    h("div", { class: "metric-head" },
      h("h3", {}, title || key),
      h("div", { class: "metric-tools" }, badge(type, "muted-badge"), controls)),
    summary,
    body,
  );
}

/**
 * Load and render the metrics under `prefix` into `container`, with a
 * resolution selector. Returns {reload}. `filter(key)` keeps some keys.
 */
export function metricsPanel(container, { prefix, resolution = "5min", workerId, filter, signal, title = "Metrics", onResolution, emptyText } = {}) {
  let current = resolution;
  const grid = h("div", { class: "metric-grid" });
  const head = h("div", { class: "section-head" }, h("h2", {}, title), resolutionPicker(current, (r) => {
    current = r;
    if (onResolution) onResolution(r);
    reload();
  }));
  replace(container, head, grid);

  async function reload() {
    if (!grid.childElementCount) replace(grid, loading("Loading metrics…"));
    try {
      const data = await api.get(`/api/v1/metrics/${metricPath(prefix)}`, { resolution: current, worker_id: workerId }, { signal });
      const keys = Object.keys(data || {}).filter((k) => (filter ? filter(k) : true)).sort(byImportance);
      if (!keys.length) {
        replace(grid, emptyState("No metrics yet", emptyText || `Nothing has been recorded under “${prefix}” at this resolution.`));
        return;
      }
      replace(grid, keys.map((k) => metricCard(k, data[k], { resolution: current })));
    } catch (err) {
      if (err.name === "AbortError") return;
      if (err.status === 404) replace(grid, emptyState("Metrics are not available", "This API does not serve GET /api/v1/metrics/{prefix}: no metrics plugin is enabled on the worker that runs it."));
      else replace(grid, errorBox(err, { title: "Could not load metrics", retry: reload }));
    }
  }
  reload();
  return { reload, get resolution() { return current; } };
}

/** Fetch a metrics prefix; resolves to {} when the plugin is missing or fails. */
export async function fetchMetricsQuietly(prefix, query, signal) {
  try {
    const data = await api.get(`/api/v1/metrics/${metricPath(prefix)}`, query, { signal });
    return data && typeof data === "object" ? data : {};
  } catch (err) {
    if (err.name === "AbortError") throw err;
    return {};
  }
}
