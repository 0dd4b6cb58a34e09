// One metric group: a chart per matching key at a chosen resolution,
// optionally for a single worker.

import {
  api, h, metricsPanel, pageHeader,
} from "../../kit.js";
export default async function mount(view, ctx) {
  const prefix = ctx.params.prefix;
  const workerId = ctx.query.get("worker_id") || "";
  const resolution = ctx.query.get("resolution") || "5min";
  ctx.setTitle(`Metrics ${prefix}`);
  const workerSelect = h("select", {
    id: "metric-worker",
    onchange: (e) => ctx.setQuery({ worker_id: e.target.value }),
  }, h("option", { value: "" }, "All workers"), workerId ? h("option", { value: workerId, selected: true }, workerId) : null);
  const panel = h("section", { class: "card" });
  view.append(pageHeader(prefix, {
    crumbs: [["/metrics", "Metrics"], [null, prefix]],
    subtitle: "Counters are drawn as bars per bucket, gauges as lines, histograms as the average inside the min–max band.",
    actions: h("div", { class: "field inline" }, h("label", { for: "metric-worker" }, "Worker"), workerSelect),
  }), panel);

  api.get("/api/v1/workers", null, { signal: ctx.signal }).then((workers) => {
    const ids = (Array.isArray(workers) ? workers : []).map((w) => String(w.worker_id));
    workerSelect.replaceChildren(h("option", { value: "" }, "All workers"),
      [...new Set([...ids, ...(workerId ? [workerId] : [])])].sort().map((w) => h("option", { value: w, selected: w === workerId }, w)));
  }).catch(() => {});

  const { reload } = metricsPanel(panel, {
    prefix,
    resolution,
    workerId,
    signal: ctx.signal,
    title: "Charts",
    onResolution: (r) => {
      const q = new URLSearchParams(ctx.query);
      q.set("resolution", r);
      history.replaceState(null, "", `#/metrics/${encodeURIComponent(prefix)}?${q}`);
    },
  });
  ctx.every(30000, reload);
}
