// One worker: details (refresh 10 s) and per-queue metrics for this worker.

import { api } from "../api.js";
import { METRICS_ROUTE, fetchMetricsQuietly, metricCard } from "../components/metrics.js";
import { badge, emptyState, errorBox, kvList, loading, pageHeader, queueLinks, resolutionPicker, section, tags } from "../components/ui.js";
import { h, link, replace } from "../lib/dom.js";
import { timeFull } from "../lib/format.js";
import { isExpired } from "./workers.js";

const QUEUE_KEYS = ["throughput", "execution_time", "wait_time"];

export default async function mount(view, ctx) {
  const id = ctx.params.id;
  ctx.setTitle(`Worker ${id}`);
  const head = h("div", {});
  const info = h("div", {}, loading());
  const metricsBox = h("section", { class: "card" });
  view.append(head, info);
  if (ctx.hasRoute(METRICS_ROUTE)) view.append(metricsBox);
  let worker = null;
  let resolution = ctx.query.get("resolution") || "5min";
  let metricsQueues = "";

  async function load() {
    try {
      const workers = await api.get("/api/v1/workers", null, { signal: ctx.signal });
      worker = (Array.isArray(workers) ? workers : []).find((w) => String(w.worker_id) === id) || null;
      if (!worker) {
        replace(head, pageHeader(id, { crumbs: [["/workers", "Workers"], [null, id]] }));
        replace(info, emptyState("Worker not found", "It may have stopped and expired.", link("/workers", "All workers", { class: "btn" })));
        return;
      }
      replace(head, pageHeader(worker.worker_id, {
        crumbs: [["/workers", "Workers"], [null, worker.worker_id]],
        subtitle: [worker.is_leader ? badge("Leader Node", "leader") : badge("Follower", "muted-badge"), isExpired(worker) ? [" ", badge("Expired", "warn")] : null],
      }));
      replace(info, section("Worker", kvList([
        ["ID", h("span", { class: "mono" }, worker.worker_id)],
        ["Leader", worker.is_leader ? "yes" : "no"],
        ["Tags", tags(worker.tags)],
        ["Queues", queueLinks(worker.queues)],
        ["Last seen", timeFull(worker.last_seen)],
        ["Expires", timeFull(worker.expires_at)],
      ])));
      const key = (worker.queues || []).join("\u0000");
      if (ctx.hasRoute(METRICS_ROUTE) && key !== metricsQueues) {
        metricsQueues = key;
        loadMetrics();
      }
    } catch (err) {
      if (err.name === "AbortError") return;
      replace(info, errorBox(err, { title: "Could not load the worker", retry: load }));
    }
  }

  async function loadMetrics() {
    const queues = worker?.queues || [];
    const grid = h("div", {}, loading("Loading metrics…"));
    replace(metricsBox,
      h("div", { class: "section-head" }, h("h2", {}, "Per-queue metrics for this worker"), resolutionPicker(resolution, (r) => {
        resolution = r;
        history.replaceState(null, "", `#/workers/${encodeURIComponent(id)}?resolution=${r}`);
        loadMetrics();
      })),
      grid);
    if (!queues.length) {
      replace(grid, emptyState("No queues", "This worker serves no queue."));
      return;
    }
    const parts = await Promise.all(queues.map(async (q) => {
      const data = await fetchMetricsQuietly(`queue:${q}`, { resolution, worker_id: id }, ctx.signal);
      const keys = QUEUE_KEYS.map((k) => `queue:${q}:${k}`).filter((k) => data[k]);
      return h("div", { class: "queue-metrics" },
        h("h3", {}, link(`/queues/${encodeURIComponent(q)}`, q)),
        keys.length
          ? h("div", { class: "metric-grid" }, keys.map((k) => metricCard(k, data[k], { resolution, title: k.split(":").pop().replace(/_/g, " ") })))
          : h("p", { class: "muted" }, "No metrics recorded for this queue on this worker."));
    }));
    replace(grid, parts);
  }

  await load();
  ctx.every(10000, load);
  if (ctx.hasRoute(METRICS_ROUTE)) ctx.every(60000, loadMetrics);
}
